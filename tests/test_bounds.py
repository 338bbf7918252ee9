"""The last- and average-iterate bounds against the literal formulas, mpmath, each other."""

from __future__ import annotations

import hashlib
import json
import pathlib
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cdfast
from cases import BAD_INPUTS, SCHEDULES
from naive import average_iterate_naive, last_iterate_naive

RTOL_NAIVE = 1e-12  # vs the nested-sum formula (itself evaluated in float64, O(T) deep sums)
RTOL_MP = 1e-13  # vs 40-digit mpmath from the same float64 inputs
RTOL_BACKENDS = 1e-14

REFS = pathlib.Path(__file__).resolve().parent / "data" / "references.json"


def rel(x, y):
    return abs(x - y) / abs(y)


@pytest.mark.parametrize("T", [1, 2, 3, 7, 8, 9, 31, 1023, 1024, 1025, 1031, 2000])
@pytest.mark.parametrize("with_g", [False, True])
def test_last_iterate_matches_nested_sums(backend, T, with_g):
    rng = np.random.default_rng(T)
    lr = rng.uniform(0.0, 2.0, T)
    lr[-1] = rng.uniform(0.01, 1.0)
    lr[rng.random(T) < 0.05] = 0.0  # zeros inside are fine as long as the last LR is positive
    lr[-1] = max(lr[-1], 0.01)
    g = rng.uniform(0.0, 3.0, T) if with_g else None
    D, G, L = 1.7, 0.6, 0.25
    got = cdfast.last_iterate_bound(lr, D, G, L, grad_sq=g, backend=backend)
    assert rel(got, last_iterate_naive(lr, D, G, L, g)) < RTOL_NAIVE


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_match_nested_sums(backend, name):
    lr = SCHEDULES[name](1500)
    assert rel(cdfast.last_iterate_bound(lr, backend=backend), last_iterate_naive(lr)) < RTOL_NAIVE


def test_bound_terms_compose_the_bound(backend):
    lr = SCHEDULES["cosine"](777)
    a, b = cdfast.bound_terms(lr, backend=backend)
    for D, G, L in [(1.0, 1.0, 0.0), (3.0, 0.2, 2.5), (0.0, 1.0, 1.0)]:
        assert cdfast.last_iterate_bound(lr, D, G, L, backend=backend) == pytest.approx(L + D * D * a + G * G * b, rel=1e-15)


def test_single_step_closed_form(backend):
    # T = 1: D^2 / (2 eta) + G^2 eta / 2
    assert cdfast.last_iterate_bound([0.25], D=2.0, G=3.0, backend=backend) == pytest.approx(4 / 0.5 + 9 * 0.125, rel=1e-15)


@pytest.mark.parametrize("T", [1, 5, 1024, 1500])
@pytest.mark.parametrize("with_g", [False, True])
def test_average_iterate_matches_formula(backend, T, with_g):
    rng = np.random.default_rng(T + 1)
    lr = rng.uniform(0.0, 1.0, T)
    lr[0] = 0.5
    g = rng.uniform(0.0, 2.0, T) if with_g else None
    got = cdfast.average_iterate_bound(lr, 1.3, 0.8, 0.1, grad_sq=g, backend=backend)
    assert rel(got, average_iterate_naive(lr, 1.3, 0.8, 0.1, g)) < RTOL_NAIVE


def test_average_iterate_allows_zero_final_lr(backend):
    lr = np.array([1.0, 0.5, 0.0])
    assert rel(cdfast.average_iterate_bound(lr, backend=backend), average_iterate_naive(lr)) < 1e-15


def _references():
    if not REFS.exists():
        pytest.skip("tests/data/references.json missing: run python tests/make_references.py")
    return json.loads(REFS.read_text())


def _ref_id(r):
    return f"{r['schedule']}-{r['params']}-T{r['T']}-g{r['grad_sq_seed']}"


@pytest.mark.parametrize("ref", _references() if REFS.exists() else [], ids=_ref_id)
def test_long_horizons_match_mpmath(backend, ref):
    import make_references as mk

    lr, g = mk.case_input(ref["schedule"], ref["params"], ref["T"], ref["grad_sq_seed"])
    assert mk.digest(lr, g) == ref["sha256"], "schedule changed since the reference was made: rerun tests/make_references.py"
    a, b = cdfast.bound_terms(lr, grad_sq=g, backend=backend)
    assert rel(a, float(ref["a"])) < RTOL_MP
    assert rel(b, float(ref["b"])) < RTOL_MP


@pytest.mark.parametrize("T", [2, 1000, 1024 * 8 + 5, 10**6, 10**7])
@pytest.mark.parametrize("with_g", [False, True])
def test_backends_agree(T, with_g):
    if len(cdfast.available_backends()) < 2:
        pytest.skip("only one backend is built")
    names = ["linear", "random"] if T == 10**7 else sorted(SCHEDULES)
    g = np.random.default_rng(3).uniform(0.1, 4.0, T) if with_g else None
    for name in names:
        lr = SCHEDULES[name](T)
        numba_ab = cdfast.bound_terms(lr, grad_sq=g, backend="numba")
        c_ab = cdfast.bound_terms(lr, grad_sq=g, backend="c")
        for x, y in zip(numba_ab, c_ab):
            assert rel(x, y) <= RTOL_BACKENDS, (name, numba_ab, c_ab)
        n_avg = cdfast.average_iterate_bound(lr, grad_sq=g, backend="numba")
        assert rel(n_avg, cdfast.average_iterate_bound(lr, grad_sq=g, backend="c")) <= RTOL_BACKENDS


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_refused_with_a_clear_message(backend, case):
    _, lr, kwargs, exc, fragment = case
    with pytest.raises(exc, match=None) as info:
        cdfast.last_iterate_bound(lr, backend=backend, **kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize("case", [c for c in BAD_INPUTS if c[0] not in ("zero final", "D negative", "G nan", "D string")],
                         ids=lambda c: c[0])
def test_bound_terms_and_average_refuse_bad_input(backend, case):
    _, lr, kwargs, exc, fragment = case
    g = kwargs.get("grad_sq")
    with pytest.raises(exc) as info:
        cdfast.bound_terms(lr, grad_sq=g, backend=backend)
    assert fragment in str(info.value)
    if "all zeros" not in fragment:
        with pytest.raises(exc):
            cdfast.average_iterate_bound(lr, grad_sq=g, backend=backend)


def test_average_all_zero(backend):
    with pytest.raises(ValueError, match="all zeros"):
        cdfast.average_iterate_bound(np.zeros(5), backend=backend)


def test_conversions_are_accepted(backend):
    base = SCHEDULES["random"](2001)
    expect = cdfast.last_iterate_bound(base, backend=backend)
    wide = np.empty(2 * base.size)
    wide[::2] = base
    assert cdfast.last_iterate_bound(wide[::2], backend=backend) == expect  # non-contiguous view
    assert cdfast.last_iterate_bound(list(base), backend=backend) == expect
    ints = np.arange(1, 50)[::-1]
    assert cdfast.last_iterate_bound(ints, backend=backend) == cdfast.last_iterate_bound(ints.astype(float), backend=backend)
    f32 = base.astype(np.float32)
    assert cdfast.last_iterate_bound(f32, backend=backend) == cdfast.last_iterate_bound(f32.astype(np.float64), backend=backend)


def test_leading_zero_lrs_contribute_nothing(backend):
    lr = SCHEDULES["linear"](300)
    padded = np.concatenate([np.zeros(7), lr])
    a, b = cdfast.bound_terms(lr, backend=backend)
    a0, b0 = cdfast.bound_terms(padded, backend=backend)
    assert a0 == pytest.approx(a, rel=1e-15) and b0 == pytest.approx(b, rel=1e-14)


# ---------------------------------------------------------------------------
# Invariants (CONVENTIONS.md): scaling, monotonicity, agreement on random input

lrs = hnp.arrays(np.float64, st.integers(1, 300), elements=st.floats(1e-6, 10.0, allow_subnormal=False))


@settings(max_examples=60, deadline=None)
@given(lr=lrs, c=st.floats(1e-3, 1e3))
def test_scaling_lr_scales_terms(lr, c):
    a, b = cdfast.bound_terms(lr)
    ac, bc = cdfast.bound_terms(lr * c)
    assert ac == pytest.approx(a / c, rel=1e-12)
    assert bc == pytest.approx(b * c, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(lr=lrs, D=st.floats(0, 10), G=st.floats(0, 10), dD=st.floats(0, 5), dG=st.floats(0, 5))
def test_bound_is_monotone_in_D_and_G(lr, D, G, dD, dG):
    base = cdfast.last_iterate_bound(lr, D, G)
    assert cdfast.last_iterate_bound(lr, D + dD, G) >= base
    assert cdfast.last_iterate_bound(lr, D, G + dG) >= base


@settings(max_examples=60, deadline=None)
@given(lr=lrs)
def test_backends_agree_on_random_schedules(lr):
    if len(cdfast.available_backends()) < 2:
        return
    n = cdfast.bound_terms(lr, backend="numba")
    c = cdfast.bound_terms(lr, backend="c")
    assert n[0] == pytest.approx(c[0], rel=RTOL_BACKENDS) and n[1] == pytest.approx(c[1], rel=RTOL_BACKENDS)


# ---------------------------------------------------------------------------
# Long inputs take the two-level (segmented) pass, whose segments run on several
# threads: the result must not depend on how many.

_THREADS_SCRIPT = """
import sys
import numpy as np
import cdfast
from cdfast import schedules
from cdfast._kernels import _numba
n = _numba.SEG_MIN + 512 * 37 + 5
lr = 1e-3 * schedules.cosine(n, warmup=1000)
lr[::7] *= 0.5
g = np.random.default_rng(5).uniform(0.1, 4.0, n)
for grad_sq in (None, g):
    print(*(x.hex() for x in cdfast.bound_terms(lr, grad_sq, backend=sys.argv[1])))
"""


def _segmented_case():
    from cdfast._kernels import _numba

    n = _numba.SEG_MIN + 512 * 37 + 5  # not a whole number of chunks per segment
    lr = 1e-3 * SCHEDULES["cosine"](n)
    return lr, np.random.default_rng(5).uniform(0.1, 4.0, n)


def test_long_pass_does_not_depend_on_numba_thread_count(monkeypatch):
    import numba

    lr, g = _segmented_case()
    before = numba.get_num_threads()
    try:
        got = {}
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            monkeypatch.setenv("CDFAST_THREADS", str(threads))  # even when other work keeps a core busy
            numba.set_num_threads(threads)
            got[threads] = [cdfast.bound_terms(lr, gs, backend="numba") for gs in (None, g)]
    finally:
        numba.set_num_threads(before)
    assert len(set(map(tuple, got.values()))) == 1, got
    # ... and equals the one-thread pass of the exact curve, bit for bit.
    for gs, ab in zip((None, g), got[1]):
        a, b = cdfast.bound_curve_terms(lr, gs, at=[lr.size], method="exact", backend="numba")
        assert (float(a[0]), float(b[0])) == ab


def test_long_pass_does_not_depend_on_openmp_thread_count():
    import os
    import subprocess
    import sys

    if "c" not in cdfast.available_backends():
        pytest.skip("the C extension is not built")
    out = {}
    for threads in ("1", "2"):
        # CDFAST_THREADS: use the threads even when other work keeps a core busy
        env = {**os.environ, "OMP_NUM_THREADS": threads, "CDFAST_THREADS": threads}
        done = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, "c"], capture_output=True, text=True,
                              env=env, timeout=120, check=True)
        out[threads] = done.stdout
    assert out["1"] == out["2"] and out["1"].count("\n") == 2, out
    if "numba" in cdfast.available_backends():  # the backends agree to the last bit
        done = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, "numba"], capture_output=True, text=True,
                              timeout=120, check=True)
        assert done.stdout == out["1"]


# ---------------------------------------------------------------------------
# Memory: the streaming kernels allocate nothing proportional to T


def test_streaming_allocates_nothing_proportional_to_T(backend):
    """Two horizons on the same (segmented, multi-threaded) path, 4x apart: the same fixed
    scratch (per-thread buffers, segment tables), nothing that grows with T."""
    from numba.core.runtime import nrt

    from numba.core.runtime import _nrt_python

    _nrt_python.memsys_enable_stats()
    small, large = SCHEDULES["cosine"](1_000_000), SCHEDULES["cosine"](4_000_000)
    for lr in (small, large):  # compile, start the thread pool: one-time costs
        cdfast.last_iterate_bound(lr, backend=backend)
    peaks, nrt_allocs = [], []
    for lr in (small, large):
        before = nrt.rtsys.get_allocation_stats().alloc
        tracemalloc.start()
        cdfast.last_iterate_bound(lr, backend=backend)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        nrt_allocs.append(nrt.rtsys.get_allocation_stats().alloc - before)
    assert peaks[1] < 64 * 1024, f"Python-side peak {peaks[1]} bytes for T = 4e6 (input is {large.nbytes} bytes)"
    assert peaks[1] <= peaks[0] + 4096
    assert nrt_allocs[0] == nrt_allocs[1], "kernel allocation count depends on T"


# ---------------------------------------------------------------------------
# Backend selection


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="'fortran' is not a backend"):
        cdfast.last_iterate_bound([1.0], backend="fortran")


def test_environment_variable_selects_backend(monkeypatch):
    from cdfast._kernels._backends import get_backend

    for name in cdfast.available_backends():
        monkeypatch.setenv("CDFAST_BACKEND", name)
        assert get_backend().name == name
    monkeypatch.setenv("CDFAST_BACKEND", "nope")
    with pytest.raises(ValueError, match="CDFAST_BACKEND='nope'"):
        cdfast.last_iterate_bound([1.0])


def test_missing_c_extension_falls_back_and_explains(monkeypatch, caplog):
    from cdfast._kernels import _backends

    monkeypatch.setattr(_backends, "_cache", {k: v for k, v in _backends._cache.items() if k != "c"})
    monkeypatch.setattr(_backends, "_errors", {"c": ImportError("No module named 'cdfast._kernels._cdfast'")})
    monkeypatch.setattr(_backends, "NAMES", ("c", "numba"))  # even if C were preferred...
    with caplog.at_level("DEBUG", logger="cdfast"):
        assert _backends.get_backend("auto").name == "numba"
    assert "unavailable" in caplog.text or "skips" in caplog.text
    with pytest.raises(ImportError, match="pip install -e"):
        _backends.get_backend("c")
    assert _backends.available_backends() == ("numba",)


def test_references_file_is_consistent():
    refs = _references()
    assert {r["T"] for r in refs} >= {10**6, 10**7}
    for r in refs:
        assert len(r["sha256"]) == len(hashlib.sha256().hexdigest())


def test_huge_lr_above_small_gaps_is_not_an_overflow(backend):
    # eta^2 * gap overflows although every term eta^2 / gap is finite: the kernel must
    # not take the shared-denominator shortcut there.
    from naive import terms_mp

    lr = np.full(2000, 1e5)
    lr[500] = 1e150
    a, b = cdfast.bound_terms(lr, backend=backend)
    ref_a, ref_b = terms_mp(lr)
    assert rel(a, float(ref_a)) < RTOL_MP and rel(b, float(ref_b)) < RTOL_MP
