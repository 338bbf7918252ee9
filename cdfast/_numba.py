"""Numba kernels: the same algorithm, in the same floating-point order, as csrc/cdfast.c.

Kernels assume validated, contiguous float64 input (cdfast.bounds checks it) and
report NaN / negative entries and overflow through an integer status, exactly like
the C functions, so that the two backends are interchangeable.  ``grad_sq`` is
passed as an array with ``has_g`` False when the caller has none (Numba compiles one
specialisation instead of one per Optional).
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np

# Every Numba option lives here.  fastmath stays off: reassociation or FMA
# contraction would change the rounding order and break bitwise agreement with C.
_CACHE = os.environ.get("CDFAST_NUMBA_CACHE", "1") != "0"
_OPTS = dict(cache=_CACHE, nogil=True, fastmath=False, error_model="numpy", boundscheck=False)

OK, BAD_INPUT, NOT_FINITE, BAD_ARGUMENT = 0, 1, 2, 3
CHUNK = 1024  # see csrc/cdfast.c: the chunk's gaps live in an L1-resident scratch buffer
BLOCK = 16  # scan block: the serial suffix-sum chain costs one addition per block
BLOCK_AVG = 8  # lane count of the average-iterate sums
# Range in which a pair of gaps can share a denominator without overflow or underflow
# (csrc/cdfast.c, pair_quotients): 2^-250 <= gap <= 2^250.
PAIR_MIN = 2.0**-250
PAIR_MAX = 2.0**250


@numba.njit(inline="always", **_OPTS)
def _neumaier_add(hi, lo, x):
    s = hi + x
    if abs(hi) >= abs(x):
        lo += (hi - s) + x
    else:
        lo += (x - s) + hi
    return s, lo


# The helpers below are plain loops starting at index 0 with a run-time trip count:
# that is the shape LLVM's loop vectoriser handles without fastmath (every lane keeps
# its own operation order, so C and Numba still round identically).


@numba.njit(inline="always", **_OPTS)
def _weights(x, lo, g, has_g, q, m):
    # q[i] <- w_i = x_i^2 G_i^2 for the chunk (kept separate from the gaps).
    if has_g:
        for i in range(m):
            q[i] = (x[lo + i] * x[lo + i]) * g[lo + i]
    else:
        for i in range(m):
            q[i] = x[lo + i] * x[lo + i]


@numba.njit(inline="always", **_OPTS)
def _pair_quotients(q, gap, h):
    # q[i] <- w_i/gap_i + w_{i+h}/gap_{i+h} over one common denominator: one division
    # per two terms.  The caller guarantees 2^-250 <= gap <= 2^250.
    for i in range(h):
        gu = gap[i]
        gv = gap[i + h]
        q[i] = (q[i] * gv + q[i + h] * gu) / (gu * gv)


@numba.njit(inline="always", **_OPTS)
def _quotients(q, gap, m):
    for i in range(m):
        q[i] = q[i] / gap[i]


@numba.njit(inline="always", **_OPTS)
def _tree_sum(q, n):
    # Pairwise summation in place: fold the top half onto the bottom half.  Each level
    # is an elementwise loop (vectorises); error grows with log2(n), not n.
    while n > 1:
        h = n // 2
        o = n - h
        for i in range(h):
            q[i] = q[i] + q[o + i]
        n = o
    return q[0] if n == 1 else 0.0


@numba.njit(**_OPTS)
def _stream_last(lr, g, has_g, n, gap):
    """Return (P_n, sum_{j<n-1} w_j / (P_n - P_j), bad) in one backward pass.

    ``gap`` is a (2, CHUNK) scratch buffer supplied by the caller (no allocation
    proportional to n): row 0 holds the chunk's gaps, row 1 its weights and quotients.
    Same algorithm and operation order as ``stream_last`` in csrc/cdfast.c.
    """
    gp = gap[0]
    q = gap[1]
    c_hi = lr[n - 1]
    c_lo = 0.0
    a_hi = 0.0
    a_lo = 0.0
    bad = not (lr[n - 1] >= 0.0) or (has_g and not (g[n - 1] >= 0.0))
    hi = n - 1
    while hi > 0:
        m = min(hi, CHUNK)
        lo = hi - m
        base = c_hi + c_lo
        s = 0.0  # sum of the chunk's entries above the current block
        r0 = m % BLOCK
        blk = m
        # Scan, strictly backwards through memory: gap[i] = (base + s) + l, where the
        # block start base + s costs one addition per block and l is the in-block suffix.
        # Unsigned indices spare Numba its negative-index wraparound on every access.
        ulo = numba.uint64(lo)
        while blk > 0:
            nb = BLOCK if blk > r0 else blk
            t = base + s
            l = 0.0
            for j in range(nb):
                i = numba.uint64(blk - 1 - j)
                x = lr[ulo + i]
                gp[i] = t + l
                l += x
                bad |= not (x >= 0.0)
            s += l
            blk -= nb
        if has_g:
            for i in range(m - 1, -1, -1):
                bad |= not (g[lo + i] >= 0.0)

        _weights(lr, lo, g, has_g, q, m)
        # gp[m-1] = base is the smallest gap and gp[0] the largest (sums of
        # non-negative numbers round monotonically).
        if gp[m - 1] >= PAIR_MIN and gp[0] <= PAIR_MAX:
            h = m // 2
            odd = q[m - 1] / gp[m - 1] if m % 2 else 0.0
            _pair_quotients(q, gp, h)
            part = _tree_sum(q, h) + odd
        else:
            _quotients(q, gp, m)
            part = _tree_sum(q, m)

        a_hi, a_lo = _neumaier_add(a_hi, a_lo, part)
        c_hi, c_lo = _neumaier_add(c_hi, c_lo, s)
        hi = lo
    return c_hi + c_lo, a_hi + a_lo, bad


@numba.njit(**_OPTS)
def _last_iterate_into(lr, g, has_g, n, gap, out, k):
    total, terms, bad = _stream_last(lr, g, has_g, n, gap)
    if bad:
        return BAD_INPUT
    last = lr[n - 1]
    out[0, k] = 0.5 / total
    if last > 0.0:
        out[1, k] = 0.5 * ((last * g[n - 1] if has_g else last) + terms)
    else:
        out[1, k] = math.inf
    if not math.isfinite(total) or (last > 0.0 and not math.isfinite(out[1, k])):
        return NOT_FINITE
    return OK


@numba.njit(**_OPTS)
def _last_iterate(lr, g, has_g, out):
    """out[0] = a, out[1] = b of eq. (2.4) at tau = len(lr); returns a status."""
    n = lr.shape[0]
    if n == 0:
        return BAD_ARGUMENT
    gap = np.empty((2, CHUNK))
    res = np.empty((2, 1))
    status = _last_iterate_into(lr, g, has_g, n, gap, res, 0)
    out[0] = res[0, 0]
    out[1] = res[1, 0]
    return status


@numba.njit(**_OPTS)
def _average_iterate(lr, g, has_g, out):
    """out[0] = 1/(2 P), out[1] = sum w / (2 P) (eq. 2.3); returns a status."""
    n = lr.shape[0]
    if n == 0:
        return BAD_ARGUMENT
    p_hi = 0.0
    p_lo = 0.0
    w_hi = 0.0
    w_lo = 0.0
    bad = False
    p = np.zeros(BLOCK_AVG)
    w = np.zeros(BLOCK_AVG)
    for lo in range(0, n, CHUNK):
        m = min(n - lo, CHUNK)
        p[:] = 0.0
        w[:] = 0.0
        i = 0
        while i + BLOCK_AVG <= m:
            for k in range(BLOCK_AVG):
                x = lr[lo + i + k]
                p[k] += x
                w[k] += x * x * g[lo + i + k] if has_g else x * x
                bad |= not (x >= 0.0) or (has_g and not (g[lo + i + k] >= 0.0))
            i += BLOCK_AVG
        while i < m:
            x = lr[lo + i]
            p[0] += x
            w[0] += x * x * g[lo + i] if has_g else x * x
            bad |= not (x >= 0.0) or (has_g and not (g[lo + i] >= 0.0))
            i += 1
        p_hi, p_lo = _neumaier_add(p_hi, p_lo, ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7])))
        w_hi, w_lo = _neumaier_add(w_hi, w_lo, ((w[0] + w[1]) + (w[2] + w[3])) + ((w[4] + w[5]) + (w[6] + w[7])))
    if bad:
        return BAD_INPUT
    total = p_hi + p_lo
    out[0] = 0.5 / total
    out[1] = (w_hi + w_lo) / (2.0 * total)
    if not math.isfinite(total) or not math.isfinite(out[1]):
        return NOT_FINITE
    return OK


@numba.njit(parallel=True, **_OPTS)
def _curve_exact(lr, g, has_g, at, a_out, b_out):
    """Coefficients of eq. (2.4) at each tau in ``at`` (1-based, increasing)."""
    n = lr.shape[0]
    m = at.shape[0]
    for i in range(m):
        if at[i] < 1 or at[i] > n or (i > 0 and at[i] <= at[i - 1]):
            return BAD_ARGUMENT
    status = np.zeros(m, dtype=np.int64)
    res = np.empty((2, m))
    # One backward pass per tau; taus are independent, so spread them over threads.
    for k in numba.prange(m):
        gap = np.empty((2, CHUNK))
        status[k] = _last_iterate_into(lr, g, has_g, at[k], gap, res, k)
    a_out[:] = res[0]
    b_out[:] = res[1]
    return status.max()
