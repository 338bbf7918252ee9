"""Numba kernel of the fast whole curve: the same algorithm, in the same floating-point
order, as csrc/curve.c.

The kernel evaluates, for every node m of an exponential sum (u_m, c_m) and every
step tau, the causal sum F_m(tau) = sum_{j<tau} w_j exp(-u_m (P_tau - P_j)) and
records sum_m c_m F_m(tau) at the requested iterations.  The node design and the error
bound are in cdfast/curve.py.

Why per-node anchors instead of the textbook recursion F <- exp(-u eta)(F + w): the
recursion multiplies every contribution by one rounded factor per step, a relative
error of ~T u after T steps.  Here each node keeps an anchor A (a past P_tau), the
distance d = P_tau - A as a compensated running sum of the LRs since the anchor, and
R = sum_j w_j exp(u (P_j - A)) as a compensated sum.  Then F = exp(-u d) R is computed
from d directly, and once u d exceeds REBASE the anchor moves to P_tau (R <- F, d <- 0).
A contribution meets O(1 + its total decay / REBASE) roundings, independent of T.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._numba import _OPTS, _tree_sum

OK, BAD_INPUT, NOT_FINITE, BAD_ARGUMENT = 0, 1, 2, 3
# Rebase threshold on u_m d (csrc/curve.c: REBASE).  After a rebase
# every factor exp(-u_m d) of a live anchor is >= exp(-REBASE), so 1/E never overflows.
REBASE = 2.0
# Factors exp(-y) with y > CUTOFF are taken as 0 (and the node's sum restarts from 0).
# A contribution that entered after the anchor decays by more than CUTOFF - REBASE
# there, so this drops relative weight below exp(-48) ~ 1e-21 (0.01 u); it spares the
# exp evaluation and keeps subnormals out of the sums.
CUTOFF = 50.0
# The nodes are split into this many contiguous groups, one per thread (the caller
# interleaves them so that each group spans the whole range).  A fixed
# count (not the thread count) keeps the summation order, and so the result, the
# same on any machine and in both backends.
GROUPS = 2


@numba.njit(inline="always", **_OPTS)
def _two_sum(hi, lo, x):
    # (hi + lo) += x with the rounding error of the addition kept in lo (Knuth's
    # branch-free TwoSum).
    s = hi + x
    bp = s - hi
    err = (hi - (s - bp)) + (x - bp)
    return s, lo + err


# exp(-y) for 0 <= y <= CUTOFF without a libm call, so that the loop over nodes
# vectorises: exp(x) = 2^k exp(r), k = round(x / ln 2) (the 1.5 * 2^52 shift rounds
# and leaves k in the low bits), r = x - k ln 2 in two parts (Cody-Waite; k ln2_hi is
# exact for |k| < 2^21), |r| <= ln(2)/2, and exp(r) by its Taylor polynomial of degree
# 13 (truncation < 5e-18; Estrin evaluation, rounding <= 2.5 u): relative error
# <= 3 u.  2^k (k >= -73) is built from its exponent bits.  Same constants and order in csrc/curve.c.
SHIFT = 6755399441055744.0  # 1.5 * 2^52
SHIFT_BITS = 4843621399236968448  # its bit pattern
LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
_INV_FACT = tuple(1.0 / math.factorial(n) for n in range(14))
P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13 = _INV_FACT


@numba.njit(inline="always", **_OPTS)
def _expm_poly(r):
    # Estrin's scheme: a dependency chain of 4 multiply-adds instead of Horner's 13,
    # so consecutive nodes overlap in the pipeline.
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    b0 = P0 + P1 * r
    b1 = P2 + P3 * r
    b2 = P4 + P5 * r
    b3 = P6 + P7 * r
    b4 = P8 + P9 * r
    b5 = P10 + P11 * r
    b6 = P12 + P13 * r
    c0 = b0 + b1 * r2
    c1 = b2 + b3 * r2
    c2 = b4 + b5 * r2
    d0 = c0 + c1 * r4
    d1 = c2 + b6 * r4
    return d0 + d1 * r8


@numba.njit(**_OPTS)
def _fast_group(lr, g, has_g, at, u, c, m0, m1, out):
    """out[k] = sum_{m0<=m<m1} c_m F_m(at[k]) for every k (nodes m0..m1-1 only)."""
    nn = m1 - m0
    uu = u[m0:m1].copy()
    cc = c[m0:m1].copy()
    r_hi = np.zeros(nn)
    r_lo = np.zeros(nn)
    d_hi = np.zeros(nn)
    d_lo = np.zeros(nn)
    e = np.ones(nn)
    yv = np.empty(nn)
    kd = np.empty(nn)
    kb = kd.view(np.int64)
    sc = np.empty(nn)
    sb = sc.view(np.int64)
    q = np.empty(nn)
    last = at[at.shape[0] - 1]
    k = 0
    live = nn  # nodes live..nn-1 hold the empty state (R = 0, d = 0, E = 1)
    top = nn
    for t in range(last):  # t = tau - 1
        # At tau = 1 nothing has entered and the anchor is P_1: add zeros.
        eta = lr[t] if t > 0 else 0.0
        w = 0.0
        if t > 0:
            x = lr[t - 1]
            w = (x * x) * g[t - 1] if has_g else x * x
        # Nodes with u eta_tau > CUTOFF (u is increasing) end this step in the empty
        # state whatever they held: only those below, and those not yet emptied,
        # need the work.
        # (u is increasing: move the boundary from the previous step's)
        while top < nn and not (uu[top] * eta > CUTOFF):
            top += 1
        while top > 0 and uu[top - 1] * eta > CUTOFF:
            top -= 1
        n_do = max(top, live)
        live = top
        # w_{tau-1} enters at P_{tau-1}, where exp(u (P_{tau-1} - A)) is 1/E of the
        # previous step; the distance to the anchor grows by eta_tau.
        for i in range(n_do):
            rh, rl = _two_sum(r_hi[i], r_lo[i], w / e[i])
            dh, dl = _two_sum(d_hi[i], d_lo[i], eta)
            r_hi[i] = rh
            r_lo[i] = rl
            d_hi[i] = dh
            d_lo[i] = dl
            y = uu[i] * (dh + dl)
            yv[i] = y
            kd[i] = -min(y, CUTOFF) * LOG2E + SHIFT
        for i in range(n_do):
            sb[i] = (kb[i] - SHIFT_BITS + 1023) << 52
        for i in range(n_do):
            y = yv[i]
            kf = kd[i] - SHIFT
            r = (-min(y, CUTOFF) - kf * LN2_HI) - kf * LN2_LO
            # Selections as exact arithmetic (x * 1.0 + y * 0.0 == x for finite x, y),
            # which LLVM vectorises where it would not if-convert the branches;
            # csrc/curve.c selects with ?: and gets the same bits.
            alive = 1.0 if y <= CUTOFF else 0.0
            ei = (_expm_poly(r) * sc[i]) * alive
            f = ei * (r_hi[i] + r_lo[i])
            q[i] = cc[i] * f
            reb = 1.0 if y > REBASE else 0.0
            keep = 1.0 - reb
            r_hi[i] = f * reb + r_hi[i] * keep
            r_lo[i] = r_lo[i] * keep
            d_hi[i] = d_hi[i] * keep
            d_lo[i] = d_lo[i] * keep
            e[i] = reb + ei * keep
        if at[k] == t + 1:
            out[k] = _tree_sum(q, n_do)
            k += 1


@numba.njit(parallel=True, **_OPTS)
def _curve_fast(lr, g, has_g, at, u, c, a_out, b_out, scratch):
    """Coefficients (a, b) of eq. (2.4) at each tau in ``at`` from the exponential sum
    with nodes ``u`` and weights ``c`` (each half of them, split at (len(u) + 1) // 2,
    increasing: the halves run on two threads).  ``scratch`` has len(at) entries (the second
    node group's partial sums).  Returns a status."""
    n = lr.shape[0]
    m = at.shape[0]
    for i in range(m):
        if at[i] < 1 or at[i] > n or (i > 0 and at[i] <= at[i - 1]):
            return BAD_ARGUMENT
    nodes = u.shape[0]
    half = (nodes + 1) // 2
    for grp in numba.prange(GROUPS):
        if grp == 0:
            _fast_group(lr, g, has_g, at, u, c, 0, half, b_out)
        else:
            _fast_group(lr, g, has_g, at, u, c, half, nodes, scratch)
    # a_tau = 1/(2 P_tau) from a compensated prefix sum; b_tau combines the groups
    # in a fixed order.
    p_hi = 0.0
    p_lo = 0.0
    k = 0
    status = OK
    for t in range(at[m - 1]):
        p_hi, p_lo = _two_sum(p_hi, p_lo, lr[t])
        if at[k] == t + 1:
            eta = lr[t]
            a_out[k] = 0.5 / (p_hi + p_lo)
            if eta > 0.0:
                b_out[k] = 0.5 * ((eta * g[t] if has_g else eta) + (b_out[k] + scratch[k]))
                if not math.isfinite(b_out[k]):
                    status = NOT_FINITE
            else:
                b_out[k] = math.inf
            k += 1
    if not math.isfinite(p_hi):
        status = NOT_FINITE
    return status


# ---------------------------------------------------------------------------
# The whole curve by block moments: csrc/curve.c (cdfast_curve_moments) explains the
# method and its error bound; this follows it operation for operation.

MOM_TERMS = 8  # moments per block (csrc/curve.c: MOM_TERMS)
MOM_FAR = 0.125  # a block is summed by its moments when its LR mass <= MOM_FAR * its gap to tau


@numba.njit(**_OPTS)
def _curve_moments(lr, g, has_g, at, block, a_out, b_out, work):
    """Coefficients (a, b) of eq. (2.4) at each tau in ``at``, b within 7.7e-8 (relative):
    blocks of ``block`` steps far from tau enter by their moments.  ``work`` holds
    ceil(at[-1] / block) * (1 + MOM_TERMS) doubles.  Returns a status."""
    n = lr.shape[0]
    m = at.shape[0]
    if n == 0 or m == 0 or block < 1:
        return BAD_ARGUMENT
    for i in range(m):
        if at[i] < 1 or at[i] > n or (i > 0 and at[i] <= at[i - 1]):
            return BAD_ARGUMENT
    last = at[m - 1]
    nb = (last + block - 1) // block
    if work.shape[0] < nb * (1 + MOM_TERMS):
        return BAD_ARGUMENT
    for q in range(nb):  # each block's LR mass and moments, its steps taken backward
        lo = q * block
        hi = min(lo + block, last)
        base = nb + q * MOM_TERMS
        for i in range(MOM_TERMS):
            work[base + i] = 0.0
        d = 0.0
        for j in range(hi - 1, lo - 1, -1):
            p = lr[j] * lr[j] * g[j] if has_g else lr[j] * lr[j]
            for i in range(MOM_TERMS):
                work[base + i] += p
                p *= d
            d += lr[j]
        work[q] = d
    p_hi = 0.0
    p_lo = 0.0
    k = 0
    status = OK
    for t in range(last):
        p_hi, p_lo = _two_sum(p_hi, p_lo, lr[t])
        if at[k] != t + 1:
            continue
        eta = lr[t]
        a_out[k] = 0.5 / (p_hi + p_lo)
        if eta > 0.0:
            qt = t // block
            gap = eta
            acc = 0.0
            for j in range(t - 1, qt * block - 1, -1):  # tau's own block, term by term
                acc += (lr[j] * lr[j] * g[j] if has_g else lr[j] * lr[j]) / gap
                gap += lr[j]
            for q in range(qt - 1, -1, -1):
                if work[q] <= MOM_FAR * gap:  # far: its moments, by Horner
                    base = nb + q * MOM_TERMS
                    inv = 1.0 / gap
                    h = work[base + MOM_TERMS - 1]
                    for i in range(MOM_TERMS - 2, -1, -1):
                        h = work[base + i] - inv * h
                    acc += inv * h
                    gap += work[q]
                else:
                    for j in range((q + 1) * block - 1, q * block - 1, -1):
                        acc += (lr[j] * lr[j] * g[j] if has_g else lr[j] * lr[j]) / gap
                        gap += lr[j]
            b_out[k] = 0.5 * ((eta * g[t] if has_g else eta) + acc)
            if not math.isfinite(b_out[k]):
                status = NOT_FINITE
        else:
            b_out[k] = math.inf
        k += 1
        if k == m:
            break
    if not math.isfinite(p_hi + p_lo):
        status = NOT_FINITE
    return status
