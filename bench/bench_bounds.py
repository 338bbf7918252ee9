"""Speed of the last-iterate bound, as ratios within one run, and backend agreement.

    python -m pytest bench/bench_bounds.py --benchmark-only

Groups are horizons T; in each, ``numpy.sum`` on the same array is the baseline that
the streaming pass is compared with (target at 10^7: at most 3x, validation
included), next to the vectorized cumulative-sum NumPy version (target: >= 15x
slower than cdfast) and, at small T, the literal O(T^2) formula.
"""

from __future__ import annotations

import numpy as np
import pytest

import cdfast
from cases import SCHEDULES
from naive import last_iterate_naive, last_iterate_vectorized

HORIZONS = [10**3, 10**4, 10**5, 10**6, 10**7]
BACKENDS = cdfast.available_backends()


def _lr(T):
    return SCHEDULES["cosine"](T)


def _bench(benchmark, T, label, fn, *args, baseline="numpy.sum", rounds=None):
    benchmark.group = f"last_iterate T={T:.0e}"
    benchmark.extra_info.update(label=label, baseline=baseline if label != baseline else None)
    if rounds:
        return benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=1)
    return benchmark(fn, *args)


@pytest.mark.parametrize("T", HORIZONS)
def test_numpy_sum(benchmark, T):
    _bench(benchmark, T, "numpy.sum", np.sum, _lr(T))


@pytest.mark.parametrize("T", HORIZONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_last_iterate_bound(benchmark, T, backend):
    lr = _lr(T)
    cdfast.last_iterate_bound(lr, backend=backend)  # compile outside the timing
    _bench(benchmark, T, f"cdfast {backend}", cdfast.last_iterate_bound, lr, 1.0, 1.0, 0.0, None, backend)


@pytest.mark.parametrize("T", HORIZONS)
def test_vectorized_numpy(benchmark, T):
    _bench(benchmark, T, "vectorized numpy (cumsum)", last_iterate_vectorized, _lr(T), rounds=5 if T >= 10**6 else None)


@pytest.mark.parametrize("T", [10**3])
def test_naive_nested_sums(benchmark, T):
    _bench(benchmark, T, "naive O(T^2)", last_iterate_naive, _lr(T), rounds=3)


@pytest.mark.parametrize("T", [10**5, 10**7])
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_backends_agree(T, name):
    if len(BACKENDS) < 2:
        pytest.skip("one backend only")
    lr = SCHEDULES[name](T)
    g = np.random.default_rng(0).uniform(0.5, 2.0, T)
    for grad_sq in (None, g):
        n = cdfast.bound_terms(lr, grad_sq, backend="numba")
        c = cdfast.bound_terms(lr, grad_sq, backend="c")
        for x, y in zip(n, c):
            assert abs(x - y) <= 1e-14 * abs(y)
