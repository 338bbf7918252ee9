"""Speed and memory of the whole loss-bound curve (cdfast.bound_curve), as ratios.

    python -m pytest bench/bench_curve.py --benchmark-only

Groups are horizons T.  In each, one ``last_iterate_bound`` pass at the same T (same
backend) is the baseline: the fast curve at 10^7 steps should cost at most ~200 such
passes.  Also measured: the exact curve at 10^4 and 10^5, and the per-tau NumPy loop
users write today (cumulative sums, O(T^2)) at small T.  Correctness at scale is
asserted here (fast vs exact at sampled taus at 10^7, backend agreement), and the
tracemalloc peak of the 10^7 fast curve is checked to be O(T), not O(T * M).  The last
group is the loss models' search surrogates: block moments against exact passes at the
taus of a logged 25k-step run.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import cdfast
from cases import SCHEDULES
from naive import last_iterate_vectorized

BACKENDS = cdfast.available_backends()
FAST_HORIZONS = [10**5, 10**6, 10**7]
EXACT_HORIZONS = [10**4, 10**5]
RTOL = 1e-12


def _lr(T):
    return SCHEDULES["warmup_cosine"](T)


def _group(benchmark, T, label, baseline):
    benchmark.group = f"curve T={T:.0e}"
    benchmark.extra_info.update(label=label, baseline=baseline if label != baseline else None)


def _rounds(T):
    return 1 if T >= 10**7 else 3


@pytest.mark.parametrize("T", sorted(set(FAST_HORIZONS + EXACT_HORIZONS + [10**3])))
@pytest.mark.parametrize("backend", BACKENDS)
def test_single_pass(benchmark, T, backend):
    lr = _lr(T)
    cdfast.last_iterate_bound(lr, backend=backend)
    _group(benchmark, T, f"last_iterate_bound {backend}", None)
    benchmark(cdfast.last_iterate_bound, lr, 1.0, 1.0, 0.0, None, backend)


@pytest.mark.parametrize("T", FAST_HORIZONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_curve(benchmark, T, backend):
    lr = _lr(T)
    cdfast.bound_curve_terms(lr[:1000], method="fast", backend=backend)  # compile outside the timing
    _group(benchmark, T, f"cdfast fast curve {backend}", f"last_iterate_bound {backend}")
    a, b = benchmark.pedantic(
        cdfast.bound_curve_terms, args=(lr,), kwargs=dict(method="fast", rtol=RTOL, backend=backend),
        rounds=_rounds(T), iterations=1,
    )
    # Spot-check against the exact method at a few taus (cheap: O(T) each).
    at = np.unique(np.linspace(1, T, 12).astype(np.int64))
    a_ex, b_ex = cdfast.bound_curve_terms(lr, at=at, method="exact", backend=backend)
    finite = np.isfinite(b_ex)  # the warmup starts at LR 0: +inf at tau = 1
    np.testing.assert_array_equal(np.isinf(b[at - 1]), ~finite)
    assert np.max(np.abs(b[at - 1][finite] / b_ex[finite] - 1)) < RTOL
    assert np.max(np.abs(a[at - 1][finite] / a_ex[finite] - 1)) < 1e-14


@pytest.mark.parametrize("T", EXACT_HORIZONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_curve(benchmark, T, backend):
    lr = _lr(T)
    cdfast.bound_curve_terms(lr[:100], method="exact", backend=backend)
    _group(benchmark, T, f"cdfast exact curve {backend}", f"last_iterate_bound {backend}")
    benchmark.pedantic(cdfast.bound_curve_terms, args=(lr,), kwargs=dict(method="exact", backend=backend),
                       rounds=_rounds(T * 100), iterations=1)


def _numpy_per_tau(lr):
    return np.array([last_iterate_vectorized(lr[:tau]) for tau in range(1, lr.shape[0] + 1)])


@pytest.mark.parametrize("T", [10**3, 10**4])
def test_numpy_per_tau_loop(benchmark, T):
    baseline = f"last_iterate_bound {BACKENDS[0]}"
    _group(benchmark, T, "numpy per-tau loop", baseline)
    benchmark.pedantic(_numpy_per_tau, args=(_lr(T),), rounds=1 if T >= 10**4 else 3, iterations=1)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_fast_backends_agree_at_1e6(name):
    if len(BACKENDS) < 2:
        pytest.skip("one backend only")
    lr = SCHEDULES[name](10**6)
    a1, b1 = cdfast.bound_curve_terms(lr, method="fast", rtol=1e-10, backend="c")
    a2, b2 = cdfast.bound_curve_terms(lr, method="fast", rtol=1e-10, backend="numba")
    for x, y in ((a1, a2), (b1, b2)):
        np.testing.assert_array_equal(np.isinf(x), np.isinf(y))
        finite = np.isfinite(y)
        assert np.max(np.abs(x[finite] / y[finite] - 1)) <= 1e-13


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_curve_memory_is_linear_in_T(backend):
    T = 10**7
    lr = _lr(T)
    cdfast.bound_curve_terms(lr[:1000], method="fast", backend=backend)
    tracemalloc.start()
    try:
        cdfast.bound_curve_terms(lr, method="fast", rtol=RTOL, backend=backend)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_step = peak / T
    print(f"\nfast curve T=1e7 ({backend}): tracemalloc peak {peak / 2**20:.0f} MiB = {per_step:.1f} bytes/step")
    # outputs a, b (16 B/step), the default `at` (8), scratch (8), node-range temporaries
    # (<= 9): O(T).  An O(T * M) buffer would be >= 8 * M ~ 1600 B/step.
    assert per_step < 64


# The loss models' search surrogates: a 25k-step run logged every 200 steps, exact passes
# (the reference, two threads when free) against block moments (one thread).
MODEL_T, MODEL_EVERY = 25_000, 200


@pytest.mark.parametrize("method", ["exact", "moments"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_surrogate_nodes(benchmark, method, backend):
    from cdfast.curve import MOMENTS_RTOL, curve_terms_moments

    lr = _lr(MODEL_T)
    at = np.arange(MODEL_EVERY, MODEL_T + 1, MODEL_EVERY)
    benchmark.group = f"model surrogate nodes T={MODEL_T}, {at.size} taus"
    benchmark.extra_info.update(label=f"{method} {backend}", baseline=None if method == "exact" else f"exact {backend}")
    if method == "exact":
        run = lambda: cdfast.bound_curve_terms(lr, at=at, method="exact", backend=backend)  # noqa: E731
    else:
        run = lambda: curve_terms_moments(lr, None, at, backend=backend)  # noqa: E731
    run()
    a, b = benchmark.pedantic(run, rounds=20, iterations=1, warmup_rounds=2)
    _, b_ex = cdfast.bound_curve_terms(lr, at=at, method="exact", backend=backend)
    assert np.max(np.abs(b / b_ex - 1)) <= MOMENTS_RTOL
