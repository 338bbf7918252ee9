"""Schedules: the paper's convention, no cancellation near the end, clear errors."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from cdfast import schedules as S

ULPS = 4  # every element within a few ulp of the exact value


def exact(name, T, t, **p):
    """s_t(T) in 40-digit arithmetic, straight from MATH.md section 1 (no rewriting)."""
    with mpmath.workdps(40):
        t, T = mpmath.mpf(t), mpmath.mpf(T)
        if name == "linear":
            return 1 - t / T
        if name == "inverse_sqrt":
            return 1 / mpmath.sqrt(t + 1)
        if name == "cosine":
            f = mpmath.mpf(p.get("final", 0.0))
            return f + (1 - f) * (1 + mpmath.cos(mpmath.pi * t / T)) / 2
        if name == "wsd":
            frac = mpmath.mpf(p["decay_frac"])
            c = 1 - frac
            if t < c * T:
                return mpmath.mpf(1)
            u = (T - t) / (T - c * T)
            return {"linear": u, "sqrt": 1 - mpmath.sqrt(1 - u), "cosine": (1 - mpmath.cos(mpmath.pi * u)) / 2}[p["decay"]]
        raise AssertionError(name)


def ulp_error(got, want):
    with mpmath.workdps(40):
        return float(abs(mpmath.mpf(float(got)) - want) / (mpmath.mpf(math.ulp(float(got))) if got else 1))


CASES = [("linear", {}), ("inverse_sqrt", {}), ("cosine", {}), ("cosine", {"final": 0.1}),
         ("wsd", {"decay_frac": 0.2, "decay": "linear"}), ("wsd", {"decay_frac": 0.25, "decay": "sqrt"}),
         ("wsd", {"decay_frac": 0.5, "decay": "cosine"})]


@pytest.mark.parametrize("name,params", CASES, ids=lambda c: str(c))
@pytest.mark.parametrize("T", [1, 7, 1000, 10**6])
def test_elements_within_a_few_ulp(name, params, T):
    s = S.make(name, T, **params)
    assert s.shape == (T,) and s.dtype == np.float64
    # the first, a middle and the last 40 steps (where cancellation would bite)
    for t in sorted({0, T // 2, *range(max(0, T - 40), T)}):
        assert ulp_error(s[t], exact(name, T, t, **params)) <= ULPS, (name, T, t)


def test_paper_values():
    assert S.linear(4).tolist() == [1.0, 0.75, 0.5, 0.25]
    assert S.constant(3).tolist() == [1.0, 1.0, 1.0]
    assert S.wsd(10, decay_frac=0.2).tolist() == [1.0] * 8 + [1.0, 0.5]
    assert S.piecewise_constant(6, [2, 4], [1.0, 0.5, 0.25]).tolist() == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert np.all(np.diff(S.cosine(100)) < 0) and S.cosine(100)[-1] > 0


def test_warmup_ramps_then_keeps_the_horizon():
    s = S.cosine(100, warmup=10)
    base = S.cosine(100)
    assert s.shape == (100,)
    np.testing.assert_array_equal(s[10:], base[10:])
    np.testing.assert_allclose(s[:10], base[:10] * np.arange(10) / 10)
    r = S.with_warmup(S.constant(300), 300, init=0.01)
    assert r[50] == pytest.approx(0.01 + 0.99 * 50 / 300)


@pytest.mark.parametrize(
    "call,exc,fragment",
    [
        (lambda: S.linear(0), ValueError, "T = 0 must be >= 1"),
        (lambda: S.linear(2.5), TypeError, "positive integer"),
        (lambda: S.linear("10"), TypeError, "positive integer"),
        (lambda: S.cosine(10, final=1.5), ValueError, "final = 1.5 must lie in [0.0, 1.0]"),
        (lambda: S.wsd(10, decay_frac=0.0), ValueError, "decay_frac = 0.0 must lie in (0.0, 1.0]"),
        (lambda: S.wsd(10, decay="exp"), ValueError, "decay = 'exp' is not one of"),
        (lambda: S.linear(10, warmup=11), ValueError, "warmup = 11 exceeds"),
        (lambda: S.linear(10, warmup=-1), ValueError, "warmup = -1"),
        (lambda: S.piecewise_constant(10, [5], [1.0]), ValueError, "len(values) == len(boundaries) + 1"),
        (lambda: S.piecewise_constant(10, [5, 3], [1, 0.5, 0.2]), ValueError, "strictly increasing"),
        (lambda: S.piecewise_constant(10, [5], [1, 2]), ValueError, "must lie in [0, 1]"),
        (lambda: S.make("step", 10), ValueError, "unknown schedule 'step'"),
        (lambda: S.make("linear", 10, floor=0.1), TypeError, "schedule 'linear'"),  # its floor is final=
        (lambda: S.continuous("inverse_sqrt"), ValueError, "no horizon-free"),
        (lambda: S.continuous("linear", floor=0.1), TypeError, "takes no parameter(s) ['floor']"),
    ],
)
def test_bad_parameters(call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value)


@pytest.mark.parametrize("name,params", [("linear", {}), ("cosine", {"final": 0.1}), ("constant", {}),
                                         ("wsd", {"decay_frac": 0.3, "decay": "sqrt"})])
def test_continuous_limit_matches_discrete(name, params):
    T = 10_000
    s = S.make(name, T, **params)
    x = np.arange(T) / T
    np.testing.assert_allclose(S.continuous(name, **params)(x), s, rtol=1e-12, atol=1e-12)


def test_family_is_a_callable_of_T():
    f = S.family("wsd", decay_frac=0.5)
    np.testing.assert_array_equal(f(20), S.wsd(20, decay_frac=0.5))
    with pytest.raises(ValueError):
        S.family("nope")
    np.testing.assert_array_equal(S.family("cosine", warmup=50)(1000), S.cosine(1000, warmup=50))


# ---------------------------------------------------------------------------
# The families users ask for, each against its formula at a few points (paper's indexing: s[t], t = 0 .. T-1)

from fractions import Fraction  # noqa: E402
import math as _m  # noqa: E402


@pytest.mark.parametrize("T, final", [(10, 0.0), (7, 0.1)])
def test_linear_decay_to_zero_or_a_floor(T, final):
    s = S.linear(T, final=final)
    for t in (0, 1, T // 2, T - 1):
        assert s[t] == pytest.approx(final + (1 - final) * float(Fraction(T - t, T)), rel=1e-15)
    assert np.array_equal(S.linear(T), S.linear(T, final=0.0))


@pytest.mark.parametrize("power", [0.5, 1.0, 2.0, 3.7])
def test_polynomial_is_one_minus_t_over_T_to_the_power(power):
    T, final = 12, 0.05
    s = S.make("polynomial", T, power=power, final=final)
    for t in (0, 3, 6, 11):
        assert s[t] == pytest.approx(final + (1 - final) * (1 - t / T) ** power, rel=1e-14)
    if power == 1.0:
        assert S.polynomial(T, power=1.0) == pytest.approx(S.linear(T), rel=1e-15)
    w = S.polynomial(T, power=power, warmup=4)
    assert w[:4] == pytest.approx(S.polynomial(T, power=power)[:4] * np.arange(4) / 4, rel=1e-15)


@pytest.mark.parametrize("decay, f", [("linear", lambda u: u), ("sqrt", lambda u: 1 - _m.sqrt(1 - u)),
                                      ("cosine", lambda u: (1 - _m.cos(_m.pi * u)) / 2)])
def test_wsd_cooldowns_with_a_floor(decay, f):
    T, frac, final = 20, 0.25, 0.1  # the cooldown covers the last 5 steps, t = 15 .. 19
    s = S.wsd(T, decay_frac=frac, decay=decay, final=final)
    assert (s[:16] == 1.0).all()
    for t in (16, 17, 19):
        assert s[t] == pytest.approx(final + (1 - final) * f((T - t) / (frac * T)), rel=1e-14)


def test_power_scheduler_follows_shen_et_al():
    T, a, b, lr_max, W = 400, 0.2, -0.5, 0.01, 10  # capped for t <= 4, then 2 / sqrt(t)
    s = S.power_scheduler(T, a=a, b=b, lr_max=lr_max, tokens_per_step=100.0, decay_frac=0.1, decay="linear",
                          warmup=W)
    law = lambda t: min(lr_max, a * (t * 100.0) ** b) / lr_max  # noqa: E731
    for t in (W, 50, 200, 359):  # the power law (capped at lr_max) until the cooldown
        assert s[t] == pytest.approx(law(t), rel=1e-14)
    assert s[W] < 1.0 and law(2) == 1.0  # the cap holds early, the law decays after it
    for t in (0, 3, 9):  # the ramp to the law's value at the end of the warmup
        assert s[t] == pytest.approx(t / W * law(W), rel=1e-14)
    c = T - 0.1 * T  # the cooldown: the law's value at its start, decayed linearly
    for t in (360, 380, 399):
        assert s[t] == pytest.approx((T - t) / (T - c) * law(c), rel=1e-14)
    floored = S.power_scheduler(T, a=a, b=b, lr_max=lr_max, tokens_per_step=100.0, final=0.2)
    assert floored[300] == pytest.approx(0.2 + 0.8 * law(300), rel=1e-14)
    assert np.array_equal(S.make("power_scheduler", 50), S.power_scheduler(50))


@pytest.mark.parametrize("call, exc, match", [
    (lambda: S.polynomial(10, power=0.0), ValueError, "power = 0.0 must be a positive"),
    (lambda: S.polynomial(10, final=1.5), ValueError, "final = 1.5 must lie in"),
    (lambda: S.wsd(10, final=-0.1), ValueError, "final = -0.1 must lie in"),
    (lambda: S.power_scheduler(10, b=0.5), ValueError, "b = 0.5 must be a negative"),
    (lambda: S.power_scheduler(10, a=0.0), ValueError, "a = 0.0 must be a positive"),
    (lambda: S.power_scheduler(10, decay="exp"), ValueError, "decay = 'exp' is not one of"),
    (lambda: S.power_scheduler(10, warmup=10), ValueError, "warmup = 10 must be an integer with 0 <= warmup < T"),
    (lambda: S.make("polynomial", 10, nope=1), TypeError, "schedule 'polynomial'"),
    (lambda: S.make("power", 10), ValueError, "unknown schedule 'power'"),
])
def test_new_families_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_new_families_in_a_plan():
    import cdfast

    plan = cdfast.plan_schedule(cdfast.data.SAMPLE_RUN, 1500, n_boot=0,
                                families=[("polynomial", {"power": 2.0}), ("wsd", {"decay": "cosine", "final": 0.01}),
                                          ("power_scheduler", {"tokens_per_step": 100.0})])  # knee at step ~425
    assert [s.name for s in plan.schedules][:2] == ["polynomial:power=2.0", "wsd:decay=cosine,final=0.01"]
    assert plan.optimal.loss <= min(s.loss for s in plan.families) * (1 + 1e-12)
    # 1 - sqrt(1 - u) starts its cooldown at infinite slope: over 240 steps its first step drops sqrt(1/240) ~ 6%
    with pytest.raises(ValueError, match=r"wsd:decay=sqrt changes the LR by .* smooth=False"):
        cdfast.plan_schedule(cdfast.data.SAMPLE_RUN, 1500, n_boot=0, families=[("wsd", {"decay": "sqrt"})])
    steps = cdfast.plan_schedule(cdfast.data.SAMPLE_RUN, 1500, n_boot=0, families=[("wsd", {"decay": "sqrt"})],
                                 smooth=False)
    assert steps["wsd:decay=sqrt"].loss >= steps.optimal.loss
