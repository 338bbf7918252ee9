"""Speed of the loss-model fits: three 25k-step runs of one setup, every model.

    python -m pytest bench/bench_fit.py --benchmark-only

The runs are a constant-LR, a cosine and a WSD run (peak LR 1e-3, warmup 300, a loss
logged every 200 steps, as in the validation runs) whose losses come from a fitted
power-bound curve plus 0.1% noise, so that every model fits real-looking data.  The
baseline is the paper's three-constant form (``model="bound"``); the ratios are within
one run (the machine is shared).  Targets: a single model under 50 ms, the two-member
default under 3x that (150 ms), MPL well under a second.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import cdfast
from cdfast import schedules
from cdfast.models import get_model, names

T = 25_000
PEAK = 1e-3


def _runs():
    lrs = [PEAK * schedules.constant(T, warmup=300), PEAK * schedules.cosine(T, warmup=300),
           PEAK * schedules.wsd(T, decay_frac=0.2, warmup=300)]
    steps = np.arange(200, T + 1, 200)
    truth = get_model("power-bound")
    rng = np.random.default_rng(0)
    losses = []
    for lr in lrs:
        y = truth.basis(np.array([0.45, 0.75]), truth.prepare(lr, steps)) @ np.array([2.6, 3.0, 8.0])
        losses.append(y * (1 + 1e-3 * rng.standard_normal(y.size)))
    return lrs, [steps] * 3, losses


RUNS = _runs()


@pytest.mark.parametrize("model", list(names()))
def test_fit_three_runs(benchmark, model):
    benchmark.group = "fit: three 25k-step runs"
    benchmark.extra_info.update(label=f"cdfast {model}", baseline=None if model == "bound" else "cdfast bound")

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cdfast.FitWarning)
            return cdfast.fit_loss_curves(*RUNS, model=model)

    rounds = 2 if model == "mpl" else 5
    result = benchmark.pedantic(fit, rounds=rounds, iterations=1, warmup_rounds=1)
    assert np.isfinite(result.prediction).all()
