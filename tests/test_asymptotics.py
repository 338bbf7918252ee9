"""Tests for cdfast.asymptotics: optimal peak LR, Table 1, Corollary 2.4 and the qualifying exam.

Expected values come from closed forms derived here (or from independent quadrature
in mpmath), never from the code under test.
"""

from __future__ import annotations

import dataclasses
import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special

import cdfast
from cdfast import asymptotics as A
from cdfast import schedules as S

from naive import last_iterate_naive

T6 = 10**6
WSD_C = (0.5, 0.8, 0.9)


def wsd_q(c: float) -> tuple[float, float]:
    """Table 1's WSD row, c = decay start fraction."""
    return 1.0 / (1.0 + c), 1.0 + 0.5 * math.log((1.0 + c) / (1.0 - c))


# ---------------------------------------------------------------------------
# optimal_peak_lr / bound_vs_peak_lr

SHAPES = {
    "linear": S.linear(500),
    "cosine_warmup": S.cosine(777, warmup=50),
    "wsd_sqrt": S.wsd(1000, 0.3, "sqrt"),
    "constant": S.constant(300),
    "step": S.piecewise_constant(600, [200, 400], [1.0, 0.3, 0.05]),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("D,G", [(1.0, 1.0), (3.0, 0.2), (0.05, 7.0)])
def test_optimal_peak_lr_matches_brute_force(name, D, G):
    shape = SHAPES[name]
    eta, bound = cdfast.optimal_peak_lr(shape, D=D, G=G)

    def f(log_eta):
        return cdfast.last_iterate_bound(math.exp(log_eta) * shape, D=D, G=G)

    # A dense grid brackets the minimum, Brent polishes it.
    grid = np.linspace(-25.0, 15.0, 4001)
    k = int(np.argmin([f(x) for x in grid]))
    res = optimize.minimize_scalar(f, bracket=(grid[k - 1], grid[k], grid[k + 1]), tol=1e-12)
    assert eta == pytest.approx(math.exp(res.x), rel=1e-6)
    assert bound == pytest.approx(res.fun, rel=1e-6)
    assert bound <= res.fun * (1 + 1e-14)


def test_optimal_peak_lr_against_literal_formula_with_grad_sq():
    rng = np.random.default_rng(0)
    shape = S.cosine(80, warmup=5)
    g2 = rng.uniform(0.5, 2.0, 80)
    eta, bound = cdfast.optimal_peak_lr(shape, D=2.0, G=0.5, grad_sq=g2, L_star=1.5)
    assert bound == pytest.approx(last_iterate_naive(eta * shape, D=2.0, G=0.5, L_star=1.5, grad_sq=g2), rel=1e-12)
    # A small step either way cannot do better.
    for f in (1 - 1e-4, 1 + 1e-4):
        assert last_iterate_naive(f * eta * shape, D=2.0, G=0.5, L_star=1.5, grad_sq=g2) > bound


@settings(max_examples=25, deadline=None)
@given(c=st.floats(1e-3, 1e3), T=st.integers(2, 300))
def test_optimal_peak_lr_scales_with_the_shape(c, T):
    eta1, b1 = cdfast.optimal_peak_lr(S.linear(T))
    eta2, b2 = cdfast.optimal_peak_lr(c * S.linear(T))
    assert eta2 == pytest.approx(eta1 / c, rel=1e-12)
    assert b2 == pytest.approx(b1, rel=1e-12)


def test_bound_vs_peak_lr_is_the_bound_at_each_peak():
    shape = SHAPES["wsd_sqrt"]
    etas = np.geomspace(1e-4, 10.0, 17)
    got = cdfast.bound_vs_peak_lr(shape, etas, D=1.7, G=0.3, L_star=2.0)
    want = [cdfast.last_iterate_bound(e * shape, D=1.7, G=0.3, L_star=2.0) for e in etas]
    np.testing.assert_allclose(got, want, rtol=1e-13)
    eta, bound = cdfast.optimal_peak_lr(shape, D=1.7, G=0.3, L_star=2.0)
    assert cdfast.bound_vs_peak_lr(shape, [eta], D=1.7, G=0.3, L_star=2.0)[0] == pytest.approx(bound, rel=1e-14)


@pytest.mark.parametrize(
    "peaks,match",
    [([1.0, 0.0], r"peak_lrs\[1\] is 0"), ([1.0, -2.0], r"peak_lrs\[1\] = -2.0 is negative"),
     ([np.nan], r"peak_lrs\[0\] is nan"), ([], "peak_lrs is empty")],
)
def test_bound_vs_peak_lr_rejects_bad_peaks(peaks, match):
    with pytest.raises(ValueError, match=match):
        cdfast.bound_vs_peak_lr(S.linear(10), peaks)


def test_optimal_peak_lr_rejects_bad_input():
    with pytest.raises(ValueError, match="G = 0"):
        cdfast.optimal_peak_lr(S.linear(10), G=0.0)
    with pytest.raises(ValueError, match="D = -1.0 is negative"):
        cdfast.optimal_peak_lr(S.linear(10), D=-1.0)
    with pytest.raises(ValueError, match="final learning rate"):
        cdfast.optimal_peak_lr([1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match=r"lr\[1\] is nan"):
        cdfast.optimal_peak_lr([1.0, np.nan, 0.5])


# ---------------------------------------------------------------------------
# Table 1: exact discrete constants at T = 10^6 and the continuous integrals


def test_linear_discrete_constants_are_exact():
    # P = sum (T-t)/T = (T+1)/2, so q1^2 = T a = T/(T+1) exactly.
    for T in (10, 1000, T6):
        q1, q2 = cdfast.asymptotic_constants("linear", T)
        assert q1 == pytest.approx(T / (T + 1), rel=1e-13)
    q1, q2 = cdfast.asymptotic_constants("linear", T6)
    assert (round(q1, 3), round(q2, 3)) == (1.0, 1.0)


def test_constant_discrete_constants_are_harmonic_numbers():
    # s = 1: a = 1/(2T), b = (1/2)[1 + sum_{j<T} 1/(T-j)] = (1 + H_{T-1})/2.
    for T in (7, 1000, T6):
        q1, q2 = cdfast.asymptotic_constants("constant", T)
        H = special.digamma(T) + np.euler_gamma  # H_{T-1}
        assert q1 == pytest.approx(0.5, rel=1e-14)
        assert q2 == pytest.approx(0.5 * (1.0 + H), rel=1e-12)
    # ... which grows like ln(T)/2: ln(10)/2 per decade.
    grow = cdfast.asymptotic_constants("constant", 10 * T6)[1] - cdfast.asymptotic_constants("constant", T6)[1]
    assert grow == pytest.approx(0.5 * math.log(10.0), rel=1e-5)
    assert cdfast.asymptotic_constants("constant") == (pytest.approx(0.5, rel=1e-12), math.inf)


@pytest.mark.parametrize("c", WSD_C)
def test_wsd_reproduces_table1(c):
    q1_want, q2_want = wsd_q(c)
    q1, q2 = cdfast.asymptotic_constants("wsd", T6, decay_frac=round(1.0 - c, 12))
    assert (round(q1, 3), round(q2, 3)) == (round(q1_want, 3), round(q2_want, 3))
    assert abs(q1 - q1_want) < 1e-5 and abs(q2 - q2_want) < 1e-3
    c1, c2 = cdfast.asymptotic_constants("wsd", decay_frac=round(1.0 - c, 12))
    assert c1 == pytest.approx(q1_want, rel=1e-10)
    assert c2 == pytest.approx(q2_want, rel=1e-8)


def test_cosine_reproduces_table1():
    q1, q2 = cdfast.asymptotic_constants("cosine", T6)
    c1, c2 = cdfast.asymptotic_constants("cosine")
    # Continuous: int s = 1/2 and, with R(x) = int_x^1 sin^2(pi(1-y)/2) dy, an
    # independent high-precision quadrature of s^2/R.
    # In y = 1 - x; s^2/R ~ 3 pi^2 y / 4 near y = 0, so cutting y < 1e-20 changes nothing.
    with mpmath.workdps(60):
        s = lambda y: mpmath.sin(mpmath.pi * y / 2) ** 2
        R = lambda y: y / 2 - mpmath.sin(mpmath.pi * y) / (2 * mpmath.pi)
        ref = float(mpmath.quad(lambda y: s(y) ** 2 / R(y) if y > 1e-20 else 0, [0, 1]) / 2)
    assert c1 == pytest.approx(1.0, rel=1e-12)
    assert c2 == pytest.approx(ref, rel=1e-8)
    assert (round(q1, 3), round(q2, 3)) == (1.0, 1.061)  # as the paper prints it
    assert q2 == pytest.approx(ref, abs=1e-5)


@pytest.mark.parametrize(
    "name,params",
    [("linear", {}), ("cosine", {}), ("wsd", {"decay_frac": 0.2}), ("wsd", {"decay_frac": 0.2, "decay": "sqrt"}),
     ("wsd", {"decay_frac": 0.3, "decay": "cosine"})],
)
def test_continuous_integrals_agree_with_discrete_sums(name, params):
    c1, c2 = cdfast.asymptotic_constants(name, **params)
    d1, d2 = cdfast.asymptotic_constants(name, T6, **params)
    assert d1 == pytest.approx(c1, abs=1e-5)
    assert d2 == pytest.approx(c2, abs=1e-4)


def test_user_shape_callables_against_closed_forms():
    # s = (1-x)^2: int s = 1/3, R = (1-x)^3/3, s^2/R = 3(1-x), q2^2 = (1/2)(3/2).
    c1, c2 = cdfast.asymptotic_constants(lambda x: (1.0 - x) ** 2)
    assert (c1, c2) == (pytest.approx(1.5, rel=1e-12), pytest.approx(0.75, rel=1e-9))
    # s = 1 - sqrt(x): int s = 1/3, R(x) = (1-x) - (2/3)(1 - x^{3/2}); mpmath for q2^2.
    with mpmath.workdps(60):  # in y = 1 - x; s^2/R -> 3/2 as y -> 0, so cutting y < 1e-20 is harmless
        s = lambda y: 1 - mpmath.sqrt(1 - y)
        R = lambda y: y - mpmath.mpf(2) / 3 * (1 - (1 - y) ** mpmath.mpf(1.5))
        ref = float(mpmath.quad(lambda y: s(y) ** 2 / R(y) if y > 1e-20 else 0, [0, 1]) / 2)
    c1, c2 = cdfast.asymptotic_constants(lambda x: 1.0 - np.sqrt(x))
    assert c1 == pytest.approx(1.5, rel=1e-12)
    assert c2 == pytest.approx(ref, rel=1e-8)
    # A scalar-only callable (math.sqrt) is recognised as s(x) too.
    assert cdfast.asymptotic_constants(lambda x: 1.0 - math.sqrt(x))[1] == pytest.approx(ref, rel=1e-8)
    # Discrete sums s(t/T) at T = 10^6 agree with the integrals.
    d1, d2 = cdfast.asymptotic_constants(lambda x: 1.0 - np.sqrt(x), T6)
    assert (d1, d2) == (pytest.approx(1.5, abs=1e-5), pytest.approx(ref, abs=1e-4))


def test_floor_makes_the_integral_diverge():
    assert cdfast.asymptotic_constants("cosine", final=0.1)[1] == math.inf
    assert cdfast.asymptotic_constants(lambda x: np.where(x < 0.5, 1.0, 0.1))[1] == math.inf


def test_family_callable_needs_a_horizon():
    fam = lambda T: S.linear(T)  # noqa: E731
    assert cdfast.asymptotic_constants(fam, 1000) == cdfast.asymptotic_constants("linear", 1000)
    with pytest.raises(ValueError, match="no horizon-free continuous limit"):
        cdfast.asymptotic_constants(fam)
    with pytest.raises(ValueError, match="no horizon-free continuous limit"):
        cdfast.asymptotic_constants("inverse_sqrt")


def test_table1_rows_are_consistent():
    T = 10**5
    rows = {r.schedule: r for r in cdfast.table1(T)}
    assert list(rows) == [label for label, _, _ in A.TABLE1_SCHEDULES]
    for label, name, params in A.TABLE1_SCHEDULES:
        row = rows[label]
        shape = S.make(name, T, **params)
        assert (row.q1_sq, row.q2_sq) == cdfast.asymptotic_constants(name, T, **params)
        eta, bound = cdfast.optimal_peak_lr(shape, D=2.0, G=0.5)
        assert row.eta_peak(D=2.0, G=0.5) == pytest.approx(eta, rel=1e-12)
        assert row.bound(D=2.0, G=0.5, L_star=1.0) == pytest.approx(1.0 + bound, rel=1e-12)
    for c, label in zip(WSD_C, ("wsd(c=0.5)", "wsd(c=0.8)", "wsd(c=0.9)")):
        assert (rows[label].q1_sq_limit, rows[label].q2_sq_limit) == pytest.approx(wsd_q(c), rel=1e-8)
    assert [r.qualified for r in rows.values()] == [True] * 5 + [False, False]
    assert rows["constant"].q2_sq_limit == math.inf and rows["inverse_sqrt"].q2_sq_limit is None
    # Inverse sqrt: P = sum_{t<=T} t^{-1/2} = 2 sqrt(T) + zeta(1/2) + O(T^{-1/2}), q1^2 = T/(2P) ~ sqrt(T)/4.
    P = 2 * math.sqrt(T) + float(mpmath.zeta(0.5))
    assert rows["inverse_sqrt"].q1_sq == pytest.approx(T / (2 * P), rel=1e-5)
    assert rows["linear"].expression().startswith("L* + 1 D^2/(T eta) + 1 G^2 eta")


# ---------------------------------------------------------------------------
# Corollary 2.4


def test_Q_and_optimal_eta_ref():
    for name, params, (q1, q2) in [("linear", {}, (1.0, 1.0)), ("wsd", {"decay_frac": 0.2}, wsd_q(0.8))]:
        e = np.array([0.3, 1.0, 2.5])
        np.testing.assert_allclose(cdfast.Q(e, name, D=2.0, G=3.0, **params), 4 * q1 / e + 9 * q2 * e, rtol=1e-8)
        eta_ref, q_min = cdfast.optimal_eta_ref(name, D=2.0, G=3.0, **params)
        res = optimize.minimize_scalar(lambda x: cdfast.Q(math.exp(x), name, D=2.0, G=3.0, **params), bracket=(-3, 0, 3))
        assert eta_ref == pytest.approx(math.exp(res.x), rel=1e-4)
        assert q_min == pytest.approx(res.fun, rel=1e-8)
        assert q_min == pytest.approx(2 * 2.0 * 3.0 * math.sqrt(q1 * q2), rel=1e-8)


def test_Q_at_a_horizon_is_the_exact_bound():
    T, e = 5000, 0.7
    want = cdfast.last_iterate_bound(e / math.sqrt(T) * S.cosine(T), D=1.5, G=0.8)
    assert cdfast.Q(e, "cosine", D=1.5, G=0.8, T=T) / math.sqrt(T) == pytest.approx(want, rel=1e-13)


def test_Q_refuses_unqualified_schedules_and_bad_eta_ref():
    with pytest.raises(ValueError, match="not qualified"):
        cdfast.optimal_eta_ref("constant")
    with pytest.raises(ValueError, match="eta_ref"):
        cdfast.Q(0.0, "linear")
    with pytest.raises(ValueError, match="eta_ref"):
        cdfast.Q([1.0, np.nan], "linear")


# ---------------------------------------------------------------------------
# The qualifying exam

EXAMS = {
    "linear": (("linear",), {}),
    "cosine": (("cosine",), {}),
    "wsd_linear": (("wsd",), {"decay_frac": 0.2}),
    "wsd_sqrt": (("wsd",), {"decay_frac": 0.2, "decay": "sqrt"}),
    "wsd_cosine": (("wsd",), {"decay_frac": 0.2, "decay": "cosine"}),
    "square_decay": ((lambda x: (1.0 - x) ** 2,), {}),
    "one_minus_sqrt": ((lambda x: 1.0 - np.sqrt(x),), {}),
    "constant": (("constant",), {}),
    "inverse_sqrt": (("inverse_sqrt",), {}),
    "step_above_zero": ((lambda T: S.piecewise_constant(T, [T // 2, 3 * T // 4], [1.0, 0.1, 0.01]),), {}),
    "cosine_floor": (("cosine",), {"final": 0.1}),
}
PASS = ["linear", "cosine", "wsd_linear", "wsd_sqrt", "wsd_cosine", "square_decay", "one_minus_sqrt"]
_cache: dict[str, cdfast.ExamResult] = {}


def exam(key: str) -> cdfast.ExamResult:
    if key not in _cache:
        args, kw = EXAMS[key]
        _cache[key] = cdfast.qualifying_exam(*args, **kw)
    return _cache[key]


@pytest.mark.parametrize("key", PASS)
def test_exam_passes_decaying_schedules(key):
    r = exam(key)
    assert r.qualified and bool(r)
    assert r.growth == "bounded" and r.coef == 0.0
    assert r.reason.startswith("passes: sqrt(T)*bound stays bounded")
    assert r.limit == r.values[-1]
    if r.continuous_q2_sq is not None:  # the limit is Q(1) = q1^2 + q2^2 of the integrals
        assert r.limit == pytest.approx(r.continuous_q1_sq + r.continuous_q2_sq, abs=1e-4)


def test_exam_linear_limit_is_two():
    assert exam("linear").limit == pytest.approx(2.0, abs=1e-5)  # Q(1) = 1 + 1


def test_exam_values_are_sqrt_T_times_the_bound():
    r = exam("cosine")
    assert list(r.T) == [1000, 3162, 10000, 31623, 100000, 316228, 1000000, 3162278, 10000000]
    for i in (0, 4):
        T = int(r.T[i])
        want = math.sqrt(T) * cdfast.last_iterate_bound(S.cosine(T) / math.sqrt(T))
        assert r.values[i] == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(r.values, r.q1_sq + r.q2_sq, rtol=1e-15)


def test_exam_fails_constant():
    r = exam("constant")
    assert not r.qualified and r.growth == "log"
    assert r.coef == pytest.approx(0.5, rel=1e-3)  # q2^2 = (1 + H_{T-1})/2
    assert r.reason == "fails: the LR does not decay to 0 (it ends at 100% of the peak), sqrt(T)*bound grows like 0.5 ln T"
    assert r.continuous_q2_sq == math.inf


def test_exam_fails_inverse_sqrt():
    r = exam("inverse_sqrt")
    assert not r.qualified and r.growth == "power"
    # q1^2 = T / (2 sum_{t<=T} t^{-1/2}) ~ sqrt(T)/4.
    assert r.exponent == pytest.approx(0.5, abs=0.01) and r.coef == pytest.approx(0.25, rel=0.02)
    assert r.reason.startswith("fails: the LR decays too early (the sum of the LRs grows slower than T)")
    assert r.reason.endswith("sqrt(T)*bound grows like 0.25 T^0.50")
    assert r.continuous_q2_sq is None


@pytest.mark.parametrize("key,floor", [("cosine_floor", 0.1), ("step_above_zero", 0.01)])
def test_exam_fails_schedules_that_end_above_zero(key, floor):
    r = exam(key)
    assert not r.qualified and r.growth == "log"
    # The final stretch at level f acts like a constant schedule: b grows like (f/2) ln T.
    assert r.coef == pytest.approx(floor / 2, rel=0.01)
    assert f"does not decay to 0 (it ends at {100 * floor:.3g}% of the peak)" in r.reason
    assert r.reason.endswith(f"grows like {floor / 2:.2g} ln T")


def test_exam_result_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        exam("linear").qualified = False


def test_exam_continuous_check_can_fail_alone():
    # A floor of 1e-5 is invisible to sqrt(T)*bound up to T = 10^4 but the integral diverges.
    r = cdfast.qualifying_exam(lambda x: 1e-5 + (1 - 1e-5) * (1.0 - x), T=[100, 316, 1000, 3162, 10000])
    assert r.growth == "bounded" and not r.qualified
    assert r.reason.startswith("fails: the continuous integral")


# ---------------------------------------------------------------------------
# Schedules given as callables: detection and errors


def test_kind_detection_and_override():
    fam = lambda T: S.wsd(T, 0.2)  # noqa: E731
    shape = lambda x: 1.0 - x  # noqa: E731
    assert A._resolve(fam).continuous is None
    assert A._resolve(shape).continuous is shape
    T = 1000
    assert cdfast.asymptotic_constants(fam, T, kind="family") == cdfast.asymptotic_constants("wsd", T, decay_frac=0.2)
    # s(t/T) = 1 - t/T and the family's (T - t)/T differ in the last ulp of some steps
    assert cdfast.asymptotic_constants(shape, T, kind="continuous") == pytest.approx(
        cdfast.asymptotic_constants("linear", T), rel=1e-14)


@pytest.mark.parametrize(
    "fn,kind,err,match",
    [
        (lambda T: np.ones(T + 1), "family", ValueError, r"shape \(1001,\) for T = 1000"),
        (lambda T: np.ones((T, 1)), "family", ValueError, "length-T 1-D array"),
        (lambda T: -S.linear(T), "family", ValueError, r"schedule\(T=1000\)\[0\] = -1.0"),
        (lambda T: 2 * S.linear(T), "family", ValueError, r"lie in \[0, 1\].*divide it by its maximum"),
        (lambda x: np.where(x < 0.5, np.nan, 1.0), "continuous", ValueError, r"s\(t/T\)\[0\] = nan"),
        (lambda x: np.maximum(1 - 2 * x, 0.0), "continuous", ValueError, "ends at 0"),
        (lambda T: S.linear(T), "sideways", ValueError, "kind = 'sideways'"),
        (lambda a, b: 1.0, "auto", TypeError, "pass kind='continuous' or kind='family'"),
    ],
)
def test_bad_callables_are_named(fn, kind, err, match):
    with pytest.raises(err, match=match):
        cdfast.asymptotic_constants(fn, 1000, kind=kind)


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="unknown schedule 'cosin'"):
        cdfast.qualifying_exam("cosin")
    with pytest.raises(TypeError, match="only apply to named families"):
        cdfast.qualifying_exam(lambda x: 1 - x, decay_frac=0.2)
    with pytest.raises(TypeError, match="schedule must be a family name"):
        cdfast.qualifying_exam(S.linear(100))
    with pytest.raises(ValueError, match="geometric grid"):
        cdfast.qualifying_exam("linear", T=[10, 20, 1000, 5000])
    with pytest.raises(ValueError, match="ends at 0"):
        cdfast.qualifying_exam(lambda T: np.r_[np.ones(T - 1), 0.0], T=[100, 1000, 10000, 100000])
