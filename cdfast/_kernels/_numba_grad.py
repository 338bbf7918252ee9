"""Numba kernel of the bound's gradient: the same algorithm, in the same order, as csrc/gradient.c.

``_last_iterate_grad(lr, g, has_g, d2, g2, out, grad)`` writes ``out[0] = a``,
``out[1] = b`` (the coefficients of eq. (2.4) at tau = T, as ``_numba._last_iterate``)
and ``grad[k] = dB/d lr[k]`` of ``B = D^2 a + G^2 b`` with ``d2 = D^2``, ``g2 = G^2``.
The derivation and the error bound are in cdfast/gradient.py.

Two passes, no work array proportional to T:

1. backward over chunks of LCHUNK steps (chunks cut from step 0 up; the top one may be
   short): the sum of everything above a chunk (its *carry*, the gap at the chunk's
   top step) is stored in the chunk's first output slot, and the chunk's total (eight
   strided accumulators) is added to the carry with Neumaier compensation;
2. forward over the chunks: read the carry back from its slot, rebuild the chunk's
   gaps as in the bound kernel (eight lanes scanned side by side, gap = (carry + lanes
   above) + in-lane suffix), one division per step (r = 1/gap), the step's own term,
   its value term and its adjoint weight w_j/gap_j^2; the forward prefix of the
   adjoint weights runs as eight lane chains, and the running total across chunks is
   carried with Neumaier compensation.  Each chunk is finished in a scratch row and
   copied to ``grad``, which overwrites the slot read at the start.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import _numba
from ._numba import _OPTS, BAD_ARGUMENT, BAD_INPUT, NOT_FINITE, OK, _lane_scan8, _neumaier_add, _tree_sum

LCHUNK = 512  # steps per chunk (csrc/gradient.c: GRAD_CHUNK); scratch rows stay in L1
assert LCHUNK == _numba.LCHUNK  # the chunks are scanned by _numba._lane_scan8 (its lane geometry)
LANES = 8  # independent scan chains per chunk
LANE = LCHUNK // LANES
GRAD_ROWS = 7  # scratch rows: x, g (padded copies), e, q, q2, f, the short chunk's output
_OFF0 = np.uint64(0 * LANE)
_OFF1 = np.uint64(1 * LANE)
_OFF2 = np.uint64(2 * LANE)
_OFF3 = np.uint64(3 * LANE)
_OFF4 = np.uint64(4 * LANE)
_OFF5 = np.uint64(5 * LANE)
_OFF6 = np.uint64(6 * LANE)
_OFF7 = np.uint64(7 * LANE)
_DBL_MAX = 1.7976931348623157e308


@numba.njit(inline="always", **_OPTS)
def _strided_sum(x, lo, hi):
    # Chunk total for pass 1: eight strided accumulators over x[lo:hi] (contiguous
    # loads, vectorises), the remainder into accumulator 0, then a fixed tree.
    p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = 0.0
    full = (hi - lo) // 8
    for ii in range(full):
        j = numba.uint64(lo) + numba.uint64(8) * numba.uint64(ii)
        p0 += x[j]
        p1 += x[j + numba.uint64(1)]
        p2 += x[j + numba.uint64(2)]
        p3 += x[j + numba.uint64(3)]
        p4 += x[j + numba.uint64(4)]
        p5 += x[j + numba.uint64(5)]
        p6 += x[j + numba.uint64(6)]
        p7 += x[j + numba.uint64(7)]
    for i in range(lo + 8 * full, hi):
        p0 += x[numba.uint64(i)]
    return ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7))


@numba.njit(inline="always", **_OPTS)
def _lane_prefix8(f, q):
    # f[i] <- sum of q over [bottom of i's lane, i) for the 8 lanes of q[0 .. 8*LANE-1]
    # at once (8 independent chains, in registers); returns the lane totals.  The
    # forward mirror of _numba._lane_scan8.
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = 0.0
    for jj in range(LANE):
        j = numba.uint64(jj)
        f[j + _OFF0] = l0
        l0 += q[j + _OFF0]
        f[j + _OFF1] = l1
        l1 += q[j + _OFF1]
        f[j + _OFF2] = l2
        l2 += q[j + _OFF2]
        f[j + _OFF3] = l3
        l3 += q[j + _OFF3]
        f[j + _OFF4] = l4
        l4 += q[j + _OFF4]
        f[j + _OFF5] = l5
        l5 += q[j + _OFF5]
        f[j + _OFF6] = l6
        l6 += q[j + _OFF6]
        f[j + _OFF7] = l7
        l7 += q[j + _OFF7]
    return (l0, l1, l2, l3, l4, l5, l6, l7)


@numba.njit(inline="always", **_OPTS)
def _chunk(xc, gc, has_g, base, s_base, cd, g2, o, buf):
    """One chunk of pass 2 on LCHUNK-long views ``xc``, ``gc``, written to the view ``o``.

    ``base``: the gap at the chunk's top (the sum of every LR above it); ``s_base``:
    the adjoint prefix entering the chunk.  Returns (the chunk's value terms, its
    adjoint total, bad, nf): a NaN / negative entry; a non-finite gradient.
    """
    e = buf[2]
    q = buf[3]
    q2 = buf[4]
    f = buf[5]
    bad = False
    nf = False
    # In-lane suffix sums, backwards, eight chains side by side.
    tot = _lane_scan8(e, xc)
    # Lane k's gaps are (base + sum of the lanes above k) + e: one division per step.
    s = 0.0
    for k in range(LANES - 1, -1, -1):
        t = base + s
        s += tot[k]
        u = k * LANE
        if has_g:
            for i in range(u, u + LANE):
                r = 1.0 / (t + e[i])
                own = (xc[i] * gc[i]) * r
                term = xc[i] * own
                o[i] = own
                q[i] = term
                q2[i] = term * r
                bad |= not (xc[i] >= 0.0) or not (gc[i] >= 0.0)
        else:
            for i in range(u, u + LANE):
                r = 1.0 / (t + e[i])
                own = xc[i] * r
                term = xc[i] * own
                o[i] = own
                q[i] = term
                q2[i] = term * r
                bad |= not (xc[i] >= 0.0)
    # Exclusive in-lane prefix sums of the adjoint weights, forwards, eight chains.
    vs = _lane_prefix8(f, q2)
    # Lane k's prefix is (s_base + sum of the lanes below k) + f.
    v = 0.0
    for k in range(LANES):
        sl = s_base + v
        v += vs[k]
        u = k * LANE
        for i in range(u, u + LANE):
            gi = g2 * (o[i] - 0.5 * (sl + f[i])) - cd
            o[i] = gi
            nf |= not (abs(gi) <= _DBL_MAX)
    return _tree_sum(q, LCHUNK), v, bad, nf


@numba.njit(**_OPTS)
def _last_iterate_grad(lr, g, has_g, d2, g2, out, grad):
    """out[0] = a, out[1] = b of eq. (2.4); grad[k] = dB/d lr[k], B = d2 a + g2 b."""
    n = lr.shape[0]
    if n == 0:
        return BAD_ARGUMENT
    m = n - 1  # steps 0 .. n-2 have a gap term; step n-1 is the last
    nch = (m + LCHUNK - 1) // LCHUNK
    buf = np.zeros((GRAD_ROWS, LCHUNK))
    # Pass 1: carries, top chunk first; each stored in its chunk's first slot.
    c_hi = lr[n - 1]
    c_lo = 0.0
    for c in range(nch - 1, -1, -1):
        lo = c * LCHUNK
        hi = min(lo + LCHUNK, m)
        grad[lo] = c_hi + c_lo
        c_hi, c_lo = _neumaier_add(c_hi, c_lo, _strided_sum(lr, lo, hi))
    total = c_hi + c_lo
    cd = d2 * (0.5 / (total * total))
    # Pass 2: chunks bottom up.
    b_hi = 0.0
    b_lo = 0.0
    s_hi = 0.0
    s_lo = 0.0
    bad = not (lr[n - 1] >= 0.0) or (has_g and not (g[n - 1] >= 0.0))
    nf = False
    xb = buf[0]
    gb = buf[1]
    ob = buf[6]
    for c in range(nch):
        lo = c * LCHUNK
        w = min(LCHUNK, m - lo)
        base = grad[lo]
        if w == LCHUNK:
            xc = lr[lo:lo + LCHUNK]
            gc = g[lo:lo + LCHUNK] if has_g else g
            part, ssum, b, f = _chunk(xc, gc, has_g, base, s_hi + s_lo, cd, g2, grad[lo:lo + LCHUNK], buf)
        else:  # the short top chunk, padded with zero steps (they add nothing)
            for i in range(LCHUNK):
                xb[i] = lr[lo + i] if i < w else 0.0
                gb[i] = g[lo + i] if has_g and i < w else 0.0
            part, ssum, b, f = _chunk(xb, gb, has_g, base, s_hi + s_lo, cd, g2, ob, buf)
            for i in range(w):
                grad[lo + i] = ob[i]
        bad |= b
        nf |= f
        b_hi, b_lo = _neumaier_add(b_hi, b_lo, part)
        s_hi, s_lo = _neumaier_add(s_hi, s_lo, ssum)
    last = lr[n - 1]
    gl = g[n - 1] if has_g else 1.0
    grad[n - 1] = g2 * (0.5 * gl - 0.5 * (s_hi + s_lo)) - cd
    if bad:
        return BAD_INPUT
    out[0] = 0.5 / total
    out[1] = 0.5 * (last * gl + (b_hi + b_lo))
    if nf or not (math.isfinite(total) and math.isfinite(out[0]) and math.isfinite(out[1])
            and abs(grad[n - 1]) <= _DBL_MAX):
        return NOT_FINITE
    return OK


# ---------------------------------------------------------------------------
# The stationary point of eq. (2.4) over all positive LRs (cdfast/optimize.py).
# With rho_k = eta_k / g_k, dB/d eta_k = 0 reads G_k^2 rho_k = c + S_k / 2 (k < T),
# S_{k+1} = S_k + G_k^2 rho_k^2, and G_T^2 / 2 = c + S_T / 2, where c = D^2 / (2 G^2 P^2):
# a forward recursion in rho for a given c, and one equation for c.


@numba.njit(**_OPTS)
def _stationary_residual(c, gam):
    """c + S_T / 2 - G_T^2 / 2 for the recursion started at c (+inf once S overflows)."""
    n = gam.shape[0]
    s_hi = 0.0
    s_lo = 0.0
    for k in range(n - 1):
        rho = (c + 0.5 * (s_hi + s_lo)) / gam[k]
        s_hi, s_lo = _neumaier_add(s_hi, s_lo, gam[k] * rho * rho)
        if not s_hi <= 1e300:
            return math.inf
    return (c + 0.5 * (s_hi + s_lo)) - 0.5 * gam[n - 1]


@numba.njit(**_OPTS)
def _stationary_schedule(c, gam, log_total, out):
    """out <- the LRs of the recursion at c, scaled so that their sum is exp(log_total).

    Gaps are accumulated backwards with compensation; the last LR comes from
    log P - sum_k log(1 + rho_k) (compensated), so nothing overflows.
    """
    n = gam.shape[0]
    s_hi = 0.0
    s_lo = 0.0
    l_hi = 0.0
    l_lo = 0.0
    for k in range(n - 1):
        rho = (c + 0.5 * (s_hi + s_lo)) / gam[k]
        out[k] = rho
        s_hi, s_lo = _neumaier_add(s_hi, s_lo, gam[k] * rho * rho)
        l_hi, l_lo = _neumaier_add(l_hi, l_lo, math.log1p(rho))
    last = math.exp(log_total - (l_hi + l_lo))
    out[n - 1] = last
    g_hi = last
    g_lo = 0.0
    for k in range(n - 2, -1, -1):
        out[k] = out[k] * (g_hi + g_lo)
        g_hi, g_lo = _neumaier_add(g_hi, g_lo, out[k])
