"""Optimal schedules: speed, an autodiff L-BFGS reference, and Defazio et al.'s refined schedule.

    python -m pytest bench/bench_optimize.py --benchmark-only -s

* ``optimal_schedule(T)`` at T = 10^4 and 10^6 (targets: about a second, under 30 s on two
  cores), next to one ``last_iterate_bound`` pass at the same T.
* At T = 1000, the same problems solved as one would with PyTorch: the bound written with
  tensors, its gradient by autograd, scipy's L-BFGS-B on the raw LRs (unconstrained, as in
  facebookresearch/adaptive_scheduling ``find_schedule``) and on log-decrements (monotone,
  as in its ``solve_bound``).  cdfast must match or beat both.  Skips without torch
  (``python -m pip install torch``).
* The refined schedule of Defazio et al. (closed form) against the exact optimum of eq.
  (2.4) for the same gradient norms, on synthetic profiles and on the logged gradient
  norms of a 124M-model run from shared/data (skipped when absent).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
from scipy import optimize as sopt

import cdfast
from cdfast import schedules as S
from cdfast.optimize import refined, stationary_schedule

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def _group(benchmark, name, label, baseline):
    benchmark.group = name
    benchmark.extra_info.update(label=label, baseline=baseline if label != baseline else None)


# ---------------------------------------------------------------------------
# Speed


@pytest.mark.parametrize("T", [10**4, 10**6])
def test_bound_pass(benchmark, T):
    lr = S.linear(T)
    cdfast.last_iterate_bound(lr)
    _group(benchmark, f"optimal_schedule T={T:.0e}", "last_iterate_bound", None)
    benchmark(cdfast.last_iterate_bound, lr)


@pytest.mark.parametrize("T", [10**4, 10**6])
def test_optimal_schedule(benchmark, T):
    cdfast.optimal_schedule(1000)  # compile outside the timing
    _group(benchmark, f"optimal_schedule T={T:.0e}", "cdfast optimal_schedule", "last_iterate_bound")
    res = benchmark.pedantic(cdfast.optimal_schedule, args=(T,), rounds=1 if T >= 10**6 else 3, iterations=1)
    print(f"\n{res.summary()}")
    for st in res.stages:
        print(f"  stage {st.name}: {st.variables} variables, {st.iterations} iterations, "
              f"{st.evaluations} evaluations, {st.seconds:.2f} s")
    assert res.converged and res.value <= min(res.baselines.values())


# ---------------------------------------------------------------------------
# Against autodiff L-BFGS (PyTorch)

T_AD = 1000


def _torch_bound(torch):
    def bound(eta):
        # eq. (2.4), single-sum form; gaps as suffix sums (flip, cumsum, flip)
        gaps = torch.flip(torch.cumsum(torch.flip(eta[1:], (0,)), 0), (0,))
        P = gaps[0] + eta[0]
        return 0.5 / P + 0.5 * (eta[-1] + torch.sum(eta[:-1] ** 2 / gaps))

    return bound


def autodiff_unconstrained(T):
    torch = pytest.importorskip("torch")
    bound = _torch_bound(torch)

    def f(x):
        eta = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        val = bound(eta)
        val.backward()
        return val.item(), eta.grad.numpy().copy()

    x0 = np.full(T, 1.0 / math.sqrt(T))
    res = sopt.minimize(f, x0, jac=True, method="L-BFGS-B", bounds=[(1e-8, None)] * T,
                        options=dict(maxiter=100_000, maxfun=100_000, maxcor=20, ftol=100 * np.finfo(float).eps,
                                     gtol=1e-10, maxls=100))
    return res.fun, res


def autodiff_monotone(T):
    torch = pytest.importorskip("torch")
    bound = _torch_bound(torch)

    def lr_of(x):  # eta_t = x_0 prod_{k<=t} exp(-x_k), x_k >= 0: non-increasing
        inc = torch.cat([torch.zeros(1, dtype=torch.float64), x[1:]])
        return x[0] * torch.exp(-torch.cumsum(inc, 0))

    def f(x):
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        val = bound(lr_of(xt))
        val.backward()
        return val.item(), xt.grad.numpy().copy()

    lin = S.linear(T) / math.sqrt(T)
    x0 = np.concatenate([[lin[0]], -np.diff(np.log(lin))])
    res = sopt.minimize(f, x0, jac=True, method="L-BFGS-B", bounds=[(1e-12, None)] + [(0.0, 10.0)] * (T - 1),
                        options=dict(maxiter=100_000, maxfun=100_000, maxcor=20, ftol=10 * np.finfo(float).eps,
                                     gtol=1e-10, maxls=100))
    return res.fun, res


@pytest.mark.parametrize("monotone", [False, True], ids=["unconstrained", "monotone"])
def test_autodiff_lbfgs(benchmark, monotone):
    pytest.importorskip("torch")
    name = f"vs autodiff T={T_AD} {'monotone' if monotone else 'unconstrained'}"
    _group(benchmark, name, "torch autodiff L-BFGS-B", "cdfast optimal_schedule")
    solver = autodiff_monotone if monotone else autodiff_unconstrained
    ref, res = benchmark.pedantic(solver, args=(T_AD,), rounds=1, iterations=1)
    ours = cdfast.optimal_schedule(T_AD, monotone=monotone)
    print(f"\n{name}: cdfast {ours.value:.15g} ({ours.iterations} iterations), torch L-BFGS-B {ref:.15g} "
          f"({res.nit} iterations, {res.message}); cdfast - torch = {ours.value - ref:.3e}")
    assert ours.value <= ref * (1 + 1e-12)


@pytest.mark.parametrize("monotone", [False, True], ids=["unconstrained", "monotone"])
def test_cdfast_at_autodiff_horizon(benchmark, monotone):
    pytest.importorskip("torch")
    cdfast.optimal_schedule(100, monotone=monotone)
    name = f"vs autodiff T={T_AD} {'monotone' if monotone else 'unconstrained'}"
    _group(benchmark, name, "cdfast optimal_schedule", None)
    benchmark.pedantic(cdfast.optimal_schedule, args=(T_AD,), kwargs=dict(monotone=monotone), rounds=3, iterations=1)


# ---------------------------------------------------------------------------
# Defazio et al.'s refined schedule vs the exact optimum of eq. (2.4)


def _profiles():
    T = 20_000
    t = np.arange(T) / T
    out = {
        "constant": np.ones(T),
        "growing x4": np.linspace(1.0, 4.0, T),
        "shrinking /4": np.linspace(4.0, 1.0, T),
        "early spike": 1.0 + 8.0 * np.exp(-t / 0.02),
    }
    runs = sorted((DATA / "lr-scheduling" / "grad_norm").glob("stable-124m*lr0.001_*.json"))
    if runs:
        try:
            log = cdfast.io.read_log(runs[0])
            out["124M stable run (logged)"] = np.asarray(log.grad_sq(), dtype=np.float64)
        except (AttributeError, ValueError, TypeError) as exc:  # the reader may not know grad norms
            print(f"(real gradient norms skipped: {exc})")
    return out


def _describe(lr):
    s = lr / lr.max()
    return f"argmax {int(np.argmax(lr)) / len(lr):.3f}T, half at {int(np.argmax((s < 0.5) & (np.arange(len(s)) > np.argmax(s)))) / len(s):.3f}T, last/peak {s[-1]:.2e}"


def compare_refined():
    rows = []
    for name, gsq in _profiles().items():
        T = gsq.shape[0]
        ref = refined(np.sqrt(gsq))
        _, b_ref = cdfast.optimal_peak_lr(ref, grad_sq=gsq)
        exact = stationary_schedule(T, grad_sq=gsq)
        b_exact = cdfast.last_iterate_bound(exact, grad_sq=gsq)
        mono = cdfast.optimal_schedule(T, grad_sq=gsq)
        _, b_lin = cdfast.optimal_peak_lr(S.linear(T), grad_sq=gsq)
        rows.append((name, T, b_exact, mono.value, b_ref, b_lin, _describe(exact), _describe(ref), _describe(mono.lr)))
    return rows


def test_refined_vs_exact(benchmark):
    _group(benchmark, "refined vs exact", "refined + exact + monotone", None)
    rows = benchmark.pedantic(compare_refined, rounds=1, iterations=1)
    print("\nbound at the best peak LR, relative to the exact optimum of eq. (2.4) (same grad_sq):")
    print(f"{'profile':<26} {'T':>6} {'exact':>12} {'monotone':>10} {'Defazio':>10} {'linear':>10}")
    for name, T, b_exact, b_mono, b_ref, b_lin, d_exact, d_ref, d_mono in rows:
        print(f"{name:<26} {T:>6} {b_exact:12.6g} {b_mono / b_exact - 1:+10.2e} {b_ref / b_exact - 1:+10.2e} "
              f"{b_lin / b_exact - 1:+10.2e}")
        print(f"{'':<26} exact: {d_exact}\n{'':<26} Defazio: {d_ref}\n{'':<26} monotone: {d_mono}")
        assert b_exact <= b_mono * (1 + 1e-12) and b_exact <= b_ref and b_mono <= b_lin * (1 + 1e-12)


# ---------------------------------------------------------------------------
# Planning a run from its log (cdfast plan): fit, three peak-LR searches, the model-optimal
# schedule, intervals; the optimiser's share of the time, and the fit alone as the baseline


def test_plan_fit_only(benchmark):
    from cdfast.data import SAMPLE_RUN

    lr, steps, loss = cdfast.io.read_log(SAMPLE_RUN).curve()
    _group(benchmark, "plan sample run T=2.5e4", "fit_loss_curve", None)
    benchmark.pedantic(cdfast.fit_loss_curve, args=(lr, steps, loss), rounds=3, iterations=1)


def test_plan_sample_run(benchmark):
    from cdfast.data import SAMPLE_RUN

    _group(benchmark, "plan sample run T=2.5e4", "cdfast plan_schedule", "fit_loss_curve")
    plan = benchmark.pedantic(cdfast.plan_schedule, args=(SAMPLE_RUN, 25_000), kwargs=dict(n_boot=100), rounds=1,
                              iterations=1)
    print(f"\n{plan.summary()}\nplan_schedule {plan.seconds:.1f} s, of which the optimiser {plan.result.seconds:.1f} s "
          f"({plan.result.evaluations} evaluations of the model's value and gradient)")
    assert plan.optimal.loss <= min(f.loss for f in plan.families) * (1 + 1e-12)
