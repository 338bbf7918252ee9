"""Generalizations 2 and 3: final loss as a function of the peak LR and of the horizon.

* Generalization 2 (paper eq. 4.1, from eq. 2.5): at the last iterate of a qualified
  schedule ``L(eta_peak, T) = L_inf + q1~^2 / (T eta_peak) + eta_peak q2~^2``.  Linear in
  ``(L_inf, q1~^2, q2~^2)`` with ``q1~^2, q2~^2 >= 0``: :func:`scipy.optimize.lsq_linear`.
  The optimal peak LR is ``q1~ / (q2~ sqrt(T))``; its uncertainty comes from a case
  bootstrap over the runs (:func:`scipy.stats.bootstrap`, percentile intervals).
* Generalization 3: at the optimal peak LR ``L(T) = L_inf + k / sqrt(T)`` with
  ``k = 2 q1~ q2~``: a straight line in ``1/sqrt(T)`` (ordinary least squares,
  :func:`scipy.stats.linregress`).  ``T`` may count steps or tokens.
* For comparison, the Chinchilla law of Hoffmann et al. (2022, Approach 3)
  ``L(N, D) = E + A / N^alpha + B / D^beta`` in model size and tokens, fitted as they and
  Besiroglu et al. (2024) do: Huber loss on log residuals from a grid of starting points,
  :func:`scipy.optimize.minimize` (BFGS).
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import lsq_linear, minimize
from scipy.special import huber
from scipy.stats import bootstrap, linregress

from ._validate import as_vector, check_values
from .fit import r_squared

FloatArray = NDArray[np.float64]

__all__ = ["PeakLRFit", "fit_peak_lr_law", "HorizonFit", "fit_horizon_law", "fit_horizon_law_by_group",
           "ChinchillaFit", "fit_chinchilla_law", "CHINCHILLA_GRID"]


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
    with np.errstate(over="ignore"):
        A = _peak_design(eta, Tv)
    if not np.all(np.isfinite(A)):
        i = int(np.argmax(~np.isfinite(A).all(axis=1)))
        raise ValueError(f"peak_lr[{i}] = {float(eta[i])!r} with T = {float(Tv[i]):g}: 1 / (T * peak_lr) overflows "
                         "float64; give the peak LRs in their usual units")
    theta = _peak_solve(A, y)
    pred = A @ theta
    boot = _case_bootstrap(A, y, int(n_boot), seed)
    return PeakLRFit(
        L_inf=float(theta[0]), q1_sq=float(theta[1]), q2_sq=float(theta[2]),
        r2=r_squared(y, pred), max_rel_error=_max_rel_error(pred, y),
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
        if self.n <= 2:
            return (f"HorizonFit: L = {self.L_inf:.4f} + {self.k:.4g}/sqrt(T)  ({self.n} horizons: the two "
                    "constants are determined exactly, so R^2 = 1 says nothing and there are no standard errors)")
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
    scale = float(np.max(np.abs(y))) or 1.0  # losses near 1e300 would overflow the sums of squares
    res = linregress(x, y / scale)
    res_intercept, res_slope = res.intercept * scale, res.slope * scale
    pred = res_intercept + res_slope * x
    se = y.size > 2
    if not se:
        warnings.warn("fit_horizon_law: two runs determine L_inf and k exactly, so the fit has no standard "
                      "errors (L_inf_se and k_se are nan) and R^2 = 1 by construction; add a third horizon to "
                      "test the law", UserWarning, stacklevel=2)
    return HorizonFit(
        L_inf=float(res_intercept), k=float(res_slope), r2=r_squared(y, pred),
        max_rel_error=_max_rel_error(pred, y), n=int(y.size),
        L_inf_se=float(res.intercept_stderr * scale) if se else float("nan"),
        k_se=float(res.stderr * scale) if se else float("nan"),
    )


def _max_rel_error(pred: FloatArray, y: FloatArray) -> float:
    """``max |pred - y| / |y|``; a zero loss matched exactly counts 0, missed counts inf."""
    err = np.abs(pred - y)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(y != 0.0, err / np.abs(np.where(y != 0.0, y, 1.0)), np.where(err == 0.0, 0.0, np.inf))
    return float(np.max(rel))


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


# ---------------------------------------------------------------------------
# The Chinchilla law (Hoffmann et al. 2022, Approach 3), for comparison


def _grid() -> FloatArray:
    axes = (np.arange(0.0, 30.0, 5.0), np.arange(0.0, 30.0, 5.0), np.arange(-1.0, 1.5, 0.5),
            np.arange(0.0, 2.5, 0.5), np.arange(0.0, 2.5, 0.5))
    g = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 5)
    g.flags.writeable = False
    return g


#: Hoffmann et al.'s grid of starting points, one row ``(log A, log B, log E, alpha, beta)``
#: per start: ``log A, log B`` in {0, 5, ..., 25}, ``log E`` in {-1, -0.5, ..., 1},
#: ``alpha, beta`` in {0, 0.5, ..., 2} (4500 rows).
CHINCHILLA_GRID: FloatArray = _grid()

# BFGS, the full-memory form of Hoffmann et al.'s L-BFGS (the law has five parameters).
# scipy's L-BFGS-B reaches the same optima but was far slower on a busy two-core
# machine: its small dense LAPACK calls wait on BLAS threads.  The gradient tolerance
# applies to the objective divided by delta (a sum of O(|r|/delta) terms, so of order
# one per run); tight, since the law's B-beta direction is flat and it costs little.
_BFGS_OPTIONS = {"gtol": 1e-9, "maxiter": 10_000}
_SCREEN_CHUNK = 1 << 20  # grid rows x runs evaluated at once when ranking the starts


def _chinchilla_objective(theta: FloatArray, logN: FloatArray, logD: FloatArray, logy: FloatArray,
                          delta: float) -> tuple[float, FloatArray]:
    """Sum of Huber(delta) of the log residuals, divided by delta, and its gradient.

    ``log L_hat = log(E + A N^-alpha + B D^-beta)`` is a log-sum-exp of
    ``(log A - alpha log N, log B - beta log D, log E)``, shifted by its largest term;
    its derivatives with respect to the three terms are their softmax weights.
    """
    a, b, e, alpha, beta = theta
    with np.errstate(over="ignore", invalid="ignore"):  # a wild line-search step: f = inf below
        t1 = a - alpha * logN
        t2 = b - beta * logD
        m = np.maximum(np.maximum(t1, t2), e)
        w1, w2, w3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(e - m)
        s = w1 + w2 + w3
        r = m + np.log(s) - logy
        f = float(np.sum(huber(delta, r))) / delta
    if not np.isfinite(f):
        return np.inf, np.zeros(5)
    psi = np.clip(r, -delta, delta) / (delta * s)  # Huber'(r) / delta over the softmax denominator
    p1, p2 = psi * w1, psi * w2
    return f, np.array([p1.sum(), p2.sum(), psi @ w3, -(p1 @ logN), -(p2 @ logD)])


def _screen(starts: FloatArray, logN: FloatArray, logD: FloatArray, logy: FloatArray, delta: float) -> FloatArray:
    """The objective at every starting point (vectorised, in chunks)."""
    out = np.empty(starts.shape[0])
    step = max(1, _SCREEN_CHUNK // logN.size)
    for i in range(0, starts.shape[0], step):
        a, b, e, alpha, beta = (c[:, None] for c in starts[i:i + step].T)
        pred = np.logaddexp(np.logaddexp(a - alpha * logN, b - beta * logD), e)
        with np.errstate(invalid="ignore"):
            out[i:i + step] = np.sum(huber(delta, pred - logy), axis=1) / delta
    return np.where(np.isfinite(out), out, np.inf)


@dataclass(frozen=True)
class ChinchillaFit:
    """Result of :func:`fit_chinchilla_law`: ``L(N, D) = E + A / N^alpha + B / D^beta``.

    ``objective`` is the minimised sum of Huber losses of ``log L - log L_hat``;
    ``r2`` and ``max_rel_error`` describe the fit on its own runs; ``n_starts`` is the
    number of local optimisations run.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float
    r2: float
    max_rel_error: float
    n: int
    n_starts: int
    delta: float

    def predict(self, N: ArrayLike, D: ArrayLike) -> FloatArray:
        """``E + A N^-alpha + B D^-beta`` (broadcast over ``N`` and ``D``)."""
        Nb, Db = np.broadcast_arrays(np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64))
        for v, name in ((Nb, "N"), (Db, "D")):
            bad = ~np.isfinite(v) | (v <= 0)
            if bad.any():
                i = int(np.flatnonzero(bad.ravel())[0])
                raise ValueError(f"{name}[{i}] = {float(v.ravel()[i])}; model sizes and token counts must be "
                                 "finite and positive")
        return self.E + self.A * Nb ** -self.alpha + self.B * Db ** -self.beta

    def summary(self) -> str:
        return (f"ChinchillaFit: L = {self.E:.4g} + {self.A:.4g}/N^{self.alpha:.4f} + {self.B:.4g}/D^{self.beta:.4f}  "
                f"({self.n} runs, R^2 = {self.r2:.4f}, max rel. error = {self.max_rel_error:.2%})")


def fit_chinchilla_law(
    N: ArrayLike, D: ArrayLike, loss: ArrayLike, *, delta: float = 1e-3,
    starts: ArrayLike | None = None, n_starts: int | None = 64,
) -> ChinchillaFit:
    """Fit ``L(N, D) = E + A / N^alpha + B / D^beta`` (Hoffmann et al. 2022, Approach 3).

    Parameters
    ----------
    N : array_like
        Model size (parameters) of each run, > 0.
    D : array_like
        Training tokens of each run, > 0.
    loss : array_like
        Final loss of each run, > 0.
    delta : float
        Huber threshold on the log residuals (Hoffmann et al.: 1e-3).
    starts : array_like of shape (k, 5), optional
        Starting points, rows ``(log A, log B, log E, alpha, beta)``.  Default
        :data:`CHINCHILLA_GRID`, Hoffmann et al.'s grid of 4500 points.
    n_starts : int or None
        BFGS runs from the ``n_starts`` starting points with the smallest objective
        (ranked by evaluating it at every point); None runs it from every point, as
        Hoffmann et al. do (about 70x the time).  On the Chinchilla runs and on the
        splits of ``bench/validate_scaling.py`` the best of the 64 best-ranked starts
        reaches the smallest objective found from all 4500 (to 1e-12 relative).

    Returns
    -------
    ChinchillaFit
        The parameters of the lowest objective over all local optimisations.

    Notes
    -----
    The objective is ``sum_i Huber_delta(log L_hat_i - log L_i)`` with
    ``log L_hat = LSE(log A - alpha log N, log B - beta log D, log E)``, minimised over
    ``(log A, log B, log E, alpha, beta)`` by BFGS with the exact gradient (Hoffmann et
    al. 2022, Section 3.3, "Approach 3"; Besiroglu et al. 2024, "Chinchilla scaling: a
    replication attempt").  Unlike the paper's laws (eq. 4.1, 5.1) it has no learning
    rate; it is the baseline against which :class:`cdfast.ScalingLaw2D` is compared.
    Needs at least 5 runs with at least 2 distinct ``N`` and 2 distinct ``D``.

    Examples
    --------
    >>> import numpy as np
    >>> import cdfast
    >>> N, D = np.meshgrid(np.geomspace(1e8, 1e10, 5), np.geomspace(1e9, 1e11, 5))
    >>> L = 1.7 + 400.0 * N ** -0.34 + 1500.0 * D ** -0.28
    >>> fit = cdfast.fit_chinchilla_law(N.ravel(), D.ravel(), L.ravel(), n_starts=8)
    >>> print(f"{fit.E:.3f} {fit.alpha:.3f} {fit.beta:.3f}")
    1.700 0.340 0.280
    """
    Nv, Dv, y = _positive(N, "N"), _positive(D, "D"), _positive(loss, "loss")
    if not (Nv.size == Dv.size == y.size):
        raise ValueError(f"N, D and loss need one entry per run, got {Nv.size}, {Dv.size}, {y.size}")
    if y.size < 5:
        raise ValueError(f"{y.size} runs cannot determine the law's five constants; give at least 5 runs")
    for v, name, what in ((Nv, "N", "model sizes"), (Dv, "D", "token counts")):
        if np.unique(v).size < 2:
            raise ValueError(f"all {name} are equal ({v[0]:g}); the law needs at least 2 distinct {what}")
    delta = float(delta)
    if not (np.isfinite(delta) and delta > 0):
        raise ValueError(f"delta = {delta!r} must be finite and positive (Hoffmann et al. use 1e-3)")
    if starts is None:
        S = CHINCHILLA_GRID
    else:
        S = np.asarray(starts, dtype=np.float64)
        if S.ndim == 1:
            S = S[None, :]
        if S.ndim != 2 or S.shape[1] != 5 or S.shape[0] == 0:
            raise ValueError(f"starts has shape {np.shape(starts)}; give rows (log A, log B, log E, alpha, beta), "
                             "shape (k, 5)")
        if not np.all(np.isfinite(S)):
            i = int(np.argmax(~np.all(np.isfinite(S), axis=1)))
            raise ValueError(f"starts[{i}] = {S[i].tolist()} is not finite")
    if n_starts is not None and (int(n_starts) != n_starts or n_starts < 1):
        raise ValueError(f"n_starts = {n_starts!r} must be a positive integer, or None for every starting point")

    logN, logD, logy = np.log(Nv), np.log(Dv), np.log(y)
    order = np.argsort(_screen(S, logN, logD, logy, delta), kind="stable")
    chosen = order if n_starts is None else order[: int(n_starts)]
    best = None
    for k in chosen:
        res = minimize(_chinchilla_objective, S[k], args=(logN, logD, logy, delta), jac=True,
                       method="BFGS", options=_BFGS_OPTIONS)
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise ValueError("the Huber objective is not finite at any starting point; check the starts")
    a, b, e, alpha, beta = (float(v) for v in best.x)
    fit = ChinchillaFit(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta,
                        objective=float(best.fun) * delta, r2=float("nan"), max_rel_error=float("nan"),
                        n=int(y.size), n_starts=int(chosen.size), delta=delta)
    pred = fit.predict(Nv, Dv)
    return replace(fit, r2=r_squared(y, pred), max_rel_error=float(np.max(np.abs(pred - y) / y)))
