"""Generalizations 2 and 3 (cdfast.laws): exact recovery, the bound's own asymptotics, Chinchilla Table 2."""

from __future__ import annotations

import csv
import pathlib

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

import cdfast
from cdfast import schedules

DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_peak_lr_law_exact_recovery_and_optimum():
    eta = np.geomspace(1e-4, 1e-2, 7)
    T = np.r_[np.full(4, 1e4), np.full(3, 4e4)]
    L_inf, q1, q2 = 2.7, 3.0, 40.0
    y = L_inf + q1 / (T * eta) + eta * q2
    f = cdfast.fit_peak_lr_law(eta, T, y, n_boot=50)
    assert (f.L_inf, f.q1_sq, f.q2_sq) == pytest.approx((L_inf, q1, q2), rel=1e-8)
    assert f.r2 == pytest.approx(1.0) and f.max_rel_error < 1e-10
    # the closed-form optimum agrees with a numerical minimisation of the fitted law
    best = minimize_scalar(lambda e: f.predict(e, 2e4), bounds=(1e-5, 1e-1), method="bounded",
                           options={"xatol": 1e-12})
    assert f.optimal_peak_lr(2e4) == pytest.approx(best.x, rel=1e-4)
    assert f.optimal_loss(2e4) == pytest.approx(float(f.predict(best.x, 2e4)), rel=1e-9)
    lo, hi = f.optimal_peak_lr_interval(2e4)
    assert lo == pytest.approx(hi, rel=1e-6)  # noise-free: every resample gives the same fit


def test_peak_lr_law_recovers_table1_constants_from_the_bound():
    """Final-iterate bounds of linear decay (D = G = 1) follow eq. (2.5) with q1^2 = q2^2 = 1."""
    T = 20_000
    s = schedules.linear(T)
    eta = np.geomspace(3e-4, 3e-2, 9)
    y = np.array([cdfast.last_iterate_bound(e * s) for e in eta])
    f = cdfast.fit_peak_lr_law(eta, T, y, n_boot=20)
    assert f.q1_sq == pytest.approx(1.0, rel=2e-3)
    assert f.q2_sq == pytest.approx(1.0, rel=2e-3)
    assert f.optimal_peak_lr(T) == pytest.approx(1 / np.sqrt(T), rel=2e-3)


def test_peak_lr_bootstrap_interval_covers_truth():
    rng = np.random.default_rng(3)
    eta = np.repeat(np.geomspace(1e-4, 1e-2, 6), 3)
    T = 1e4
    y = 2.7 + 3.0 / (T * eta) + 40.0 * eta
    f = cdfast.fit_peak_lr_law(eta, T, y + 2e-3 * rng.standard_normal(y.size), n_boot=300, seed=1)
    lo, hi = f.optimal_peak_lr_interval(T, level=0.95)
    assert lo < np.sqrt(3.0 / (40.0 * T)) < hi


def test_peak_lr_law_errors():
    with pytest.raises(ValueError, match="at least 3"):
        cdfast.fit_peak_lr_law([1e-3, 2e-3], 1000, [3.0, 2.9])
    with pytest.raises(ValueError, match=r"peak_lr\[1\] = 0"):
        cdfast.fit_peak_lr_law([1e-3, 0.0, 2e-3], 1000, [3.0, 2.9, 2.8])
    with pytest.raises(ValueError, match="one per run"):
        cdfast.fit_peak_lr_law([1e-3, 2e-3, 3e-3], [1000, 2000], [3.0, 2.9, 2.8])
    with pytest.raises(ValueError, match=r"loss\[2\]"):
        cdfast.fit_peak_lr_law([1e-3, 2e-3, 3e-3], 1000, [3.0, 2.9, np.nan])


def test_horizon_law_exact_and_metrics():
    T = np.array([1e3, 4e3, 1.6e4, 6.4e4])
    y = 2.0 + 30.0 / np.sqrt(T)
    f = cdfast.fit_horizon_law(T, y)
    assert (f.L_inf, f.k) == pytest.approx((2.0, 30.0), rel=1e-10)
    assert f.r2 == pytest.approx(1.0) and f.max_rel_error < 1e-12 and f.n == 4
    np.testing.assert_allclose(f.predict(1e6), 2.0 + 30.0 / 1e3)
    y2 = y.copy()
    y2[1] *= 1.01
    g = cdfast.fit_horizon_law(T, y2)
    pred = g.predict(T)
    assert g.max_rel_error == pytest.approx(np.max(np.abs(pred - y2) / y2))
    with pytest.raises(ValueError, match="distinct horizons"):
        cdfast.fit_horizon_law([100, 100, 100], [3.0, 2.9, 2.8])
    with pytest.raises(ValueError, match=r"horizon\[0\] = 0"):
        cdfast.fit_horizon_law([0, 100], [3.0, 2.9])


def test_horizon_law_on_the_bound_slope():
    """At the optimal peak LR the linear-decay bound is L_* + 2DG/sqrt(T) (Table 1)."""
    T = np.array([4000, 8000, 16000, 32000])
    y = np.array([cdfast.last_iterate_bound(schedules.linear(t) / np.sqrt(t)) for t in T])
    f = cdfast.fit_horizon_law(T, y)
    assert f.k == pytest.approx(2.0, rel=5e-3)
    assert abs(f.L_inf) < 5e-3


def _chinchilla():
    path = DATA / "chinchilla_svg_extracted_data.csv"
    if not path.is_file():
        pytest.skip(f"Chinchilla data not found at {path} (shared/data beside the repository)")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    N = np.array([float(r["Model Size"]) for r in rows])
    C = np.array([float(r["Training FLOP"]) for r in rows])
    L = np.array([float(r["loss"]) for r in rows])
    return N, C / (6 * N), L


@pytest.mark.parametrize("size_b, n, k, L_inf, r2", [(0.074, 5, 3.22e4, 2.825, 0.991), (2.004, 8, 3.62e4, 2.178, 0.999)])
def test_chinchilla_table2_rows(size_b, n, k, L_inf, r2):
    """Rows of the paper's Table 2 (slopes and intercepts as printed there)."""
    N, tokens, L = _chinchilla()
    fits = cdfast.fit_horizon_law_by_group(N, tokens, L)
    size = min(fits, key=lambda s: abs(s / 1e9 - size_b))
    assert abs(size / 1e9 - size_b) < 5e-3
    f = fits[size]
    assert f.n == n
    assert round(f.k, -2) == pytest.approx(k)
    assert round(f.L_inf, 3) == pytest.approx(L_inf)
    assert round(f.r2, 3) == pytest.approx(r2)


def test_chinchilla_all_groups_are_lines():
    N, tokens, L = _chinchilla()
    fits = cdfast.fit_horizon_law_by_group(N, tokens, L)
    assert len(fits) >= 15
    assert min(f.r2 for f in fits.values()) >= 0.978 - 5e-4
