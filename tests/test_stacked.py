"""Stacked schedules, ``lr`` of shape (..., T): every row equals the 1-D call, bit for bit.

Also: broadcasting of grad_sq, D, G and L_star against the leading shape; bad input
in one row named by row and step; the multi-threaded paths (rows dealt out to
threads, the wait-free long pass) against the one-thread pass.
"""

from __future__ import annotations

import numpy as np
import pytest

import cdfast
from cdfast._kernels import _numba, _stacked, _threads
from cdfast import schedules as S
from naive import average_iterate_naive, last_iterate_naive


def _stack(shape, T, seed=0):
    """Random positive schedules of shape shape + (T,), each ending above 0."""
    rng = np.random.default_rng(seed)
    lr = 1e-3 * rng.uniform(0.05, 1.0, shape + (T,))
    lr[..., rng.random(T) < 0.03] = 0.0  # zeros inside are allowed
    lr[..., -1] = 1e-3 * rng.uniform(0.01, 1.0, shape)
    return lr


def _loop(fn, lr, *args, **kwargs):
    """The loop users write today: one 1-D call per row."""
    flat = lr.reshape(-1, lr.shape[-1])
    return [fn(row, *args, **kwargs) for row in flat]


def _same(got, expect):
    got = np.asarray(got)
    expect = np.asarray(expect, dtype=np.float64)
    assert got.shape == expect.shape and np.array_equal(got, expect), (got, expect)


# ---------------------------------------------------------------------------
# Each row equals the 1-D call bit for bit


@pytest.mark.parametrize("with_g", [False, True])
@pytest.mark.parametrize("T", [1, 7, 1500])
def test_bounds_equal_the_loop_of_1d_calls(backend, T, with_g):
    lr = _stack((2, 3), T, seed=T)
    g = np.random.default_rng(1).uniform(0.1, 3.0, lr.shape) if with_g else None
    for fn in (cdfast.last_iterate_bound, cdfast.average_iterate_bound):
        got = fn(lr, 1.3, 0.7, 0.2, grad_sq=g, backend=backend)
        rows = [fn(x, 1.3, 0.7, 0.2, grad_sq=None if g is None else gx, backend=backend)
                for x, gx in zip(lr.reshape(-1, T), (g if g is not None else lr).reshape(-1, T))]
        assert got.shape == (2, 3)
        _same(got.reshape(-1), rows)
    a, b = cdfast.bound_terms(lr, g, backend=backend)
    rows = [cdfast.bound_terms(x, None if g is None else gx, backend=backend)
            for x, gx in zip(lr.reshape(-1, T), (g if g is not None else lr).reshape(-1, T))]
    _same(a.reshape(-1), [r[0] for r in rows])
    _same(b.reshape(-1), [r[1] for r in rows])


def test_rows_match_the_literal_nested_sums(backend):
    lr = _stack((4,), 300, seed=4)
    got = cdfast.last_iterate_bound(lr, 1.5, 0.5, 0.1, backend=backend)
    avg = cdfast.average_iterate_bound(lr, 1.5, 0.5, 0.1, backend=backend)
    for i, row in enumerate(lr):
        assert got[i] == pytest.approx(last_iterate_naive(row, 1.5, 0.5, 0.1), rel=1e-12)
        assert avg[i] == pytest.approx(average_iterate_naive(row, 1.5, 0.5, 0.1), rel=1e-12)


@pytest.mark.parametrize("method", ["exact", "fast"])
def test_curves_equal_the_loop_of_1d_calls(backend, method):
    lr = _stack((3,), 2000, seed=7)
    at = np.array([1, 10, 999, 2000])
    a, b = cdfast.bound_curve_terms(lr, at=at, method=method, backend=backend)
    assert a.shape == b.shape == (3, 4)
    for i, row in enumerate(lr):
        ra, rb = cdfast.bound_curve_terms(row, at=at, method=method, backend=backend)
        _same(a[i], ra)
        _same(b[i], rb)
    D = np.array([0.5, 1.0, 2.0])
    curve = cdfast.bound_curve(lr, D, 0.9, 0.1, at=at, method=method, backend=backend)
    for i, row in enumerate(lr):
        _same(curve[i], cdfast.bound_curve(row, D[i], 0.9, 0.1, at=at, method=method, backend=backend))
    assert cdfast.bound_curve(lr[:, :50], backend=backend).shape == (3, 50)  # at=None: every step


def test_optimal_peak_lr_stacked(backend):
    shapes = np.stack([S.linear(5000), S.cosine(5000), S.wsd(5000, decay_frac=0.3)])
    eta, best = cdfast.optimal_peak_lr(shapes, D=np.array([1.0, 2.0, 3.0]), G=0.5, L_star=0.1, backend=backend)
    for i, s in enumerate(shapes):
        e, v = cdfast.optimal_peak_lr(s, D=[1.0, 2.0, 3.0][i], G=0.5, L_star=0.1, backend=backend)
        assert eta[i] == e and best[i] == v
        # the closed form is the minimum of eq. (2.4) over the peak LR
        bounds = [cdfast.last_iterate_bound(f * e * s, [1.0, 2.0, 3.0][i], 0.5, 0.1) for f in (0.98, 1.0, 1.02)]
        assert bounds[1] <= min(bounds[0], bounds[2]) and bounds[1] == pytest.approx(v, rel=1e-12)


def test_long_rows_equal_the_single_threaded_pass(backend, monkeypatch):
    # rows of the segmented length: the stack runs one row per thread, each row on one
    # thread; the 1-D call splits the same row over threads.  Same bits.
    n = _numba.SEG_MIN + 512 * 37 + 5
    lr = np.stack([1e-3 * S.cosine(n, warmup=100), 1e-3 * S.wsd(n), 1e-3 * S.linear(n)])
    g = np.random.default_rng(5).uniform(0.1, 4.0, n)
    monkeypatch.setenv("CDFAST_THREADS", "2")
    two = cdfast.bound_terms(lr, g, backend=backend)
    one_d = [cdfast.bound_terms(x, g, backend=backend) for x in lr]
    monkeypatch.setenv("CDFAST_THREADS", "1")
    one = cdfast.bound_terms(lr, g, backend=backend)
    serial = [cdfast.bound_terms(x, g, backend=backend) for x in lr]
    for k in range(2):
        _same(two[k], [r[k] for r in one_d])
        _same(one[k], [r[k] for r in serial])
        _same(two[k], one[k])


# ---------------------------------------------------------------------------
# Broadcasting


def test_grad_sq_and_constants_broadcast(backend):
    T = 400
    lr = _stack((4,), T, seed=2)
    g_one = np.random.default_rng(3).uniform(0.5, 2.0, T)
    g_three = np.random.default_rng(4).uniform(0.5, 2.0, (3, 1, T))
    # grad_sq (T,) against 4 schedules
    got = cdfast.last_iterate_bound(lr, grad_sq=g_one, backend=backend)
    _same(got, [cdfast.last_iterate_bound(x, grad_sq=g_one, backend=backend) for x in lr])
    # grad_sq (3, 1, T) against lr (4, T): a (3, 4) table
    got = cdfast.last_iterate_bound(lr, grad_sq=g_three, backend=backend)
    assert got.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert got[i, j] == cdfast.last_iterate_bound(lr[j], grad_sq=g_three[i, 0], backend=backend)
    # one schedule, several gradient profiles
    got = cdfast.bound_terms(lr[0], g_three[:, 0], backend=backend)
    _same(got[0], [cdfast.bound_terms(lr[0], gg, backend=backend)[0] for gg in g_three[:, 0]])
    # D, G, L_star as arrays
    D = np.array([[0.5], [1.0], [2.0]])
    got = cdfast.last_iterate_bound(lr, D=D, G=np.array([1.0, 2.0, 3.0, 4.0]), L_star=0.25, backend=backend)
    assert got.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert got[i, j] == cdfast.last_iterate_bound(lr[j], float(D[i, 0]), float(j + 1), 0.25, backend=backend)
    # a 1-D schedule with an array D gives an array
    got = cdfast.average_iterate_bound(lr[0], D=[1.0, 2.0], backend=backend)
    _same(got, [cdfast.average_iterate_bound(lr[0], D=d, backend=backend) for d in (1.0, 2.0)])


def test_shapes_that_do_not_broadcast_are_refused():
    lr = _stack((4,), 10)
    with pytest.raises(ValueError, match=r"do not broadcast: lr \(4,\), grad_sq \(3,\)"):
        cdfast.bound_terms(lr, np.ones((3, 10)))
    with pytest.raises(ValueError, match="grad_sq has 9 steps per row"):
        cdfast.bound_terms(lr, np.ones((4, 9)))
    with pytest.raises(ValueError, match=r"do not broadcast: lr \(4,\), D \(3,\)"):
        cdfast.bound_curve(lr, D=np.ones(3))


def test_empty_stack_and_conversions(backend):
    a, b = cdfast.bound_terms(np.ones((0, 5)), backend=backend)
    assert a.shape == b.shape == (0,)
    base = _stack((3,), 257, seed=9)
    expect = cdfast.last_iterate_bound(base, backend=backend)
    wide = np.empty((3, 2 * 257))
    wide[:, ::2] = base
    _same(cdfast.last_iterate_bound(wide[:, ::2], backend=backend), expect)  # non-contiguous rows
    _same(cdfast.last_iterate_bound(base.tolist(), backend=backend), expect)  # nested lists
    f32 = base.astype(np.float32)
    _same(cdfast.last_iterate_bound(f32, backend=backend), cdfast.last_iterate_bound(f32.astype(float), backend=backend))
    _same(cdfast.last_iterate_bound(np.asfortranarray(base), backend=backend), expect)


# ---------------------------------------------------------------------------
# Bad input in one row, named by row and step


def test_bad_entry_is_named_by_row_and_step(backend):
    lr = _stack((4, 3), 2000, seed=11)
    lr[3, 1, 1523] = np.nan
    for fn in (cdfast.last_iterate_bound, cdfast.average_iterate_bound, cdfast.bound_terms,
               cdfast.bound_curve, cdfast.bound_curve_terms, cdfast.optimal_peak_lr):
        with pytest.raises(ValueError, match=r"lr\[3, 1, 1523\] is nan; learning rates must be finite"):
            fn(lr, backend=backend)
    lr[3, 1, 1523] = 1e-3
    lr[1, 2, 7] = -0.5
    with pytest.raises(ValueError, match=r"lr\[1, 2, 7\] = -0.5 is negative"):
        cdfast.last_iterate_bound(lr, backend=backend)
    lr[1, 2, 7] = 1e-3
    lr[2, 0, -1] = 0.0
    with pytest.raises(ValueError, match=r"lr\[2, 0, 1999\] \(the final learning rate\) is 0"):
        cdfast.last_iterate_bound(lr, backend=backend)
    lr[2, 0, -1] = 1e-3
    g = np.ones((1, 3, 2000))
    g[0, 2, 5] = np.inf
    with pytest.raises(ValueError, match=r"grad_sq\[0, 2, 5\] is inf"):
        cdfast.last_iterate_bound(lr, grad_sq=g, backend=backend)
    with pytest.raises(ValueError, match=r"grad_sq\[0, 2, 5\] is inf"):
        cdfast.bound_curve(lr, grad_sq=g, at=[2000], backend=backend)
    with pytest.raises(ValueError, match=r"D\[1\] = -1.0 must be >= 0"):
        cdfast.last_iterate_bound(lr, D=np.array([1.0, -1.0, 1.0]), backend=backend)
    with pytest.raises(ValueError, match=r"D\[1\] = -1.0 is negative"):
        cdfast.bound_curve(lr, D=np.array([1.0, -1.0, 1.0]), at=[5], backend=backend)
    with pytest.raises(ValueError, match=r"G\[2\] = 0.0 must be > 0"):
        cdfast.optimal_peak_lr(lr, G=np.array([1.0, 1.0, 0.0]), backend=backend)


def test_scalar_lr_is_refused():
    with pytest.raises(ValueError, match="lr is a scalar"):
        cdfast.bound_terms(3.0)
    with pytest.raises(TypeError, match="real numbers"):
        cdfast.bound_terms(np.ones((2, 3), dtype=complex))


# ---------------------------------------------------------------------------
# Threads


def test_thread_count_override_and_bounds(monkeypatch):
    monkeypatch.setenv("CDFAST_THREADS", "1")
    assert _threads.available(8) == 1
    monkeypatch.setenv("CDFAST_THREADS", "64")
    assert _threads.available(3) == 3
    monkeypatch.delenv("CDFAST_THREADS")
    monkeypatch.setattr(_threads, "_cache", None)
    assert 1 <= _threads.available(4) <= 4
    monkeypatch.setattr(_threads, "_LOADAVG", "/nonexistent/loadavg")  # unreadable: nothing is busy
    assert _threads.busy_elsewhere() == 0


def test_the_kernels_thresholds_are_the_wrappers():
    assert _stacked.SEG_MIN == _numba.SEG_MIN
    assert _stacked.ROWS_PARALLEL_MIN == _numba.ROWS_PARALLEL_MIN


def test_rows_kernels_do_not_depend_on_thread_count(backend):
    from cdfast._kernels._backends import get_backend

    be = get_backend(backend)
    lr = _stack((9,), 7000, seed=13)
    g = np.random.default_rng(2).uniform(0.2, 2.0, (2, 7000))
    rows = np.arange(9, dtype=np.int64)
    g_rows = np.arange(9, dtype=np.int64) % 2
    results = []
    for threads in (1, 2, 0):
        for kernel in (be.last_iterate_rows, be.average_iterate_rows):
            a, b, st = np.empty(9), np.empty(9), np.zeros(9, dtype=np.int32)
            assert kernel(lr, rows, g, g_rows, threads, a, b, st) == 0 and not st.any()
            results.append((a, b))
    for k in range(2):
        for r in results[k::2]:
            _same(r[0], results[k][0])
            _same(r[1], results[k][1])


def _dyn_case(n):
    lr = 1e-3 * S.wsd(n, decay_frac=0.3)
    lr[::5] *= 0.5
    return lr


def test_wait_free_pass_recomputes_what_nobody_published():
    # Drive the Numba worker of the multi-threaded pass by hand: no ticket left and
    # some pass A totals claimed but never published (a thread that was descheduled):
    # the worker must compute them itself and reproduce the serial pass bit for bit.
    n = _numba.SEG_MIN + 512 * 11 + 3
    lr = _dyn_case(n)
    g = np.zeros(1)
    buf = np.empty((_numba.SCRATCH_ROWS, _numba.LCHUNK))
    serial = _numba._stream_last(lr, g, False, n, buf, np.empty((_numba.SEG_ROWS, _numba.SEGS)))
    for stuck in ([], [0, 5, 63], list(range(0, 64, 2))):
        dyn = np.zeros(_numba.DYN_INTS, dtype=np.int64)
        dyn[0] = _numba.TASKS  # every task taken
        for k in stuck:
            dyn[1 + k] = 1  # claimed, never published
        seg = np.empty((_numba.SEG_ROWS, _numba.SEGS))
        tot = np.empty((2, _numba.SEGS))
        _numba._dyn_worker(lr, g, False, n, dyn, tot, seg, buf)
        assert tuple(_numba._seg_finish(seg, False)) == tuple(serial)


# ---------------------------------------------------------------------------
# bound_gradient goes through the same wrapper (one decorator line)


def test_the_wrapper_stacks_bound_gradient():
    gradient = pytest.importorskip("cdfast.gradient", reason="cdfast.gradient is not in this tree")
    fn = gradient.bound_gradient
    stacked_fn = fn if hasattr(fn, "__wrapped_row__") else _stacked.stacked(
        "(t)->(),(t)", scalars=("D", "G", "L_star"))(fn)
    lr = _stack((2, 3), 500, seed=21)
    D = np.array([1.0, 2.0, 3.0])
    value, grad = stacked_fn(lr, D=D, G=0.5)
    assert value.shape == (2, 3) and grad.shape == (2, 3, 500)
    for i in range(2):
        for j in range(3):
            v, g = fn(lr[i, j], D=float(D[j]), G=0.5)
            assert v == value[i, j] and np.array_equal(g, grad[i, j])
    lr[1, 2, 17] = np.nan
    with pytest.raises(ValueError, match=r"lr\[1, 2, 17\] is nan"):
        stacked_fn(lr)


# ---------------------------------------------------------------------------
# First use: the C kernels serve while Numba's cache is cold


def test_auto_uses_c_while_numba_is_cold(tmp_path):
    import os
    import subprocess
    import sys

    if "c" not in cdfast.available_backends():
        pytest.skip("the C extension is not built")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "CDFAST_NUMBA_WARMUP": "0"}
    env.pop("CDFAST_BACKEND", None)
    code = ("from cdfast._kernels import _backends, _warmup; print(_warmup.numba_is_warm(), _backends.get_backend().name, "
            "_backends.get_backend('numba').name)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.split() == ["False", "c", "numba"], done.stderr
    done = subprocess.run([sys.executable, "-m", "cdfast", "report", "--steps", "1e4", "--no-exam"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "numba: not timed" in done.stdout and "python -m cdfast._kernels._compile" in done.stdout
    assert "numba_ms" not in done.stdout


def test_numba_is_warm_once_compiled():
    from cdfast._kernels import _compile, _warmup

    if "numba" not in cdfast.available_backends():
        pytest.skip("Numba is not importable")
    _compile.compile_all()  # loads from the cache, or compiles
    assert _warmup.numba_is_warm()


@pytest.mark.parametrize("method", ["exact", "fast"])
def test_curves_do_not_depend_on_thread_count(backend, method, monkeypatch):
    lr = 1e-3 * S.cosine(30_000, warmup=300)
    at = np.arange(250, 30_001, 250)
    got = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("CDFAST_THREADS", threads)
        got[threads] = cdfast.bound_curve_terms(lr, at=at, method=method, backend=backend)
    _same(got["1"][0], got["2"][0])
    _same(got["1"][1], got["2"][1])


def test_read_only_input_reuses_the_compiled_kernels():
    if "numba" not in cdfast.available_backends():
        pytest.skip("Numba is not importable")
    from cdfast._kernels import _numba

    lr = _stack((3,), 500, seed=3)
    at = np.array([10, 20, 500])
    expect = cdfast.bound_terms(lr, backend="numba"), cdfast.bound_curve_terms(lr[0], at=at, backend="numba")
    counts = len(_numba._iterate_rows.signatures), len(_numba._curve_exact.signatures)
    lr.setflags(write=False)
    at.setflags(write=False)
    got = cdfast.bound_terms(lr, backend="numba"), cdfast.bound_curve_terms(lr[0], at=at, backend="numba")
    assert (len(_numba._iterate_rows.signatures), len(_numba._curve_exact.signatures)) == counts
    for x, y in zip(got, expect):
        _same(x[0], y[0])
        _same(x[1], y[1])
