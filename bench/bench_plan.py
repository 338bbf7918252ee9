"""Planning a run: ``cdfast plan`` end to end and the multilevel optimiser at long horizons.

    python -m pytest bench/bench_plan.py --benchmark-only -s

* ``cdfast plan LOG --steps 50000`` on the packaged run, end to end in a fresh process
  (the second call: Numba's cache and the OS's file cache warm), next to one evaluation
  of the fitted model at the same T (target: under 5 s on two cores);
* ``optimal_schedule(10**6, model=fit)`` with the default model fitted to the packaged
  run, as the API default (free peak, no step limit) and as ``plan`` calls it (the run's
  trust region and the 1% step limit) (target: under 30 s);
* the optimum of the multilevel method against every-LR TNC (the method before it) on
  the same problem, side by side (``CDFAST_BENCH_OLD_T``, default 5000: TNC takes
  minutes at 5e4);
* peak memory of ``optimal_schedule`` at 10^6 (tracemalloc): a few arrays of T doubles.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import cdfast
from cdfast.data import SAMPLE_RUN

ROOT = pathlib.Path(__file__).resolve().parents[1]
T_CLI = 50_000
T_LONG = 10**6


@pytest.fixture(scope="module")
def fitted():
    from cdfast.plan import _source, _warmup_of

    fit, log = _source(SAMPLE_RUN, None, None)
    return fit, _warmup_of(log.lr), float(log.lr.max())


def _group(benchmark, name, label, baseline):
    benchmark.group = name
    benchmark.extra_info.update(label=label, baseline=baseline if label != baseline else None)


def test_one_evaluation(benchmark, fitted):
    fit, W, _ = fitted
    lr = 0.002 * np.concatenate([np.arange(W) / W, cdfast.schedules.cosine(T_CLI - W)])
    _group(benchmark, f"plan T={T_CLI:.0e}", "one model evaluation", None)
    benchmark(fit.value_and_grad, lr)


def test_plan_cli_second_call(benchmark, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "cdfast", "plan", str(SAMPLE_RUN), "--steps", str(T_CLI), "--quiet",
            "--out", str(tmp_path / "plan.csv")]
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=900)  # the first call

    def second():
        return subprocess.run(argv, env=env, check=True, capture_output=True, text=True, timeout=900)

    _group(benchmark, f"plan T={T_CLI:.0e}", "cdfast plan (CLI, second call)", "one model evaluation")
    out = benchmark.pedantic(second, rounds=1, iterations=1)
    print("\n" + out.stdout)
    lr = cdfast.io.read_lr_file(str(tmp_path / "plan.csv"))
    assert lr.shape == (T_CLI,) and np.max(np.abs(np.diff(lr))) <= 0.01 * lr.max() * (1 + 1e-12)


@pytest.mark.parametrize("how", ["api default", "as plan calls it"])
def test_optimal_schedule_at_a_million_steps(benchmark, fitted, how):
    fit, W, peak = fitted
    kw = {} if how == "api default" else dict(max_step=0.01, peak_range=(0.8 * peak, 1.25 * peak))
    _group(benchmark, f"optimal_schedule T={T_LONG:.0e} ({how})", "cdfast multilevel", None)
    res = benchmark.pedantic(lambda: cdfast.optimal_schedule(T_LONG, model=fit, warmup=W, **kw), rounds=1,
                             iterations=1)
    print(f"\n{res.summary()}")
    for st in res.stages:
        print(f"  stage {st.name}: {st.iterations} iterations, {st.evaluations} evaluations, {st.seconds:.2f} s, "
              f"objective {st.objective:.10g}")
    print(f"  predicted final loss {res.value:.10g}; best of linear, cosine, WSD at their best peak "
          f"{min(res.baselines.values()):.10g}")
    assert res.value <= min(res.baselines.values())


def test_old_and_new_optimum_side_by_side(fitted):
    """Every-LR TNC (the method before the multilevel one) and the multilevel method, same problem."""
    fit, W, _ = fitted
    T = int(os.environ.get("CDFAST_BENCH_OLD_T", "5000"))
    t0 = time.perf_counter()
    old = cdfast.optimal_schedule(T, model=fit, warmup=W, method="TNC")
    t_old = time.perf_counter() - t0
    t0 = time.perf_counter()
    new = cdfast.optimal_schedule(T, model=fit, warmup=W)
    t_new = time.perf_counter() - t0
    print(f"\nT = {T}: TNC (every LR) {old.value!r} in {t_old:.1f} s; multilevel {new.value!r} in {t_new:.1f} s; "
          f"difference {new.value - old.value:+.3g} ({(new.value - old.value) / old.value:+.2e} relative), "
          f"time ratio {t_old / t_new:.1f}x")
    assert new.value <= old.value * (1 + 1e-8)


def test_peak_memory_at_a_million_steps(fitted):
    fit, W, peak = fitted
    cdfast.optimal_schedule(10_000, model=fit, warmup=W)  # imports and compiled kernels outside the measurement
    tracemalloc.start()
    cdfast.optimal_schedule(T_LONG, model=fit, warmup=W, max_step=0.01, peak_range=(0.8 * peak, 1.25 * peak))
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    arrays = top / (8.0 * T_LONG)
    print(f"\npeak traced memory at T = {T_LONG}: {top / 2**20:.1f} MiB = {arrays:.1f} arrays of T doubles")
    assert arrays < 64  # O(T): a few dozen arrays at most, nothing T x T
