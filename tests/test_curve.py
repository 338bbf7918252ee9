"""Whole loss-bound curves: eq. (2.4) at every tau, exact and fast (cdfast.curve).

The exact method is checked entry by entry against the single-horizon bound (itself
tested against the nested sums of eq. 2.4), the fast one against the exact one at the
tolerance it guarantees, and both against closed forms derived here.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import digamma

import cdfast
from cdfast import curve as C
from cdfast import schedules as S
from cases import PEAK, SCHEDULES
from naive import last_iterate_naive

T_TEST = 3000
RTOLS = (1e-6, 1e-10, 1e-12)
EXACT_RTOL = 1e-13  # exact curve vs single-horizon bound, and backend agreement


def wide_warmup(T, start=1e-12):
    """Geometric warmup from ``start * peak``, then linear decay to peak/T: with the
    default the LRs span 12 orders of magnitude (the gaps P_tau - P_j about 13)."""
    W = T // 10
    warm = np.geomspace(start, 1.0, W)
    return PEAK * np.concatenate([warm, S.linear(T - W)])


CURVE_SCHEDULES = {
    **SCHEDULES,
    "wide_warmup": wide_warmup,
    "warmup_1e-10": lambda T: PEAK * S.with_warmup(S.wsd(T), T // 10, init=1e-10),
}


def rel_err(x, y):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    same = x == y  # covers matching infinities
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.abs(x - y) / np.abs(y)
    return float(np.max(np.where(same, 0.0, r)))


@pytest.fixture(scope="module")
def exact_curves():
    """Exact (a, b) for every schedule at T_TEST, from the C-or-default backend."""
    return {name: cdfast.bound_curve_terms(make(T_TEST), method="exact") for name, make in CURVE_SCHEDULES.items()}


# --- exact method --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CURVE_SCHEDULES))
def test_exact_curve_is_the_bound_at_every_tau(backend, name):
    lr = CURVE_SCHEDULES[name](T_TEST)
    curve = cdfast.bound_curve(lr, D=0.7, G=1.3, L_star=2.0, method="exact", backend=backend)
    expected = np.array(
        [
            cdfast.last_iterate_bound(lr[:tau], D=0.7, G=1.3, L_star=2.0, backend=backend) if lr[tau - 1] > 0 else np.inf
            for tau in range(1, T_TEST + 1)
        ]
    )
    assert rel_err(curve, expected) <= EXACT_RTOL


@pytest.mark.parametrize("method", ["exact", "fast"])
def test_small_curves_match_the_nested_sums(backend, method):
    rng = np.random.default_rng(3)
    lr = rng.uniform(0.01, 1.0, 40)
    g = rng.uniform(0.5, 2.0, 40)
    curve = cdfast.bound_curve(lr, D=1.5, G=0.8, L_star=0.1, grad_sq=g, method=method, rtol=1e-12, backend=backend)
    naive = [last_iterate_naive(lr[:tau], D=1.5, G=0.8, L_star=0.1, grad_sq=g[:tau]) for tau in range(1, 41)]
    assert rel_err(curve, naive) <= 1e-12


def test_exact_backends_agree():
    if len(cdfast.available_backends()) < 2:
        pytest.skip("only one backend is built")
    lr = CURVE_SCHEDULES["random"](T_TEST)
    a1, b1 = cdfast.bound_curve_terms(lr, method="exact", backend="c")
    a2, b2 = cdfast.bound_curve_terms(lr, method="exact", backend="numba")
    assert rel_err(a1, a2) <= EXACT_RTOL and rel_err(b1, b2) <= EXACT_RTOL


# --- fast method ---------------------------------------------------------------


@pytest.mark.parametrize("rtol", RTOLS)
@pytest.mark.parametrize("name", sorted(CURVE_SCHEDULES))
def test_fast_curve_is_within_rtol_of_exact(backend, exact_curves, name, rtol):
    a_ex, b_ex = exact_curves[name]
    a, b = cdfast.bound_curve_terms(CURVE_SCHEDULES[name](T_TEST), method="fast", rtol=rtol, backend=backend)
    assert rel_err(b, b_ex) < rtol
    assert rel_err(a, a_ex) < 1e-14


def test_wide_warmup_really_spans_twelve_orders():
    lr = wide_warmup(T_TEST)
    assert lr.max() / lr.min() >= 0.999e12


@pytest.mark.parametrize("rtol", RTOLS)
def test_fast_curve_with_grad_sq(backend, rtol):
    rng = np.random.default_rng(7)
    lr = wide_warmup(T_TEST)
    g = rng.uniform(0.1, 10.0, T_TEST)
    _, b_ex = cdfast.bound_curve_terms(lr, grad_sq=g, method="exact", backend=backend)
    _, b = cdfast.bound_curve_terms(lr, grad_sq=g, method="fast", rtol=rtol, backend=backend)
    assert rel_err(b, b_ex) < rtol


def test_fast_constant_lr_matches_harmonic_numbers(backend):
    # Constant eta: b_tau = (eta/2) (1 + H_{tau-1}), H_n = digamma(n + 1) + Euler's gamma.
    # Long enough that a per-step rounding drift (the trap of the plain recursion)
    # would show: 2e5 steps * u ~ 4e-11 >> rtol.
    T, eta = 200_000, 3e-4
    _, b = cdfast.bound_curve_terms(np.full(T, eta), method="fast", rtol=1e-12, backend=backend)
    n = np.arange(T, dtype=float)
    expected = 0.5 * eta * (1.0 + digamma(n + 1.0) + np.euler_gamma)
    assert rel_err(b, expected) < 1e-12 + 1e-14


def test_fast_backends_agree():
    if len(cdfast.available_backends()) < 2:
        pytest.skip("only one backend is built")
    for name in ("wide_warmup", "cyclic", "random"):
        lr = CURVE_SCHEDULES[name](T_TEST)
        a1, b1 = cdfast.bound_curve_terms(lr, method="fast", rtol=1e-10, backend="c")
        a2, b2 = cdfast.bound_curve_terms(lr, method="fast", rtol=1e-10, backend="numba")
        assert rel_err(a1, a2) <= EXACT_RTOL and rel_err(b1, b2) <= EXACT_RTOL


@pytest.mark.parametrize("method", ["exact", "fast"])
def test_at_selects_entries_of_the_full_curve(backend, method):
    lr = CURVE_SCHEDULES["warmup_cosine"](T_TEST)
    a_all, b_all = cdfast.bound_curve_terms(lr, method=method, backend=backend)
    at = np.array([1, 2, 17, 500, 1999, T_TEST - 1])
    a, b = cdfast.bound_curve_terms(lr, at=at, method=method, backend=backend)
    np.testing.assert_array_equal(a, a_all[at - 1])
    np.testing.assert_array_equal(b, b_all[at - 1])


def test_at_accepts_lists_and_whole_floats(backend):
    lr = CURVE_SCHEDULES["linear"](100)
    ref = cdfast.bound_curve(lr, method="fast", backend=backend)
    np.testing.assert_array_equal(cdfast.bound_curve(lr, at=[3, 50.0, 100], method="fast", backend=backend), ref[[2, 49, 99]])


# --- infinite entries ------------------------------------------------------------


@pytest.mark.parametrize("method", ["exact", "fast"])
def test_zero_lrs_give_infinite_entries_without_warnings(backend, method):
    lr = np.array([0.0, 0.0, 0.5, 1.0, 0.0, 0.25, 0.0, 0.1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = cdfast.bound_curve_terms(lr, method=method, backend=backend)
        curve = cdfast.bound_curve(lr, method=method, backend=backend)
    # P_tau = 0 for the two leading zeros; eta_tau = 0 after a positive LR at tau = 5, 7.
    assert np.isinf(a[:2]).all() and np.isfinite(a[2:]).all()
    np.testing.assert_array_equal(np.isinf(b), [True, True, False, False, True, False, True, False])
    np.testing.assert_array_equal(np.isinf(curve), np.isinf(b))
    # Leading zeros contribute nothing: the finite entries equal those of the trimmed run.
    finite = np.isfinite(b)
    assert rel_err(b[finite][:2], cdfast.bound_curve_terms(lr[2:4], method="exact", backend=backend)[1]) < 1e-12


def test_all_zero_lr_is_all_infinite(backend):
    a, b = cdfast.bound_curve_terms(np.zeros(5), method="fast", backend=backend)
    assert np.isinf(a).all() and np.isinf(b).all()


# --- method="auto" ---------------------------------------------------------------


def test_auto_is_exact_for_small_work(backend):
    lr = CURVE_SCHEDULES["cosine"](500)
    for got, want in zip(
        cdfast.bound_curve_terms(lr, backend=backend), cdfast.bound_curve_terms(lr, method="exact", backend=backend)
    ):
        np.testing.assert_array_equal(got, want)


def test_auto_switches_to_fast_for_large_work(backend, monkeypatch):
    lr = CURVE_SCHEDULES["cosine"](500)
    monkeypatch.setattr(C, "AUTO_EXACT_WORK", 1000)
    monkeypatch.setattr(C, "FAST_NODE_STEP_COST", 0.0)
    for got, want in zip(
        cdfast.bound_curve_terms(lr, rtol=1e-8, backend=backend),
        cdfast.bound_curve_terms(lr, method="fast", rtol=1e-8, backend=backend),
    ):
        np.testing.assert_array_equal(got, want)


# --- node design -------------------------------------------------------------------


@pytest.mark.parametrize("rtol", (1e-6, 1e-12))
@pytest.mark.parametrize("span", [(1e-3, 1.0), (1e-13, 3.0), (2.0, 2.0)])
def test_exponential_sum_meets_its_budget(rtol, span):
    # The kernel sum_m c_m exp(-u_m x) must be within rtol/2 of 1/x on the whole range:
    # checked on a dense log grid (in long double-free float64; the budget is >> u).
    x_min, x_max = span
    u, c = C._design_nodes(x_min, x_max, rtol)
    x = np.geomspace(x_min, x_max, 2000)
    approx = np.array([math.fsum(c * np.exp(-u * xi)) for xi in x])
    assert np.max(np.abs(approx * x - 1.0)) <= rtol / 2
    assert len(u) < 600


def test_alias_error_matches_the_gamma_function():
    from scipy.special import gamma

    h = 0.4
    direct = 2 * sum(abs(gamma(1 + 2j * np.pi * n / h)) for n in range(1, 5))
    assert C._alias_error(h) == pytest.approx(direct, rel=1e-10)


# --- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc, fragment",
    [
        ({"rtol": 1e-15}, ValueError, "rtol = 1e-15 is outside"),
        ({"rtol": 0.5}, ValueError, "rtol = 0.5 is outside"),
        ({"rtol": float("nan")}, ValueError, "rtol = nan is not finite"),
        ({"rtol": "1e-6"}, TypeError, "rtol must be a real number"),
        ({"method": "quick"}, ValueError, "method = 'quick' is not one of"),
        ({"at": [3, 2]}, ValueError, "strictly increasing"),
        ({"at": [0]}, ValueError, "outside 1..T"),
        ({"at": [1.5]}, TypeError, "not a whole number"),
        ({"grad_sq": np.ones(3)}, ValueError, "grad_sq has 3 entries"),
    ],
)
def test_bad_arguments_are_refused(backend, kwargs, exc, fragment):
    kwargs = dict(kwargs)
    with pytest.raises(exc, match=fragment):
        cdfast.bound_curve(np.ones(5), method=kwargs.pop("method", "fast"), backend=backend, **kwargs)


@pytest.mark.parametrize("method", ["exact", "fast"])
@pytest.mark.parametrize(
    "lr, fragment",
    [(np.array([1.0, np.nan, 1.0]), "lr\\[1\\] is nan"), (np.array([1.0, -2.0]), "lr\\[1\\] = -2.0 is negative"),
     (np.full(3, 1e308), "overflowed")],
)
def test_bad_lr_is_refused(backend, method, lr, fragment):
    with pytest.raises(ValueError, match=fragment):
        cdfast.bound_curve(lr, method=method, backend=backend)


def test_auto_uses_exact_for_a_few_taus_of_a_long_run(backend, monkeypatch):
    lr = CURVE_SCHEDULES["cosine"](20_000)
    at = [10, 15_000, 20_000]
    monkeypatch.setattr(C, "AUTO_EXACT_WORK", 1000)
    for got, want in zip(
        cdfast.bound_curve_terms(lr, at=at, backend=backend),
        cdfast.bound_curve_terms(lr, at=at, method="exact", backend=backend),
    ):
        np.testing.assert_array_equal(got, want)


def test_fast_refuses_a_range_it_cannot_resolve(backend, monkeypatch):
    lr = np.array([5e-324, 1.0, 1.0])
    with pytest.raises(ValueError, match="method='exact'"):
        cdfast.bound_curve(lr, method="fast", backend=backend)
    # "auto" falls back to the exact method instead, even when the work is large
    monkeypatch.setattr(C, "AUTO_EXACT_WORK", 0)
    np.testing.assert_array_equal(cdfast.bound_curve(lr, backend=backend), cdfast.bound_curve(lr, method="exact", backend=backend))


# --- properties ----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    lr=hnp.arrays(np.float64, st.integers(1, 60), elements=st.floats(1e-6, 10.0)),
    rtol=st.sampled_from(RTOLS),
)
def test_fast_is_within_rtol_on_random_schedules(lr, rtol):
    _, b_ex = cdfast.bound_curve_terms(lr, method="exact")
    _, b = cdfast.bound_curve_terms(lr, method="fast", rtol=rtol)
    assert rel_err(b, b_ex) < rtol


def test_gauss_rule_reproduces_the_moments_it_replaces():
    # An n-point Gauss rule integrates t^k exactly for k < 2n against its measure.
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0.0, 2.0, 80))
    wt = rng.uniform(0.1, 1.0, 80)
    n = 6
    gu, gc = C._gauss_rule(t, wt, n)
    assert np.all(gc > 0) and np.all((gu >= 0) & (gu <= 2.0))
    for k in range(2 * n):
        assert math.fsum(gc * gu**k) == pytest.approx(math.fsum(wt * t**k), rel=1e-12)


def test_gauss_compression_shrinks_the_node_count(monkeypatch):
    with_gauss = len(C._design_nodes(1e-3, 1e4, 1e-12)[0])
    monkeypatch.setattr(C, "_gauss_rule", lambda t, wt, n: (-t[:n], wt[:n]))  # rejected: not positive
    plain = len(C._design_nodes(1e-3, 1e4, 1e-12)[0])
    assert with_gauss < 0.6 * plain
