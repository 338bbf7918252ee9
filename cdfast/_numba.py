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
CHUNK = 1024  # see csrc/cdfast.c: chunk length bounds the plain-summation chains
BLOCK = 8


@numba.njit(inline="always", **_OPTS)
def _neumaier_add(hi, lo, x):
    s = hi + x
    if abs(hi) >= abs(x):
        lo += (hi - s) + x
    else:
        lo += (x - s) + hi
    return s, lo


@numba.njit(**_OPTS)
def _stream_last(lr, g, has_g, n, gap):
    """Return (P_n, sum_{j<n-1} w_j / (P_n - P_j), bad) in one backward pass.

    ``gap`` is a CHUNK-long scratch buffer supplied by the caller (no allocation
    proportional to n).  Blocks make the suffix-sum chain one addition per BLOCK
    elements; the division loop over ``gap`` then vectorises.
    """
    c_hi = lr[n - 1]
    c_lo = 0.0
    a_hi = 0.0
    a_lo = 0.0
    bad = not (lr[n - 1] >= 0.0) or (has_g and not (g[n - 1] >= 0.0))
    hi = n - 1
    acc = np.zeros(BLOCK)
    while hi > 0:
        m = min(hi, CHUNK)
        lo = hi - m
        base = c_hi + c_lo
        s = 0.0
        r0 = m % BLOCK
        blk = m
        while blk > r0:
            l = 0.0
            for i in range(blk - 1, blk - BLOCK - 1, -1):
                x = lr[lo + i]
                gap[i] = base + (s + l)
                l += x
                bad |= not (x >= 0.0)
            s += l
            blk -= BLOCK
        for i in range(r0 - 1, -1, -1):
            x = lr[lo + i]
            gap[i] = base + s
            s += x
            bad |= not (x >= 0.0)
        if has_g:
            for i in range(m):
                bad |= not (g[lo + i] >= 0.0)

        acc[:] = 0.0
        i = 0
        if has_g:
            while i + BLOCK <= m:
                for k in range(BLOCK):
                    x = lr[lo + i + k]
                    acc[k] += x * x * g[lo + i + k] / gap[i + k]
                i += BLOCK
            while i < m:
                x = lr[lo + i]
                acc[0] += x * x * g[lo + i] / gap[i]
                i += 1
        else:
            while i + BLOCK <= m:
                for k in range(BLOCK):
                    x = lr[lo + i + k]
                    acc[k] += x * x / gap[i + k]
                i += BLOCK
            while i < m:
                x = lr[lo + i]
                acc[0] += x * x / gap[i]
                i += 1
        part = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))

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
    gap = np.empty(CHUNK)
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
    p = np.zeros(BLOCK)
    w = np.zeros(BLOCK)
    for lo in range(0, n, CHUNK):
        m = min(n - lo, CHUNK)
        p[:] = 0.0
        w[:] = 0.0
        i = 0
        while i + BLOCK <= m:
            for k in range(BLOCK):
                x = lr[lo + i + k]
                p[k] += x
                w[k] += x * x * g[lo + i + k] if has_g else x * x
                bad |= not (x >= 0.0) or (has_g and not (g[lo + i + k] >= 0.0))
            i += BLOCK
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
        gap = np.empty(CHUNK)
        status[k] = _last_iterate_into(lr, g, has_g, at[k], gap, res, k)
    a_out[:] = res[0]
    b_out[:] = res[1]
    return status.max()
