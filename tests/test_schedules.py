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
        (lambda: S.make("linear", 10, final=0.1), TypeError, "schedule 'linear'"),
        (lambda: S.continuous("inverse_sqrt"), ValueError, "no horizon-free"),
        (lambda: S.continuous("linear", final=0.1), TypeError, "takes no parameter(s) ['final']"),
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
