"""Speed of the multi-power law's basis, fast O(T M) sum vs the literal O(T^2) one.

    python -m pytest bench/bench_peer_models.py --benchmark-only

Groups are horizons T (cosine with warmup, peak 3e-4, the parameters of the MPL
paper's fits).  ``cdfast mpl`` evaluates all three columns of
``MultiPowerLaw.basis`` at 1000 logged steps; its cost hardly depends on how many steps
are asked for.  The literal loss-drop sum (tests/test_peer_models.py) costs
O(steps x T): it runs at the same 1000 steps, and at every step (the full O(T^2)) where
that takes less than about a minute.  Ratios are to ``cdfast mpl`` in the same run.
The benchmarks also check the fast sum against the literal one within the stated bound.
"""

from __future__ import annotations

import numpy as np
import pytest

from cdfast import schedules as S
from cdfast.models.mpl import MultiPowerLaw
from test_peer_models import mpl_drop_literal, stated_bound

HORIZONS = [10**4, 5 * 10**4, 2 * 10**5]
THETA = np.array([0.45, 0.6, 0.65, 2.0])  # alpha, beta, gamma, C
BASE = "cdfast mpl"


def _run(T):
    lr = 3e-4 * S.cosine(T, final=0.1, warmup=T // 100)
    return lr, np.unique(np.linspace(2, T, 1000).astype(np.int64))


def _bench(benchmark, T, label, fn, *args, rounds=None):
    benchmark.group = f"mpl basis T={T:.0e}"
    benchmark.extra_info.update(label=label, baseline=BASE if label != BASE else None)
    if rounds:
        return benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=0)
    return benchmark(fn, *args)


@pytest.mark.parametrize("T", HORIZONS)
def test_mpl_fast(benchmark, T):
    lr, steps = _run(T)
    model = MultiPowerLaw()
    prep = model.prepare(lr, steps)
    model.basis(THETA, prep)  # compile outside the timing
    _bench(benchmark, T, BASE, model.basis, THETA, prep)


@pytest.mark.parametrize("T", HORIZONS)
def test_literal_logged_steps(benchmark, T):
    lr, steps = _run(T)
    K = MultiPowerLaw().prepare(lr, steps).K
    _bench(benchmark, T, "literal, 1000 steps", mpl_drop_literal, lr, K, steps, *THETA[1:], rounds=2)


@pytest.mark.parametrize("T", HORIZONS[:2])
def test_literal_every_step(benchmark, T):
    lr, _ = _run(T)
    steps = np.arange(2, T + 1)
    K = MultiPowerLaw().prepare(lr, steps).K
    _bench(benchmark, T, "literal O(T^2), every step", mpl_drop_literal, lr, K, steps, *THETA[1:], rounds=1)


@pytest.mark.parametrize("T", HORIZONS)
def test_fast_agrees_with_literal(T):
    lr, steps = _run(T)
    model = MultiPowerLaw()
    prep = model.prepare(lr, steps)
    pos, neg = model.drop_parts(THETA, prep)
    ref, mag = mpl_drop_literal(lr, prep.K, steps, *THETA[1:])
    assert np.all(np.abs((pos - neg) - ref) <= stated_bound(model, THETA, prep, steps, mag))
