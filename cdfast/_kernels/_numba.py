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
from numba.core import cgutils, types
from numba.extending import intrinsic

# Every Numba option lives here.  fastmath stays off: reassociation or FMA
# contraction would change the rounding order and break bitwise agreement with C.
_CACHE = os.environ.get("CDFAST_NUMBA_CACHE", "1") != "0"
_OPTS = dict(cache=_CACHE, nogil=True, fastmath=False, error_model="numpy", boundscheck=False)

OK, BAD_INPUT, NOT_FINITE, BAD_ARGUMENT = 0, 1, 2, 3
CHUNK = 1024  # chunk of the average-iterate sums
LCHUNK = 512  # chunk of the last-iterate pass (csrc/cdfast.c): its lane sums stay in L1
LANES = 8  # the scan runs this many independent suffix-sum chains side by side
LANE = LCHUNK // LANES  # elements per lane
_OFF0 = np.uint64(0 * LANE)
_OFF1 = np.uint64(1 * LANE)
_OFF2 = np.uint64(2 * LANE)
_OFF3 = np.uint64(3 * LANE)
_OFF4 = np.uint64(4 * LANE)
_OFF5 = np.uint64(5 * LANE)
_OFF6 = np.uint64(6 * LANE)
_OFF7 = np.uint64(7 * LANE)
_TOP = np.uint64(LCHUNK - 1)
SCRATCH_ROWS = 5  # rows of LCHUNK doubles that _stream_last needs from its caller
BLOCK_AVG = 8  # lane count of the average-iterate sums (and of the segment sums)
# The two-level pass (csrc/cdfast.c, stream_last): from SEG_MIN steps on, SEGS segments.
SEG_MIN = 1 << 19
SEGS = 64
SEG_ROWS = 5  # per segment: carry (hi, lo), terms (hi, lo), bad
# Range in which a pair of gaps can share a denominator without overflow or underflow
# (csrc/cdfast.c, lane_quotients): 2^-250 <= gap <= 2^250.
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


# The helpers below are plain loops starting at index 0 with a trip count LLVM can see:
# that is the shape its loop vectoriser handles without fastmath (every lane keeps its
# own operation order, so C and Numba still round identically).  Chunk offsets are
# unsigned, which spares Numba its negative-index wraparound on every access.


@numba.njit(inline="always", **_OPTS)
def _check(x, g, has_g):
    # The sign checks of the chunk, backwards through memory: its first touch, and the
    # hardware prefetcher follows a descending stream.
    bad = False
    for j in range(LCHUNK):
        bad |= not (x[_TOP - numba.uint64(j)] >= 0.0)
    if has_g:
        for j in range(LCHUNK):
            bad |= not (g[_TOP - numba.uint64(j)] >= 0.0)
    return bad


@numba.njit(inline="always", **_OPTS)
def _lane_scan8(e, x):
    # e[i] <- sum of x over (i, top of i's lane] for 8 lanes (x[0 .. 8*LANE-1]) at once
    # (8 independent chains, in registers); returns the lane totals.  Every
    # index is unsigned (the lane offsets _OFF are np.uint64), so Numba emits no
    # negative-index wraparound.
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = 0.0
    for jj in range(LANE):
        j = numba.uint64(LANE - 1 - jj)
        e[j + _OFF7] = l7
        l7 += x[j + _OFF7]
        e[j + _OFF6] = l6
        l6 += x[j + _OFF6]
        e[j + _OFF5] = l5
        l5 += x[j + _OFF5]
        e[j + _OFF4] = l4
        l4 += x[j + _OFF4]
        e[j + _OFF3] = l3
        l3 += x[j + _OFF3]
        e[j + _OFF2] = l2
        l2 += x[j + _OFF2]
        e[j + _OFF1] = l1
        l1 += x[j + _OFF1]
        e[j + _OFF0] = l0
        l0 += x[j + _OFF0]
    return (l0, l1, l2, l3, l4, l5, l6, l7)


@numba.njit(inline="always", **_OPTS)
def _lane_quotients(q, x, g, has_g, e, u, tu, tv, paired):
    # Quotients and weights for lane u // LANE and its partner lane, h = LCHUNK/2 further
    # on (x, g: the chunk's views; e, q: the scratch rows), with gap_u = tu + e[u+i] and
    # gap_v = tv + e[u+h+i].  Paired: q[u+i] <- w_u/gap_u + w_v/gap_v over one common
    # denominator (one division per two terms; the caller guarantees 2^-250 <= gap <=
    # 2^250).  Unpaired: q[u+i] <- w_u/gap_u, q[u+h+i] <- w_v/gap_v.  Whole-chunk views
    # with constant offsets: LLVM vectorises these loops (per-lane slices it did not).
    h = LCHUNK // 2
    v = u + h
    if paired and has_g:
        for i in range(LANE):
            gu = tu + e[u + i]
            gv = tv + e[v + i]
            wu = (x[u + i] * x[u + i]) * g[u + i]
            wv = (x[v + i] * x[v + i]) * g[v + i]
            q[u + i] = (wu * gv + wv * gu) / (gu * gv)
    elif paired:
        for i in range(LANE):
            gu = tu + e[u + i]
            gv = tv + e[v + i]
            wu = x[u + i] * x[u + i]
            wv = x[v + i] * x[v + i]
            q[u + i] = (wu * gv + wv * gu) / (gu * gv)
    else:
        for i in range(LANE):
            wu = x[u + i] * x[u + i]
            wv = x[v + i] * x[v + i]
            if has_g:
                wu = wu * g[u + i]
                wv = wv * g[v + i]
            q[u + i] = wu / (tu + e[u + i])
            q[v + i] = wv / (tv + e[v + i])


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
def _stream_range(lr, g, has_g, hi, stop, c_hi, c_lo, a_hi, a_lo, buf):
    """The backward pass over the chunks of [stop, hi): ``stream_range`` in csrc/cdfast.c.

    (c_hi + c_lo) is the carried sum above ``hi`` on entry; returns the carry above
    ``stop``, (a_hi, a_lo) plus the terms of these steps, and whether an entry of lr
    or g in the range is NaN or negative.  ``buf`` is a (SCRATCH_ROWS, LCHUNK)
    scratch buffer: the lane suffixes, the quotients, a zero-padded copy of the short
    last chunk (and of its grad_sq) and the lane starts.
    """
    e = buf[0]
    q = buf[1]
    xb = buf[2]
    gb = buf[3]
    t = buf[4]
    bad = False
    while hi > stop:
        m = min(hi - stop, LCHUNK)
        lo = hi - m
        base = c_hi + c_lo
        x = lr
        xo = numba.uint64(lo)
        gx = g
        go = numba.uint64(lo) if has_g else numba.uint64(0)
        if m != LCHUNK:  # the short last chunk: pad its top with zero steps (they add 0)
            for i in range(LCHUNK):
                xb[i] = lr[lo + i] if i < m else 0.0
                gb[i] = g[lo + i] if has_g and i < m else 0.0
            x = xb
            xo = numba.uint64(0)
            gx = gb
            go = numba.uint64(0)
        xc = x[xo:xo + numba.uint64(LCHUNK)]
        gc = gx[go:go + numba.uint64(LCHUNK)] if has_g else gx
        bad |= _check(xc, gc, has_g)
        tot = _lane_scan8(e, xc)
        # Lane starts, top down: t_k = base + (sum of the lanes above lane k).
        s = 0.0
        for k in range(LANES - 1, -1, -1):
            t[k] = base + s
            s += tot[k]
        # The smallest gap is base (the chunk's top), the largest t_0 + e[0], up to
        # rounding (the range test has a margin of 2^250).
        paired = base >= PAIR_MIN and t[0] + e[0] <= PAIR_MAX
        for k in range(LANES // 2):
            _lane_quotients(q, xc, gc, has_g, e, k * LANE, t[k], t[k + LANES // 2], paired)
        # Constant sizes: LLVM then knows every level's trip count of the inlined sum.
        part = _tree_sum(q, LCHUNK // 2) if paired else _tree_sum(q, LCHUNK)
        if paired and not part <= 1.7976931348623157e308:
            # A product w * gap overflowed although the terms may be finite (a huge
            # LR above small gaps): redo this chunk one division per term.
            for k in range(LANES // 2):
                _lane_quotients(q, xc, gc, has_g, e, k * LANE, t[k], t[k + LANES // 2], False)
            part = _tree_sum(q, LCHUNK)

        a_hi, a_lo = _neumaier_add(a_hi, a_lo, part)
        c_hi, c_lo = _neumaier_add(c_hi, c_lo, s)
        hi = lo
    return c_hi, c_lo, a_hi, a_lo, bad


@numba.njit(inline="always", **_OPTS)
def _seg_top(n, k):
    # Top of segment k (k = 0 .. SEGS) of the two-level pass (seg_top in csrc/cdfast.c):
    # the whole chunks are dealt out top down, one extra to each of the top c % SEGS;
    # the bottom segment also takes the short chunk.
    c = (n - 1) // LCHUNK
    if k >= SEGS:
        return 0
    return n - 1 - (k * (c // SEGS) + min(k, c % SEGS)) * LCHUNK


@numba.njit(inline="always", **_OPTS)
def _block_sum(x, m):
    # BLOCK_AVG strided accumulators over x[0 .. m-1]; the remainder of a short block
    # goes to accumulator 0.  Unsigned indices: no negative-index wraparound.
    p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = 0.0
    full = m // BLOCK_AVG
    for ii in range(full):
        j = numba.uint64(ii) * numba.uint64(BLOCK_AVG)
        p0 += x[j]
        p1 += x[j + numba.uint64(1)]
        p2 += x[j + numba.uint64(2)]
        p3 += x[j + numba.uint64(3)]
        p4 += x[j + numba.uint64(4)]
        p5 += x[j + numba.uint64(5)]
        p6 += x[j + numba.uint64(6)]
        p7 += x[j + numba.uint64(7)]
    for i in range(full * BLOCK_AVG, m):
        p0 += x[numba.uint64(i)]
    return ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7))


@numba.njit(inline="always", **_OPTS)
def _segment_sum(lr, stop, hi):
    # Pass A (segment_sum in csrc/cdfast.c): blocks of LCHUNK from the bottom up, each
    # summed by BLOCK_AVG strided accumulators, block sums carried with Neumaier.
    s_hi = 0.0
    s_lo = 0.0
    lo = stop
    while lo + LCHUNK <= hi:  # whole blocks: a constant trip count
        x = lr[numba.uint64(lo):numba.uint64(lo + LCHUNK)]
        s_hi, s_lo = _neumaier_add(s_hi, s_lo, _block_sum(x, LCHUNK))
        lo += LCHUNK
    if lo < hi:
        x = lr[numba.uint64(lo):numba.uint64(hi)]
        s_hi, s_lo = _neumaier_add(s_hi, s_lo, _block_sum(x, hi - lo))
    return s_hi, s_lo


@numba.njit(**_OPTS)
def _seg_sum(lr, n, k):
    """Pass A of segment k: its total (hi, lo)."""
    return _segment_sum(lr, _seg_top(n, k + 1), _seg_top(n, k))


@numba.njit(**_OPTS)
def _seg_terms(lr, g, has_g, n, k, c_hi, c_lo, buf):
    """Pass B of segment k from the carry entering it: (carry out, terms, bad)."""
    return _stream_range(lr, g, has_g, _seg_top(n, k), _seg_top(n, k + 1), c_hi, c_lo, 0.0, 0.0, buf)


@numba.njit(inline="always", **_OPTS)
def _seg_store(seg, k, res):
    c_hi, c_lo, a_hi, a_lo, bad = res
    seg[0, k] = c_hi
    seg[1, k] = c_lo
    seg[2, k] = a_hi
    seg[3, k] = a_lo
    seg[4, k] = 1.0 if bad else 0.0


@numba.njit(inline="always", **_OPTS)
def _seg_finish(seg, bad):
    # P_n is the carry out of the bottom segment; the terms are added top down.
    a_hi = 0.0
    a_lo = 0.0
    for k in range(SEGS):
        a_hi, a_lo = _neumaier_add(a_hi, a_lo, seg[2, k])
        a_hi, a_lo = _neumaier_add(a_hi, a_lo, seg[3, k])
        bad |= seg[4, k] != 0.0
    return seg[0, SEGS - 1] + seg[1, SEGS - 1], a_hi + a_lo, bad


@numba.njit(**_OPTS)
def _stream_last(lr, g, has_g, n, buf, seg):
    """Return (P_n, sum_{j<n-1} w_j / (P_n - P_j), bad) in one backward pass, on one thread.

    ``buf`` is a (SCRATCH_ROWS, LCHUNK) and ``seg`` a (SEG_ROWS, SEGS) scratch buffer
    supplied by the caller.  Same algorithm and operation order as ``stream_last`` in
    csrc/cdfast.c: one range below SEG_MIN steps, the two-level pass from there on
    (segment by segment; the carry entering segment k is eta_n plus the totals of
    segments 0..k-1, each added as (hi, lo) with Neumaier compensation).
    """
    bad = not (lr[n - 1] >= 0.0) or (has_g and not (g[n - 1] >= 0.0))
    if n < SEG_MIN:
        c_hi, c_lo, a_hi, a_lo, b = _stream_range(lr, g, has_g, n - 1, 0, lr[n - 1], 0.0, 0.0, 0.0, buf)
        return c_hi + c_lo, a_hi + a_lo, bad or b
    c_hi = lr[n - 1]
    c_lo = 0.0
    for k in range(SEGS):
        t_hi, t_lo = _seg_sum(lr, n, k)
        _seg_store(seg, k, _seg_terms(lr, g, has_g, n, k, c_hi, c_lo, buf))
        c_hi, c_lo = _neumaier_add(c_hi, c_lo, t_hi)
        c_hi, c_lo = _neumaier_add(c_hi, c_lo, t_lo)
    return _seg_finish(seg, bad)


# ---------------------------------------------------------------------------
# The two-level pass on several threads, without waiting for any of them (the
# design is explained at ``struct dynamic_pass`` in csrc/cdfast.c).  2 SEGS tasks,
# pass A running LOOKAHEAD segments ahead of pass B, dealt out by an atomic ticket;
# a missing pass A total is computed on the spot, and a thread that finds no ticket
# left computes every unpublished pass B itself.  Results are published by a
# compare-and-swap of their state 0 -> 1, then the values, then state 2 (release).

LOOKAHEAD = 8
TASKS = 2 * SEGS
_BODY = LOOKAHEAD + 2 * (SEGS - LOOKAHEAD)
# dyn: int64 array of DYN_INTS entries: [ticket, a_state[SEGS], b_state[SEGS]]
DYN_INTS = 1 + 2 * SEGS
_A_STATE = 1
_B_STATE = 1 + SEGS


def _element_pointer(context, builder, aryty, ary, idx):
    arr = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(context, builder, aryty, arr, [idx], wraparound=False)


@intrinsic
def _fetch_add(typingctx, ary, idx, val):
    """Atomically add ``val`` to ``ary[idx]`` (int64); return the old value."""
    if not (isinstance(ary, types.Array) and ary.dtype == types.int64):
        return None
    sig = types.int64(ary, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "monotonic")

    return sig, codegen


@intrinsic
def _load_acquire(typingctx, ary, idx):
    """``ary[idx]`` (int64) with acquire ordering."""
    if not (isinstance(ary, types.Array) and ary.dtype == types.int64):
        return None
    sig = types.int64(ary, types.intp)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def _store_release(typingctx, ary, idx, val):
    """``ary[idx] = val`` (int64) with release ordering."""
    if not (isinstance(ary, types.Array) and ary.dtype == types.int64):
        return None
    sig = types.void(ary, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _claim(typingctx, ary, idx):
    """Compare-and-swap ``ary[idx]`` from 0 to 1 (int64); True if this call did it."""
    if not (isinstance(ary, types.Array) and ary.dtype == types.int64):
        return None
    sig = types.boolean(ary, types.intp)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        zero = context.get_constant(types.int64, 0)
        one = context.get_constant(types.int64, 1)
        res = builder.cmpxchg(ptr, zero, one, "acq_rel", "acquire")
        return builder.extract_value(res, 1)

    return sig, codegen


@numba.njit(**_OPTS)
def _dyn_total(lr, n, k, dyn, tot):
    if _load_acquire(dyn, _A_STATE + k) == 2:
        return tot[0, k], tot[1, k]
    t_hi, t_lo = _seg_sum(lr, n, k)
    if _claim(dyn, _A_STATE + k):
        tot[0, k] = t_hi
        tot[1, k] = t_lo
        _store_release(dyn, _A_STATE + k, 2)
    return t_hi, t_lo


@numba.njit(**_OPTS)
def _dyn_terms(lr, g, has_g, n, k, dyn, tot, seg, buf):
    c_hi = lr[n - 1]
    c_lo = 0.0
    for j in range(k):
        t_hi, t_lo = _dyn_total(lr, n, j, dyn, tot)
        c_hi, c_lo = _neumaier_add(c_hi, c_lo, t_hi)
        c_hi, c_lo = _neumaier_add(c_hi, c_lo, t_lo)
    res = _seg_terms(lr, g, has_g, n, k, c_hi, c_lo, buf)
    if _claim(dyn, _B_STATE + k):
        _seg_store(seg, k, res)
        _store_release(dyn, _B_STATE + k, 2)


@numba.njit(**_OPTS)
def _dyn_worker(lr, g, has_g, n, dyn, tot, seg, buf):
    while True:
        t = _fetch_add(dyn, 0, 1)
        if t >= TASKS:
            break
        if t < LOOKAHEAD:  # A_0 .. A_{L-1}
            _dyn_total(lr, n, t, dyn, tot)
        elif t < _BODY:  # B_k and A_{k+L} alternately
            u = t - LOOKAHEAD
            if u % 2 == 0:
                _dyn_terms(lr, g, has_g, n, u // 2, dyn, tot, seg, buf)
            else:
                _dyn_total(lr, n, u // 2 + LOOKAHEAD, dyn, tot)
        else:  # the last L pass B
            _dyn_terms(lr, g, has_g, n, SEGS - LOOKAHEAD + (t - _BODY), dyn, tot, seg, buf)
    # Finish whatever is unpublished instead of waiting for it.
    for k in range(SEGS):
        if _load_acquire(dyn, _B_STATE + k) == 0:
            _dyn_terms(lr, g, has_g, n, k, dyn, tot, seg, buf)


@numba.njit(parallel=True, **_OPTS)
def _stream_last_parallel(lr, g, has_g, n, workers, bufs, seg, tot, dyn):
    """``_stream_last`` for n >= SEG_MIN on ``workers`` (>= 2) of Numba's threads.

    ``bufs``: (workers, SCRATCH_ROWS, LCHUNK) scratch; ``seg``: (SEG_ROWS, SEGS);
    ``tot``: (2, SEGS); ``dyn``: int64 (DYN_INTS,), zeroed here.  No thread waits for
    another; every task's arithmetic is fixed, so the result equals ``_stream_last``'s
    bit for bit, whatever the thread count.  The caller sets Numba's thread count to
    ``workers`` (the team must not hold idle threads: each would join the final barrier).
    """
    bad = not (lr[n - 1] >= 0.0) or (has_g and not (g[n - 1] >= 0.0))
    dyn[:] = 0
    for w in numba.prange(workers):
        _dyn_worker(lr, g, has_g, n, dyn, tot, seg, bufs[w])
    return _seg_finish(seg, bad)


@numba.njit(**_OPTS)
def _finish_last(lr, g, has_g, n, total, terms, bad, out, k):
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
def _last_iterate_into(lr, g, has_g, n, buf, seg, out, k):
    total, terms, bad = _stream_last(lr, g, has_g, n, buf, seg)
    return _finish_last(lr, g, has_g, n, total, terms, bad, out, k)


@numba.njit(**_OPTS)
def _last_iterate_one(lr, g, has_g, n, workers, out, k):
    # One row: the multi-threaded pass from SEG_MIN steps on (if workers >= 2).  The
    # workspace has a fixed size, whatever n.
    bufs = np.empty((max(workers, 1), SCRATCH_ROWS, LCHUNK))
    seg = np.empty((SEG_ROWS, SEGS))
    tot = np.empty((2, SEGS))
    dyn = np.empty(DYN_INTS, dtype=np.int64)
    if workers >= 2 and n >= SEG_MIN:
        total, terms, bad = _stream_last_parallel(lr, g, has_g, n, workers, bufs, seg, tot, dyn)
    else:
        total, terms, bad = _stream_last(lr, g, has_g, n, bufs[0], seg)
    return _finish_last(lr, g, has_g, n, total, terms, bad, out, k)


@numba.njit(**_OPTS)
def _last_iterate(lr, g, has_g, workers, out):
    """out[0] = a, out[1] = b of eq. (2.4) at tau = len(lr); returns a status.

    Long inputs (n >= SEG_MIN) use ``workers`` of Numba's threads (the caller sets
    Numba's thread count to it); the result does not depend on their number.
    """
    n = lr.shape[0]
    if n == 0:
        return BAD_ARGUMENT
    res = np.empty((2, 1))
    status = _last_iterate_one(lr, g, has_g, n, workers, res, 0)
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


# ---------------------------------------------------------------------------
# Stacked inputs: rows of a (rows, n) block (through index maps, so that broadcast
# rows are not copied), one row per task, dealt out by an atomic ticket to the
# workers (a free worker takes the next row), each row on one thread.

ROWS_PARALLEL_MIN = 1 << 15  # elements; smaller batches run on the calling thread


@numba.njit(**_OPTS)
def _row_last(lr2, lr_rows, g2, g_rows, has_g, r, buf, seg, res):
    x = lr2[lr_rows[r]]
    gx = g2[g_rows[r]] if has_g else g2[0]
    return _last_iterate_into(x, gx, has_g, x.shape[0], buf, seg, res, r)


@numba.njit(**_OPTS)
def _row_average(lr2, lr_rows, g2, g_rows, has_g, r, res):
    x = lr2[lr_rows[r]]
    gx = g2[g_rows[r]] if has_g else g2[0]
    out = np.empty(2)
    status = _average_iterate(x, gx, has_g, out)
    res[0, r] = out[0]
    res[1, r] = out[1]
    return status


@numba.njit(parallel=True, **_OPTS)
def _rows_parallel(kind, lr2, lr_rows, g2, g_rows, has_g, workers, res, status, ticket):
    rows = lr_rows.shape[0]
    for w in numba.prange(workers):
        buf = np.empty((SCRATCH_ROWS, LCHUNK))
        seg = np.empty((SEG_ROWS, SEGS))
        while True:
            r = _fetch_add(ticket, 0, 1)
            if r >= rows:
                break
            if kind == 0:
                status[r] = _row_last(lr2, lr_rows, g2, g_rows, has_g, r, buf, seg, res)
            else:
                status[r] = _row_average(lr2, lr_rows, g2, g_rows, has_g, r, res)


@numba.njit(**_OPTS)
def _iterate_rows(kind, lr2, lr_rows, g2, g_rows, has_g, workers, res, status):
    """Eq. (2.4) (kind 0) or (2.3) (kind 1) for every row: res[0, r] = a, res[1, r] = b.

    Row r is lr2[lr_rows[r]] (and g2[g_rows[r]]); status[r] is its status; returns
    the largest.  ``workers``: Numba threads to use (1: the calling thread only; the
    caller sets Numba's thread count to it).  Each row equals the one-row call bit for
    bit.
    """
    rows = lr_rows.shape[0]
    n = lr2.shape[1]
    if n == 0:
        return BAD_ARGUMENT
    if rows == 0:
        return OK
    if rows == 1 and kind == 0:
        status[0] = _last_iterate_one(lr2[lr_rows[0]], g2[g_rows[0]] if has_g else g2[0], has_g, n, workers, res, 0)
    elif workers >= 2 and rows >= 2 and rows * n >= ROWS_PARALLEL_MIN:
        ticket = np.zeros(1, dtype=np.int64)
        _rows_parallel(kind, lr2, lr_rows, g2, g_rows, has_g, min(workers, rows), res, status, ticket)
    else:
        buf = np.empty((SCRATCH_ROWS, LCHUNK))
        seg = np.empty((SEG_ROWS, SEGS))
        for r in range(rows):
            if kind == 0:
                status[r] = _row_last(lr2, lr_rows, g2, g_rows, has_g, r, buf, seg, res)
            else:
                status[r] = _row_average(lr2, lr_rows, g2, g_rows, has_g, r, res)
    return status.max()


@numba.njit(parallel=True, **_OPTS)
def _curve_exact_parallel(lr, g, has_g, at, workers, res, status, ticket):
    # The taus are dealt out largest first by an atomic ticket (a free worker takes
    # the next one); each tau is one backward pass on one thread.
    m = at.shape[0]
    for w in numba.prange(workers):
        gap = np.empty((SCRATCH_ROWS, LCHUNK))
        seg = np.empty((SEG_ROWS, SEGS))
        while True:
            k = m - 1 - _fetch_add(ticket, 0, 1)
            if k < 0:
                break
            status[k] = _last_iterate_into(lr, g, has_g, at[k], gap, seg, res, k)


@numba.njit(**_OPTS)
def _curve_exact(lr, g, has_g, at, workers, a_out, b_out):
    """Coefficients of eq. (2.4) at each tau in ``at`` (1-based, increasing).

    ``workers``: Numba threads to use (1: the calling thread only; the caller sets
    Numba's thread count to it); the result does not depend on it.
    """
    n = lr.shape[0]
    m = at.shape[0]
    for i in range(m):
        if at[i] < 1 or at[i] > n or (i > 0 and at[i] <= at[i - 1]):
            return BAD_ARGUMENT
    status = np.zeros(m, dtype=np.int64)
    res = np.empty((2, m))
    if workers >= 2 and m >= 2:
        ticket = np.zeros(1, dtype=np.int64)
        _curve_exact_parallel(lr, g, has_g, at, min(workers, m), res, status, ticket)
    else:
        gap = np.empty((SCRATCH_ROWS, LCHUNK))
        seg = np.empty((SEG_ROWS, SEGS))
        for k in range(m - 1, -1, -1):
            status[k] = _last_iterate_into(lr, g, has_g, at[k], gap, seg, res, k)
    a_out[:] = res[0]
    b_out[:] = res[1]
    return status.max() if m > 0 else OK
