"""Speed and memory of the bound's gradient (cdfast.bound_gradient), as ratios within one run.

    python -m pytest bench/bench_gradient.py --benchmark-only

Groups are horizons T = 10^4 .. 10^7.  In each, one ``last_iterate_bound`` pass at the
same T (same backend) is the baseline: the gradient (value included) should cost at most
about 4 such passes.  Also timed: the gradient as a user writes it with NumPy (prefix
sums; it cancels near the end of long decays).  The tracemalloc peak of the 10^7
gradient is checked to be the output plus a constant, and the backends to agree bit for
bit at 10^7.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import cdfast
from cases import SCHEDULES

BACKENDS = cdfast.available_backends()
HORIZONS = [10**4, 10**5, 10**6, 10**7]


def _lr(T):
    return SCHEDULES["warmup_cosine"](T)


def _group(benchmark, T, label, baseline):
    benchmark.group = f"gradient T={T:.0e}"
    benchmark.extra_info.update(label=label, baseline=baseline if label != baseline else None)


def numpy_gradient(lr):
    """The gradient of eq. (2.4) with cumulative sums (what one writes without cdfast)."""
    P = np.cumsum(lr)
    gaps = P[-1] - P[:-1]  # cancels near the end of long decays
    w = lr[:-1] ** 2
    grad = np.empty_like(lr)
    adj = np.concatenate([[0.0], np.cumsum(w / gaps**2)])
    grad[:-1] = lr[:-1] / gaps - 0.5 * adj[:-1]
    grad[-1] = 0.5 - 0.5 * adj[-1]
    return 0.5 / P[-1] + 0.5 * (lr[-1] + np.sum(w / gaps)), grad - 0.5 / P[-1] ** 2


@pytest.mark.parametrize("T", HORIZONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_bound_pass(benchmark, T, backend):
    lr = _lr(T)
    cdfast.last_iterate_bound(lr, backend=backend)
    _group(benchmark, T, f"last_iterate_bound {backend}", None)
    benchmark(cdfast.last_iterate_bound, lr, 1.0, 1.0, 0.0, None, backend)


@pytest.mark.parametrize("T", HORIZONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient(benchmark, T, backend):
    lr = _lr(T)
    cdfast.bound_gradient(lr[:1000], backend=backend)  # compile outside the timing
    _group(benchmark, T, f"cdfast gradient {backend}", f"last_iterate_bound {backend}")
    value, grad = benchmark(cdfast.bound_gradient, lr, 1.0, 1.0, 0.0, None, backend)
    assert value == pytest.approx(cdfast.last_iterate_bound(lr, backend=backend), rel=1e-13)


@pytest.mark.parametrize("T", HORIZONS[:3])
def test_numpy_gradient(benchmark, T):
    lr = _lr(T)
    _group(benchmark, T, "numpy gradient (cumsum)", f"last_iterate_bound {BACKENDS[0]}")
    benchmark.pedantic(numpy_gradient, args=(lr,), rounds=5, iterations=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_is_the_output_plus_a_constant(backend):
    T = 10**7
    lr = _lr(T)
    cdfast.bound_gradient(lr[:1000], backend=backend)
    tracemalloc.start()
    cdfast.bound_gradient(lr, backend=backend)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    extra = peak - 8 * T
    print(f"\nbound_gradient {backend}, T = 1e7: tracemalloc peak {peak / 2**20:.2f} MiB "
          f"= output {8 * T / 2**20:.2f} MiB + {extra} bytes")
    assert extra < 64 * 1024


def test_backends_agree_at_1e7():
    if len(BACKENDS) < 2:
        pytest.skip("one backend only")
    lr = _lr(10**7)
    g = np.random.default_rng(0).uniform(0.5, 2.0, lr.shape[0])
    for grad_sq in (None, g):
        vn, gn = cdfast.bound_gradient(lr, grad_sq=grad_sq, backend="numba")
        vc, gc = cdfast.bound_gradient(lr, grad_sq=grad_sq, backend="c")
        assert vn == vc and np.array_equal(gn, gc)
