"""Optimal schedules: against an independent constrained solver, the standard schedules, the
constraints asked for, the model protocol, Defazio et al.'s closed form, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize as sopt

import cdfast
from cdfast import schedules as S
from cdfast.optimize import refined, stationary_schedule
from naive import last_iterate_naive


def slsqp_optimum(T, monotone, D=1.0, G=1.0, grad_sq=None):
    """The same problem solved by SLSQP on the raw LRs with explicit linear constraints."""
    def f(x):
        x = np.maximum(x, 1e-12)
        return cdfast.bound_gradient(x, D, G, grad_sq=grad_sq)

    cons = []
    if monotone:
        A = np.eye(T)[:-1] - np.eye(T, k=1)[:-1]
        cons = [dict(type="ineq", fun=lambda x: A @ x, jac=lambda x: A)]
    eta, _ = cdfast.optimal_peak_lr(S.linear(T), D, G, grad_sq)
    res = sopt.minimize(f, eta * S.linear(T), jac=True, method="SLSQP", constraints=cons,
                        bounds=[(1e-12, None)] * T, options=dict(maxiter=5000, ftol=1e-16))
    assert res.success, res.message
    return res.fun, res.x


@pytest.mark.parametrize("T", [2, 3, 10, 40])
@pytest.mark.parametrize("monotone", [True, False])
def test_matches_an_independent_constrained_solver(T, monotone):
    g = np.linspace(1.0, 3.0, T)
    for grad_sq in (None, g):
        ref, _ = slsqp_optimum(T, monotone, 1.5, 0.7, grad_sq)
        res = cdfast.optimal_schedule(T, D=1.5, G=0.7, grad_sq=grad_sq, monotone=monotone)
        assert res.value == pytest.approx(ref, rel=1e-11)
        assert res.value <= ref * (1 + 1e-13)
        assert res.bound == pytest.approx(last_iterate_naive(res.lr, 1.5, 0.7, 0.0, grad_sq), rel=1e-12)


def test_stationary_schedule_is_a_stationary_point():
    for grad_sq in (None, np.random.default_rng(0).uniform(0.5, 2.0, 3000)):
        lr = stationary_schedule(3000, D=2.0, G=0.5, grad_sq=grad_sq)
        assert (lr > 0).all()
        # each gradient entry vanishes relative to the size of its parts (-D^2/(2P^2) is one of them)
        _, grad = cdfast.bound_gradient(lr, 2.0, 0.5, grad_sq=grad_sq)
        d_part = 4.0 / (2 * lr.sum() ** 2)
        assert np.max(np.abs(grad)) <= 1e-9 * d_part
        ref, _ = slsqp_optimum(30, False, 2.0, 0.5, None if grad_sq is None else grad_sq[:30])
        short = stationary_schedule(30, D=2.0, G=0.5, grad_sq=None if grad_sq is None else grad_sq[:30])
        assert cdfast.last_iterate_bound(short, 2.0, 0.5, grad_sq=None if grad_sq is None else grad_sq[:30]) == pytest.approx(ref, rel=1e-12)


def test_constant_g_optimum_is_near_linear_and_ends_with_a_jump():
    lr = stationary_schedule(10_000)
    assert lr[-1] / lr[-2] == pytest.approx(2.41, abs=0.01)  # not monotone at the very end
    s = lr / lr[0]
    assert np.max(np.abs(s[:-1] - S.linear(10_000)[:-1])) < 1e-3


@pytest.mark.parametrize("kwargs", [
    {}, {"warmup": 50}, {"final_lr": 0.004}, {"peak_lr": 0.05}, {"peak_lr": 0.06, "final_lr": 0.003, "warmup": 20},
    {"grad_sq": np.linspace(1.0, 4.0, 1000)},
], ids=["default", "warmup", "floor", "fixed peak", "all", "grad_sq"])
def test_never_worse_than_linear_cosine_wsd_and_keeps_the_constraints(kwargs):
    T = 1000
    res = cdfast.optimal_schedule(T, **kwargs)
    W = kwargs.get("warmup", 0)
    floor = kwargs.get("final_lr", 0.0)
    peak = kwargs.get("peak_lr")
    grad_sq = kwargs.get("grad_sq")
    lr = np.asarray(res)
    assert lr.shape == (T,) and np.array_equal(lr, res.lr)
    # the constraints
    assert np.all(np.diff(lr[W:]) <= 0)
    assert np.all(lr[W:] >= floor) and lr[-1] > 0
    assert np.allclose(lr[:W], lr[W] * np.arange(W) / max(W, 1), rtol=1e-15, atol=0)
    if peak is not None:
        assert lr[W] == pytest.approx(peak, rel=1e-14)
    # the standard schedules under the same constraints, each at its best peak (built here)
    for decay in (S.linear(T - W), S.cosine(T - W), S.wsd(T - W, decay_frac=0.2)):
        def lrs(p):
            d = floor + (p - floor) * decay
            return np.concatenate([d[0] * np.arange(W) / max(W, 1), d])
        if peak is not None:
            best = cdfast.last_iterate_bound(lrs(peak), grad_sq=grad_sq)
        else:
            r = sopt.minimize_scalar(lambda lp: cdfast.last_iterate_bound(lrs(np.exp(lp)), grad_sq=grad_sq),
                                     bounds=(np.log(1e-4), np.log(1.0)), method="bounded", options=dict(xatol=1e-12))
            best = r.fun
        assert res.value <= best * (1 + 1e-12)
    assert res.value == pytest.approx(cdfast.last_iterate_bound(lr, grad_sq=grad_sq), rel=1e-13)
    assert res.converged and res.iterations > 0 and np.isfinite(res.grad_norm)


def test_monotone_false_allows_increases():
    res = cdfast.optimal_schedule(500, monotone=False)
    assert np.any(np.diff(res.lr) > 0)  # the final jump
    assert res.value <= cdfast.optimal_schedule(500).value


def test_growing_gradient_norms_decay_earlier():
    T = 2000
    const = cdfast.optimal_schedule(T).shape
    grow = cdfast.optimal_schedule(T, grad_sq=np.linspace(1.0, 9.0, T)).shape
    assert np.argmax(grow < 0.5) < np.argmax(const < 0.5) - 100
    assert np.all(grow[: T // 2] <= const[: T // 2] + 1e-12)


class BoundModel:
    """A stand-in loss model: eq. (2.4) with its own constants, through the protocol."""

    def __init__(self, D, G, L):
        self.D, self.G, self.L, self.calls = D, G, L, 0

    def value_and_grad(self, lr):
        self.calls += 1
        return cdfast.bound_gradient(lr, self.D, self.G, self.L)


# every LR a variable (TNC): the same optimum to the last digits; the multilevel method (the default with a
# model) optimises a knot family, which at T = 800 reaches a knot per step, to its stopping tolerance
@pytest.mark.parametrize("method, rel", [("TNC", 1e-11), (None, 1e-9)], ids=["TNC", "multilevel"])
@pytest.mark.parametrize("kwargs", [{}, {"warmup": 30}, {"peak_lr": 0.05}], ids=["free", "warmup", "fixed peak"])
def test_a_model_is_optimised_through_its_protocol(kwargs, method, rel):
    model = BoundModel(2.0, 0.5, 3.0)
    res = cdfast.optimal_schedule(800, model=model, method=method, **kwargs)
    ref = cdfast.optimal_schedule(800, D=2.0, G=0.5, L_star=3.0, **kwargs)
    assert model.calls > 0 and res.objective == "model"
    assert res.value == pytest.approx(ref.value, rel=rel)
    assert res.value >= ref.value * (1 - 1e-13)  # never below the exact optimum: a check of the gradient
    assert res.peak_lr == pytest.approx(ref.peak_lr, rel=1e-3)


def test_a_model_with_a_bad_gradient_is_reported():
    class Bad:
        def value_and_grad(self, lr):
            return 1.0, np.zeros(3)

    with pytest.raises(ValueError, match="shape"):
        cdfast.optimal_schedule(100, model=Bad())


@pytest.mark.parametrize("kwargs, exc, fragment", [
    (dict(T=1), ValueError, "T = 1 must be >= 2"),
    (dict(T=2.5), TypeError, "T must be an integer"),
    (dict(T=100, warmup=100), ValueError, "warmup = 100 must be < T = 100"),
    (dict(T=100, warmup=-1), ValueError, "warmup = -1"),
    (dict(T=100, peak_lr=0.01, final_lr=0.02), ValueError, "final_lr = 0.02 is above peak_lr = 0.01"),
    (dict(T=100, peak_lr=0.0), ValueError, "peak_lr = 0 must be > 0"),
    (dict(T=100, peak_lr=-1.0), ValueError, "peak_lr = -1.0 is negative"),
    (dict(T=100, final_lr=-1.0), ValueError, "final_lr = -1.0 is negative"),
    (dict(T=100, grad_sq=np.ones(99)), ValueError, "grad_sq has 99 entries but lr has 100"),
    (dict(T=3, grad_sq=[1.0, 0.0, 1.0]), ValueError, r"grad_sq\[1\] is 0"),
    (dict(T=3, grad_sq=[1.0, -1.0, 1.0]), ValueError, r"grad_sq\[1\] = -1.0 is negative"),
    (dict(T=3, grad_sq=[1.0, np.nan, 1.0]), ValueError, r"grad_sq\[1\] is nan"),
    (dict(T=100, D=0.0), ValueError, "D = 0 must be > 0"),
    (dict(T=100, model=object()), TypeError, "model must have a method value_and_grad"),
])
def test_bad_input_names_the_argument(kwargs, exc, fragment):
    T = kwargs.pop("T")
    with pytest.raises(exc, match=fragment):
        cdfast.optimal_schedule(T, **kwargs)


def test_floor_equal_to_the_peak_is_the_constant_schedule():
    res = cdfast.optimal_schedule(50, peak_lr=0.01, final_lr=0.01, warmup=5)
    assert np.all(res.lr[5:] == 0.01)


# ---------------------------------------------------------------------------
# Defazio et al.'s refined schedule


def test_refined_with_constant_norms_is_linear_decay():
    T = 1000
    assert np.allclose(cdfast.schedules.refined(np.full(T, 3.0)), S.linear(T), rtol=1e-13, atol=0)
    zero = refined(np.full(T, 3.0), last="zero")
    assert zero[-1] == 0.0 and np.allclose(zero[:-1], np.arange(T - 1, 0, -1) / (T - 1), rtol=1e-13)


def test_refined_follows_the_closed_form():
    g = np.random.default_rng(3).uniform(0.5, 2.0, 40)
    w = np.array([g[t] ** -2 * sum(g[p] ** -2 for p in range(t + 1, 40)) for t in range(40)])
    assert np.allclose(refined(g, last="zero", peak_lr=2.0), 2.0 * w / w.max(), rtol=1e-13, atol=0)


def test_refined_smoothing_removes_a_spike():
    g = np.ones(1000)
    g[500] = 100.0
    assert refined(g, smoothing=0.01)[500] == pytest.approx(refined(np.ones(1000))[500], rel=1e-12)


def test_the_exact_optimum_is_at_least_as_good_as_refined():
    T = 2000
    norms = np.sqrt(np.linspace(1.0, 4.0, T))
    gsq = norms**2
    _, ref_bound = cdfast.optimal_peak_lr(refined(norms), grad_sq=gsq)
    exact = cdfast.optimal_schedule(T, grad_sq=gsq, monotone=False)
    assert exact.value <= ref_bound
    assert exact.value == pytest.approx(cdfast.last_iterate_bound(stationary_schedule(T, grad_sq=gsq), grad_sq=gsq), rel=1e-12)


def test_refined_bad_input():
    with pytest.raises(ValueError, match=r"grad_norms\[1\] is 0"):
        refined([1.0, 0.0])
    with pytest.raises(ValueError, match="smoothing"):
        refined([1.0, 2.0], smoothing=1.5)
    with pytest.raises(ValueError, match="last"):
        refined([1.0, 2.0], last="nope")


@pytest.mark.parametrize("name", ["gradient", "optimize"])
def test_docstring_examples(name):
    import doctest
    import importlib

    module = importlib.import_module(f"cdfast.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0 and result.attempted > 0


# ---------------------------------------------------------------------------
# The multilevel method: one-step limit, trust region, from a checkpoint


def test_multilevel_keeps_the_one_step_limit_and_the_peak_range():
    model = BoundModel(2.0, 0.5, 3.0)
    free = cdfast.optimal_schedule(3000, model=model, warmup=50)
    lo, hi = 0.5 * free.peak_lr, 0.8 * free.peak_lr
    res = cdfast.optimal_schedule(3000, model=model, warmup=50, max_step=0.002, peak_range=(lo, hi))
    assert res.stages and res.stages[-1].name.startswith("T=3000 ")
    assert lo <= res.peak_lr <= hi * (1 + 1e-12) and res.peak_lr == res.lr.max()
    assert np.max(np.abs(np.diff(res.lr[50:]))) <= 0.002 * res.peak_lr * (1 + 1e-12)  # after the ramp
    assert res.lr[:50] == pytest.approx(res.peak_lr * np.arange(50) / 50, rel=1e-15, abs=0)
    assert (np.diff(res.lr[50:]) <= 0).all()
    assert res.value >= free.value and res.value <= min(res.baselines.values()) * (1 + 1e-12)


def test_multilevel_from_a_prefix_keeps_it_bit_for_bit():
    model = BoundModel(2.0, 0.5, 3.0)
    prefix = 0.01 * np.concatenate([np.arange(20) / 20, np.ones(480)]) + 1e-19  # not representable by any map
    res = cdfast.optimal_schedule(1200, model=model, prefix=prefix, max_step=0.01)
    assert np.array_equal(res.lr[:500], prefix)
    assert (np.diff(res.lr[499:]) <= 0).all()
    assert np.max(np.abs(np.diff(res.lr[499:]))) <= 0.01 * prefix[-1] * (1 + 1e-12)
    held = np.concatenate([prefix, np.full(700, prefix[-1])])
    assert res.value < model.value_and_grad(held)[0]


@pytest.mark.parametrize("kwargs, exc, fragment", [
    (dict(max_step=0.0), ValueError, "max_step = 0.0 must lie in"),
    (dict(max_step=0.01, monotone=False), ValueError, "max_step, peak_range and prefix need method='multilevel'"),
    (dict(max_step=0.01, method="TNC"), ValueError, "need method='multilevel'"),
    (dict(peak_range=(0.2, 0.1)), ValueError, "peak_range = .* must be two finite LRs"),
    (dict(peak_range=(0.1, 0.2), peak_lr=0.1), ValueError, "give one of them"),
    (dict(prefix=np.ones(100)), ValueError, "prefix has 100 LRs; it must have 1 to T - 1 = 99"),
    (dict(prefix=np.ones(10), warmup=5), ValueError, "give warmup=0 and no peak_lr"),
    (dict(prefix=[1.0, np.nan]), ValueError, r"prefix\[1\] is nan"),
    (dict(method="multilevel", monotone=False), ValueError, "use method='TNC' for monotone=False"),
])
def test_multilevel_bad_input(kwargs, exc, fragment):
    with pytest.raises(exc, match=fragment):
        cdfast.optimal_schedule(100, **kwargs)
