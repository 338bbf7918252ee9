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


# ---------------------------------------------------------------------------
# The Chinchilla law (Hoffmann et al. 2022, Approach 3)

# Hoffmann et al.'s published fit, used here only as a realistic ground truth
TRUTH = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def _chinchilla_grid_runs():
    N, D = np.meshgrid(np.geomspace(1e8, 1e10, 6), np.geomspace(1e9, 1e11, 6))
    N, D = N.ravel(), D.ravel()
    t = TRUTH
    return N, D, t["E"] + t["A"] * N ** -t["alpha"] + t["B"] * D ** -t["beta"]


def _huber_sum(E, A, B, alpha, beta, N, D, L, delta=1e-3):
    """The objective, written out: sum of Huber(delta) of log(prediction) - log(loss)."""
    r = np.log(E + A / N**alpha + B / D**beta) - np.log(L)
    a = np.abs(r)
    return float(np.sum(np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))))


def test_chinchilla_law_recovers_known_parameters():
    N, D, L = _chinchilla_grid_runs()
    f = cdfast.fit_chinchilla_law(N, D, L, n_starts=4)
    assert (f.E, f.A, f.B, f.alpha, f.beta) == pytest.approx(tuple(TRUTH.values()), rel=1e-6)
    assert f.objective < 1e-15 and f.r2 == pytest.approx(1.0) and f.max_rel_error < 1e-8
    assert (f.n, f.n_starts, f.delta) == (36, 4, 1e-3)
    # predict is the formula, broadcast over N and D
    Nq, Dq = 3e10, np.array([1e11, 1e12])
    expect = TRUTH["E"] + TRUTH["A"] / Nq**TRUTH["alpha"] + TRUTH["B"] / Dq**TRUTH["beta"]
    np.testing.assert_allclose(f.predict(Nq, Dq), expect, rtol=1e-6)
    assert "ChinchillaFit" in f.summary()


def test_chinchilla_law_is_robust_and_minimises_the_huber_objective():
    N, D, L = _chinchilla_grid_runs()
    rng = np.random.default_rng(1)
    y = L * np.exp(2e-3 * rng.standard_normal(L.size))
    y[[3, 17, 30]] *= 1.15  # three runs 15% off: the Huber loss caps their pull
    f = cdfast.fit_chinchilla_law(N, D, y, n_starts=4)
    # no worse than the truth on its own objective (literal formula above)...
    fitted = _huber_sum(f.E, f.A, f.B, f.alpha, f.beta, N, D, y)
    assert f.objective == pytest.approx(fitted, rel=1e-9)
    assert fitted <= _huber_sum(*TRUTH.values(), N, D, y)
    # ...and close to it despite the outliers
    assert f.E == pytest.approx(TRUTH["E"], rel=0.02)
    assert (f.alpha, f.beta) == pytest.approx((TRUTH["alpha"], TRUTH["beta"]), rel=0.03)
    # a plain least-squares fit of the same form is pulled away by the outliers
    from scipy.optimize import curve_fit
    p, _ = curve_fit(lambda x, E, A, B, a, b: E + A / x[0]**a + B / x[1]**b, (N, D), y,
                     p0=tuple(TRUTH.values()), maxfev=20000)
    assert abs(f.E - TRUTH["E"]) < abs(p[0] - TRUTH["E"])


def test_chinchilla_law_starts():
    N, D, L = _chinchilla_grid_runs()
    assert cdfast.laws.CHINCHILLA_GRID.shape == (4500, 5)  # 6 x 6 x 5 x 5 x 5 (Hoffmann et al.)
    truth = [np.log(TRUTH["A"]), np.log(TRUTH["B"]), np.log(TRUTH["E"]), TRUTH["alpha"], TRUTH["beta"]]
    f = cdfast.fit_chinchilla_law(N, D, L, starts=truth)  # one row: already the optimum
    assert f.n_starts == 1 and f.alpha == pytest.approx(TRUTH["alpha"], rel=1e-9)
    grid = np.array([[0.0, 0.0, 0.0, 0.5, 0.5], [5.0, 5.0, 0.5, 0.5, 0.5], [8.0, 8.0, 0.5, 0.3, 0.3]])
    g = cdfast.fit_chinchilla_law(N, D, L, starts=grid, n_starts=None)
    assert g.n_starts == 3


def test_chinchilla_law_errors():
    N, D, L = _chinchilla_grid_runs()
    with pytest.raises(ValueError, match=r"N\[1\] = 0"):
        cdfast.fit_chinchilla_law(np.r_[N[0], 0.0, N[2:]], D, L)
    with pytest.raises(ValueError, match=r"D\[2\]"):
        cdfast.fit_chinchilla_law(N, np.r_[D[:2], -1.0, D[3:]], L)
    with pytest.raises(ValueError, match=r"loss\[0\]"):
        cdfast.fit_chinchilla_law(N, D, np.r_[np.nan, L[1:]])
    with pytest.raises(ValueError, match="one entry per run"):
        cdfast.fit_chinchilla_law(N, D[:-1], L)
    with pytest.raises(ValueError, match="at least 5 runs"):
        cdfast.fit_chinchilla_law(N[:4], D[:4], L[:4])
    with pytest.raises(ValueError, match="2 distinct model sizes"):
        cdfast.fit_chinchilla_law(np.full(6, 1e9), D[:6], L[:6])
    with pytest.raises(ValueError, match="delta"):
        cdfast.fit_chinchilla_law(N, D, L, delta=0.0)
    with pytest.raises(ValueError, match=r"shape \(k, 5\)"):
        cdfast.fit_chinchilla_law(N, D, L, starts=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="n_starts"):
        cdfast.fit_chinchilla_law(N, D, L, n_starts=0)
    with pytest.raises(TypeError, match="N must hold real numbers"):
        cdfast.fit_chinchilla_law(["a"] * 36, D, L)
    f = cdfast.fit_chinchilla_law(N, D, L, starts=[np.log(406.4), np.log(410.7), np.log(1.69), 0.34, 0.28])
    with pytest.raises(ValueError, match=r"N\[0\] = -1"):
        f.predict(-1.0, 1e9)


def test_chinchilla_law_reproduces_the_published_replication():
    """Besiroglu et al. (2024), Table 1: E = 1.8172, A = 482.01, B = 2085.43, alpha = 0.3478,
    beta = 0.3658, from the same runs less the 5 with the highest loss.  Their optimiser's
    stopping point differs slightly along the law's flat B-beta direction."""
    N, tokens, L = _chinchilla()
    keep = L < np.sort(L)[-5]
    f = cdfast.fit_chinchilla_law(N[keep], tokens[keep], L[keep], n_starts=1)  # the best-ranked grid start
    assert f.n == 240
    assert f.E == pytest.approx(1.8172, rel=1e-3)
    assert (f.alpha, f.beta) == pytest.approx((0.3478, 0.3658), rel=1e-2)
    assert f.A == pytest.approx(482.01, rel=2e-2)
    assert f.B == pytest.approx(2085.43, rel=5e-2)
    # started at the published values, the optimiser finds the same optimum
    g = cdfast.fit_chinchilla_law(N[keep], tokens[keep], L[keep],
                                  starts=[np.log(482.01), np.log(2085.43), np.log(1.8172), 0.3478, 0.3658])
    assert g.objective == pytest.approx(f.objective, rel=1e-9)
    assert (g.E, g.alpha, g.beta) == pytest.approx((f.E, f.alpha, f.beta), rel=1e-4)
