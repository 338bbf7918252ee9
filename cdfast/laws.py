"""Generalizations 2 and 3: final loss as a function of the peak LR and of the horizon.

* Generalization 2 (paper eq. 4.1, from eq. 2.5): at the last iterate of a qualified
  schedule ``L(eta_peak, T) = L_inf + q1~^2 / (T eta_peak) + eta_peak q2~^2``.  Linear in
  ``(L_inf, q1~^2, q2~^2)`` with ``q1~^2, q2~^2 >= 0``: :func:`scipy.optimize.lsq_linear`.
  The optimal peak LR is ``q1~ / (q2~ sqrt(T))``; its uncertainty comes from a case
  bootstrap over the runs (:func:`scipy.stats.bootstrap`, percentile intervals).
* Generalization 3: at the optimal peak LR ``L(T) = L_inf + k / sqrt(T)`` with
  ``k = 2 q1~ q2~``: a straight line in ``1/sqrt(T)`` (ordinary least squares,
  :func:`scipy.stats.linregress`).  ``T`` may count steps or tokens.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import lsq_linear
from scipy.stats import bootstrap, linregress

from ._validate import as_vector, check_values
from .fit import r_squared

FloatArray = NDArray[np.float64]

__all__ = ["PeakLRFit", "fit_peak_lr_law", "HorizonFit", "fit_horizon_law", "fit_horizon_law_by_group"]


def _positive(x: ArrayLike, name: str) -> FloatArray:
    v = as_vector(x, name)
    check_values(v, name)
    if np.any(v == 0):
        i = int(np.argmax(v == 0))
        raise ValueError(f"{name}[{i}] = 0; it must be positive")
    return v


def _finite(x: ArrayLike, name: str) -> FloatArray:
    v = as_vector(x, name)
    if not np.all(np.isfinite(v)):
        i = int(np.argmax(~np.isfinite(v)))
        raise ValueError(f"{name}[{i}] is {v[i]}; drop runs without a final loss")
    return v


def _broadcast(T: ArrayLike, n: int, name: str = "T") -> FloatArray:
    arr = np.asarray(T, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    v = _positive(arr, name)
    if v.size != n:
        raise ValueError(f"{name} has {v.size} entries for {n} runs; give one per run or a single value")
    return v


# ---------------------------------------------------------------------------
# Generalization 2


def _peak_design(peak_lr: FloatArray, T: FloatArray) -> FloatArray:
    return np.column_stack([np.ones_like(peak_lr), 1.0 / (T * peak_lr), peak_lr])


def _peak_solve(A: FloatArray, y: FloatArray) -> FloatArray:
    scale = np.max(np.abs(A), axis=0)
    res = lsq_linear(A / scale, y, bounds=([-np.inf, 0.0, 0.0], [np.inf] * 3), method="bvls")
    return res.x / scale


@dataclass(frozen=True)
class PeakLRFit:
    """Result of :func:`fit_peak_lr_law`: ``L = L_inf + q1_sq/(T eta) + eta q2_sq``.

    ``bootstrap`` holds the parameters refitted on resampled runs, one row
    ``(L_inf, q1_sq, q2_sq)`` per replicate.
    """

    L_inf: float
    q1_sq: float
    q2_sq: float
    r2: float
    max_rel_error: float
    n: int
    bootstrap: FloatArray = field(repr=False)

    def predict(self, peak_lr: ArrayLike, T: ArrayLike) -> FloatArray:
        eta = np.asarray(peak_lr, dtype=np.float64)
        return self.L_inf + self.q1_sq / (np.asarray(T, dtype=np.float64) * eta) + eta * self.q2_sq

    def optimal_peak_lr(self, T: float) -> float:
        """``q1~ / (q2~ sqrt(T))`` (inf if the fit found no LR penalty, q2_sq = 0)."""
        with np.errstate(divide="ignore"):
            return float(np.sqrt(self.q1_sq / (self.q2_sq * float(T))))

    def optimal_peak_lr_interval(self, T: float, level: float = 0.9) -> tuple[float, float]:
        """Percentile bootstrap interval of the optimal peak LR at horizon ``T``."""
        if not 0 < level < 1:
            raise ValueError(f"level = {level!r} must lie in (0, 1)")
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.sqrt(self.bootstrap[:, 1] / (self.bootstrap[:, 2] * float(T)))
        eta = eta[~np.isnan(eta)]
        lo, hi = np.quantile(eta, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    def optimal_loss(self, T: float) -> float:
        """``L_inf + 2 q1~ q2~ / sqrt(T)``: the law's loss at the optimal peak LR."""
        return float(self.L_inf + 2.0 * np.sqrt(self.q1_sq * self.q2_sq / float(T)))

    def summary(self) -> str:
        return (f"PeakLRFit: L = {self.L_inf:.6g} + {self.q1_sq:.6g}/(T eta) + {self.q2_sq:.6g} eta  "
                f"({self.n} runs, R^2 = {self.r2:.4f}, max rel. error = {self.max_rel_error:.2%})")


def _case_bootstrap(A: FloatArray, y: FloatArray, n_boot: int, seed: int | None) -> FloatArray:
    """``(n_boot, 3)`` refits on runs resampled with replacement (:func:`scipy.stats.bootstrap`)."""
    if n_boot < 1:
        raise ValueError(f"n_boot = {n_boot} must be >= 1 (bootstrap replicates for the intervals)")
    rng = np.random.default_rng(seed)
    # scipy >= 1.15 names the generator `rng`; older versions `random_state`
    key = "rng" if "rng" in inspect.signature(bootstrap).parameters else "random_state"
    # the statistic refits the law on the resampled runs (a case bootstrap: paired
    # resampling of the run indices); only the replicates are used, for the percentile
    # intervals of derived quantities such as the optimal peak LR
    res = bootstrap((np.arange(y.size),), lambda idx: _peak_solve(A[idx], y[idx]), n_resamples=n_boot,
                    vectorized=False, paired=True, method="percentile", **{key: rng})
    return np.ascontiguousarray(np.asarray(res.bootstrap_distribution, dtype=np.float64).T)


def fit_peak_lr_law(
    peak_lr: ArrayLike, T: ArrayLike, loss: ArrayLike, *, n_boot: int = 1000, seed: int | None = 0
) -> PeakLRFit:
    """Fit Generalization 2 to the final losses of a sweep of peak LRs (and horizons).

    Parameters
    ----------
    peak_lr : array_like
        Peak learning rate of each run (> 0).
    T : float or array_like
        Horizon of each run (> 0), or one value for all.
    loss : array_like
        Final loss of each run.
    n_boot : int
        Bootstrap replicates (runs resampled with replacement) for the intervals.
    seed : int or None
        Seed of the bootstrap's random generator.

    Notes
    -----
    Paper eq. (4.1) (Generalization 2), the data-driven form of eq. (2.5); the optimum
    ``eta* = q1~/(q2~ sqrt(T))`` is Corollary 2.4's ``eta_ref* = q1/q2``.  Needs at least
    3 runs with at least 3 distinct ``T * peak_lr`` or ``peak_lr`` values.
    """
    eta = _positive(peak_lr, "peak_lr")
    y = _finite(loss, "loss")
    if y.size != eta.size:
        raise ValueError(f"loss has {y.size} entries for {eta.size} peak LRs; give one final loss per run")
    Tv = _broadcast(T, eta.size)
    if eta.size < 3:
        raise ValueError(f"{eta.size} runs cannot determine three constants; sweep at least 3 peak LRs")
    A = _peak_design(eta, Tv)
    theta = _peak_solve(A, y)
    pred = A @ theta
    boot = _case_bootstrap(A, y, int(n_boot), seed)
    return PeakLRFit(
        L_inf=float(theta[0]), q1_sq=float(theta[1]), q2_sq=float(theta[2]),
        r2=r_squared(y, pred), max_rel_error=float(np.max(np.abs(pred - y) / np.abs(y))),
        n=int(y.size), bootstrap=boot,
    )


# ---------------------------------------------------------------------------
# Generalization 3


@dataclass(frozen=True)
class HorizonFit:
    """Result of :func:`fit_horizon_law`: ``L(T) = L_inf + k / sqrt(T)``.

    ``L_inf_se`` and ``k_se`` are the least-squares standard errors (nan for 2 points).
    """

    L_inf: float
    k: float
    r2: float
    max_rel_error: float
    n: int
    L_inf_se: float
    k_se: float

    def predict(self, horizon: ArrayLike) -> FloatArray:
        return self.L_inf + self.k / np.sqrt(np.asarray(horizon, dtype=np.float64))

    def summary(self) -> str:
        return (f"HorizonFit: L = {self.L_inf:.4f} + {self.k:.4g}/sqrt(T)  ({self.n} horizons, "
                f"R^2 = {self.r2:.4f}, max rel. error = {self.max_rel_error:.2%})")


def fit_horizon_law(horizon: ArrayLike, loss: ArrayLike) -> HorizonFit:
    """Fit Generalization 3, ``L(T) = L_inf + k / sqrt(T)``, by least squares.

    Parameters
    ----------
    horizon : array_like
        Horizons (steps or tokens), > 0, at least two distinct values.
    loss : array_like
        Final loss of each run (at its best peak LR, or on a ``eta_ref/sqrt(T)`` line).

    Notes
    -----
    Generalization 3 of the paper (``k = 2 q1~ q2~``, from eq. 4.1 at the optimal peak
    LR), the form behind its Table 2.  R^2 is that of the line in ``1/sqrt(T)``.
    """
    h = _positive(horizon, "horizon")
    y = _finite(loss, "loss")
    if y.size != h.size:
        raise ValueError(f"loss has {y.size} entries for {h.size} horizons; give one loss per run")
    x = 1.0 / np.sqrt(h)
    if np.unique(x).size < 2:
        raise ValueError("all horizons are equal; the law needs at least two distinct horizons")
    res = linregress(x, y)
    pred = res.intercept + res.slope * x
    se = y.size > 2
    return HorizonFit(
        L_inf=float(res.intercept), k=float(res.slope), r2=r_squared(y, pred),
        max_rel_error=float(np.max(np.abs(pred - y) / np.abs(y))), n=int(y.size),
        L_inf_se=float(res.intercept_stderr) if se else float("nan"),
        k_se=float(res.stderr) if se else float("nan"),
    )


def fit_horizon_law_by_group(
    group: ArrayLike, horizon: ArrayLike, loss: ArrayLike, *, rtol: float = 1e-4, min_points: int = 3
) -> dict[float, HorizonFit]:
    """:func:`fit_horizon_law` per group (e.g. per model size), keyed by the group's mean.

    Numeric group labels within relative distance ``rtol`` of their sorted neighbour are
    merged (sizes read off a figure are not bit-identical); groups with fewer than
    ``min_points`` runs are skipped.
    """
    g = _positive(group, "group")
    h, y = as_vector(horizon, "horizon"), as_vector(loss, "loss")
    if not (g.size == h.size == y.size):
        raise ValueError(f"group, horizon and loss need equal lengths, got {g.size}, {h.size}, {y.size}")
    order = np.argsort(g, kind="stable")
    new = np.r_[True, g[order][1:] / g[order][:-1] - 1.0 > rtol]
    label = np.empty(g.size, dtype=np.int64)
    label[order] = np.cumsum(new) - 1
    out: dict[float, Any] = {}
    for k in range(int(label.max()) + 1):
        sel = label == k
        if sel.sum() >= min_points:
            out[float(g[sel].mean())] = fit_horizon_law(h[sel], y[sel])
    return out
