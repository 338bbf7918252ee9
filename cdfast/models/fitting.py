"""One fitting routine for every separable loss model (variable projection).

A model is ``L(tau) = Phi(tau; theta) @ c`` (:mod:`cdfast.models.base`).  For a fixed shape
``theta`` the best coefficients ``c`` solve a bounded linear least-squares problem
(:func:`scipy.optimize.lsq_linear`, BVLS), so the search runs over ``theta`` alone (a few
dimensions) on the *profiled* residuals (Golub and Pereyra's variable projection):

    r(theta) = [ w_r (Phi_r(theta) c*(theta) - y_r) / y_r  for every run r ;
                 PRIOR_NOISE (theta_k - center_k) / width_k  for every shape prior ]

* Residuals are relative (``pred / y - 1``): losses of different runs and phases are
  compared on one scale.  Each run is weighted ``w_r = 1 / sqrt(n_r)`` (``n_r`` its fitted
  points), so a run counts once however densely it was logged.
* Priors (:class:`cdfast.models.base.Param.prior`) are Gaussian on the search scale (log
  for ``log`` parameters).  Priors on a linear combination of the coefficients
  (:class:`CoefPrior`, e.g. the noise term's size, :mod:`cdfast.models.gain`) are rows of
  the bounded linear solve, each a relative residual like a data point's.  ``PRIOR_NOISE`` makes one prior width cost as much as a 0.1%
  root-mean-square misfit of one run: negligible where the data decide a parameter,
  decisive where they cannot (half a run, one short run).
* The search is :func:`scipy.optimize.least_squares` (trust region reflective, bounds,
  finite-difference Jacobian) from the best ``model.local_starts`` of the model's start values (each
  parameter's ``start`` values varied one at a time around the first ones), the profile
  being non-convex in ``theta``.  It runs on :meth:`LossModel.search_basis` (possibly a
  cheap surrogate); a model with a surrogate is then polished by *defect correction*: the
  exact :meth:`LossModel.basis` is evaluated once at the surrogate's optimum, the surrogate
  is multiplied column by column by ``exact / surrogate`` there (so it is exact at that
  point and keeps its own, nearly exact, slope), and the search is repeated from the same
  point on the corrected surrogate, until a round moves the shape by less than
  ``POLISH_TOL`` (at most ``POLISH_ROUNDS`` rounds); the result is re-solved on the exact
  basis.  A model whose surrogate costs as much as its basis (``polish = "exact"``) is
  polished by a few trust-region steps on the exact basis instead.  Each round costs one exact evaluation (for the convex
  models one O(T M) kernel pass per run) where trust-region steps on the exact basis with
  a finite-difference Jacobian cost one per step and per shape parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.optimize import least_squares, lsq_linear

from .base import FloatArray, LossModel

__all__ = ["SeparableFit", "CoefPrior", "fit_separable", "bounded_lstsq", "PRIOR_NOISE"]

#: Misfit scale that one prior width costs (a relative loss error of 0.1%, about the
#: evaluation noise of a logged validation loss).
PRIOR_NOISE = 1e-3
#: The gradient test of the searches: tighter than scipy's default, which
#: stops at once on curves that a model fits to 1e-4 (the residuals, hence gradients, are tiny).
TOLERANCES = dict(gtol=1e-12)
#: Defect-correction rounds that polish a surrogate search's optimum (module docstring):
#: one exact basis evaluation each, until a round moves the shape (on the search scale)
#: by less than POLISH_TOL.  The rounds converge linearly (the corrected surrogate's slope
#: keeps the interpolant's small error): power-bound's p moves 2e-4 in its first round and
#: stops; sat-bound's log eta_c, on a wider interpolation range, moves 0.1, 0.01, 0.001.  On
#: 80 real fits of every protocol of bench/validate_predictions.py the predictions agree
#: with six trust-region steps on the exact basis to 4e-5% (median; 0.04% at most, where
#: the multi-start's surrogate ranked another local optimum first), at a third of the
#: exact evaluations.
POLISH_ROUNDS = 3
POLISH_TOL = 1e-3
#: Evaluations of the exact basis for a model whose surrogate is as costly as its basis
#: (``LossModel.polish = "exact"``, e.g. MPL's looser quadrature): a few trust-region steps
#: from the nearby optimum, on the exact basis.
POLISH_NFEV = 6
#: Residual used for a shape at which some fitted step has a non-finite basis value.
_BAD = 1e3


def bounded_lstsq(A: FloatArray, b: FloatArray, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """``argmin |A x - b|`` with ``lo <= x <= hi``: :func:`scipy.optimize.lsq_linear` (BVLS), bit for bit.

    lsq_linear's own first step is the unconstrained ``lstsq(A, b, rcond=-1)``, returned as
    it is when it lies within the bounds (the problem is convex, so it is then the bounded
    optimum too).  Taken here first, that step skips lsq_linear's argument handling, which
    costs three times the solve on the few-column problems of a fit (about 70 of 95
    microseconds, over a hundred solves per fit); the bounded solve runs only when needed.
    """
    x = np.linalg.lstsq(A, b, rcond=-1)[0]
    if np.all((x >= lo) & (x <= hi)):
        return x
    return lsq_linear(A, b, bounds=(lo, hi), method="bvls").x


@dataclass(frozen=True)
class CoefPrior:
    """A prior ``row(theta) @ c ~ target`` on the linear coefficients ``c``, with relative width
    ``PRIOR_NOISE / weight``: the residual ``weight * (row(theta) @ c / target - 1)`` joins the
    data's (whose weights square-sum to 1 per run) in the bounded linear solve."""

    row: Callable[[FloatArray], FloatArray]
    target: float
    weight: float


@dataclass(frozen=True)
class SeparableFit:
    """Result of :func:`fit_separable`.

    ``theta`` holds every shape parameter (fixed ones too), ``coefs`` the linear
    coefficients, ``cost`` the final value of ``sum(r**2)`` (data and prior parts),
    ``misfit`` the data part alone, ``at_bound`` the names of parameters on a bound.
    """

    theta: FloatArray
    coefs: FloatArray
    cost: float
    misfit: float
    nfev: int
    at_bound: tuple[str, ...]
    converged: bool


class _Problem:
    """The profiled residual of one fit (data held, basis evaluated per theta)."""

    def __init__(self, model: LossModel, preps: Sequence[Any], ys: Sequence[FloatArray],
                 masks: Sequence[np.ndarray], prior: bool, centers: dict[str, float] | None = None,
                 point_weights: Sequence[FloatArray] | None = None, coef_priors: Sequence[CoefPrior] = ()) -> None:
        self.model = model
        self.coef_priors = tuple(coef_priors)
        self.preps = list(preps)
        self.ys = [np.asarray(y, dtype=np.float64)[m] for y, m in zip(ys, masks)]
        self.masks = [np.asarray(m, dtype=bool) for m in masks]
        if point_weights is None:
            self.weights = [np.full(int(m.sum()), 1.0 / math.sqrt(max(int(m.sum()), 1))) for m in self.masks]
        else:  # relative weights within each run, normalised so that every run still counts once
            self.weights = []
            for pw, m in zip(point_weights, self.masks):
                w = np.asarray(pw, dtype=np.float64)[m]
                self.weights.append(np.sqrt(w / w.sum()) if w.sum() > 0 else w)
        self.lo = np.array([p.lo for p in model.coefs], dtype=np.float64)
        self.hi = np.array([p.hi for p in model.coefs], dtype=np.float64)
        shape = model.shape
        self.free = [i for i, p in enumerate(shape) if not p.fixed]
        self.base = np.array([p.lo if p.fixed else (p.start[0] if p.start else 0.5 * (p.lo + p.hi))
                              for p in shape], dtype=np.float64)
        self.log = np.array([shape[i].log for i in self.free], dtype=bool)
        lo = np.array([shape[i].lo for i in self.free], dtype=np.float64)
        hi = np.array([shape[i].hi for i in self.free], dtype=np.float64)
        self.zlo = np.where(self.log, np.log(np.where(self.log, lo, 1.0)), lo)
        self.zhi = np.where(self.log, np.log(np.where(self.log, hi, 1.0)), hi)
        centers = centers or {}
        self.priors = [(k, (centers.get(shape[i].name, shape[i].prior[0]), shape[i].prior[1]))
                       for k, i in enumerate(self.free) if prior and shape[i].prior is not None]
        self.n_data = sum(int(m.sum()) for m in self.masks)  # data residuals (the coefficient priors' follow)
        self.nfev = 0
        self.exact = False  # residuals on the search basis (until an exact polish)
        self.factors: list[FloatArray] | None = None  # defect correction of the search basis, per run

    # -- coordinates --------------------------------------------------------

    def theta(self, z: FloatArray) -> FloatArray:
        th = self.base.copy()
        z = np.clip(z, self.zlo, self.zhi)
        th[self.free] = np.where(self.log, np.exp(z), z)
        return th

    def z_of(self, theta: FloatArray) -> FloatArray:
        t = np.asarray(theta, dtype=np.float64)[self.free]
        return np.where(self.log, np.log(np.where(self.log, t, 1.0)), t)

    # -- the profiled problem -----------------------------------------------

    def design(self, theta: FloatArray, exact: bool) -> tuple[FloatArray, FloatArray] | None:
        rows, targets = [], []
        for r, (prep, y, m, w) in enumerate(zip(self.preps, self.ys, self.masks, self.weights)):
            phi = self.model.basis(theta, prep) if exact else self.model.search_basis(theta, prep)
            phi = np.asarray(phi, dtype=np.float64)[m]
            if not exact and self.factors is not None:
                phi = phi * self.factors[r]
            rows.append(phi * (w / y)[:, None])
            targets.append(w)
        for p in self.coef_priors:
            rows.append(np.asarray(p.row(theta), dtype=np.float64)[None, :] * (p.weight / p.target))
            targets.append(np.array([p.weight]))
        A = np.vstack(rows)
        if not np.all(np.isfinite(A)):
            return None
        return A, np.concatenate(targets)

    def solve(self, theta: FloatArray, exact: bool = False) -> tuple[FloatArray, FloatArray | None]:
        """(data residuals, coefficients) at ``theta``; coefficients None if the basis is not finite."""
        self.nfev += 1
        got = self.design(theta, exact)
        if got is None:
            return np.full(self.n_data + len(self.coef_priors), _BAD), None
        A, t = got
        scale = np.max(np.abs(A), axis=0)
        scale[scale == 0.0] = 1.0
        c = bounded_lstsq(A / scale, t, self.lo * scale, self.hi * scale) / scale
        return A @ c - t, c

    def correct(self, z: FloatArray) -> None:
        """Make the search basis exact at ``z``: scale it by ``exact / search`` there, column by column."""
        theta = self.theta(z)
        self.factors = None
        self.nfev += 1
        out = []
        for prep, m in zip(self.preps, self.masks):
            ex = np.asarray(self.model.basis(theta, prep), dtype=np.float64)[m]
            su = np.asarray(self.model.search_basis(theta, prep), dtype=np.float64)[m]
            with np.errstate(divide="ignore", invalid="ignore"):
                f = ex / su
            # where either is 0 or not finite the surrogate is left as it is (an infinite step stays infinite)
            out.append(np.where(np.isfinite(f) & (su != 0.0), f, 1.0))
        self.factors = out

    def prior_residuals(self, z: FloatArray) -> FloatArray:
        return np.array([PRIOR_NOISE * (z[k] - center) / width for k, (center, width) in self.priors])

    def residuals(self, z: FloatArray) -> FloatArray:
        r, _ = self.solve(self.theta(z), self.exact)
        return np.concatenate([r, self.prior_residuals(z)]) if self.priors else r

    def cost(self, z: FloatArray) -> float:
        return float(np.sum(self.residuals(z) ** 2))

    # -- starts -------------------------------------------------------------

    def starts(self) -> list[FloatArray]:
        shape = self.model.shape
        first = [shape[i].start[0] if shape[i].start else self.base[i] for i in self.free]
        cands = [list(first)]
        for k, i in enumerate(self.free):  # vary one parameter at a time through its starts
            for v in shape[i].start[1:]:
                c = list(first)
                c[k] = v
                cands.append(c)
        prior_center = list(first)
        for k, (center, _) in self.priors:
            prior_center[k] = math.exp(center) if self.log[k] else center
        cands.append(prior_center)
        out: list[FloatArray] = []
        for c in cands:
            z = np.clip(self.z_of(self._full(c)), self.zlo, self.zhi)
            if not any(np.array_equal(z, o) for o in out):
                out.append(z)
        return out

    def _full(self, free_values: list[float]) -> FloatArray:
        th = self.base.copy()
        th[self.free] = free_values
        return th


def fit_separable(model: LossModel, preps: Sequence[Any], ys: Sequence[FloatArray],
                  masks: Sequence[np.ndarray], *, prior: bool = True, start: FloatArray | None = None,
                  centers: dict[str, float] | None = None, exact: bool = True,
                  point_weights: Sequence[FloatArray] | None = None,
                  coef_priors: Sequence[CoefPrior] = ()) -> SeparableFit:
    """Fit ``model`` to several runs at once (shared parameters); see the module docstring.

    Parameters
    ----------
    model : LossModel
    preps : list
        ``model.prepare(lr, steps, grad_sq)`` of each run.
    ys : list of ndarray
        Each run's losses at its prepared steps (positive: residuals are relative).
    masks : list of bool ndarray
        The points of each run that are fitted (the rest are ignored here).
    prior : bool
        Use the shape parameters' priors (``Param.prior``).
    start : ndarray, optional
        A shape vector to search from instead of the multi-start (refits of a bootstrap).
    centers : dict, optional
        Prior centers to use instead of the parameters' own (on the search scale), by name.
    exact : bool
        Finish on the exact basis (True) or keep the search basis (faster, for refits).
    point_weights : list of ndarray, optional
        Relative weights of each run's points (normalised per run).
    coef_priors : sequence of CoefPrior
        Priors on linear combinations of the coefficients (module docstring).
    """
    prob = _Problem(model, preps, ys, masks, prior, centers, point_weights, coef_priors)
    if not prob.free:
        theta = prob.base.copy()
        r, c = prob.solve(theta, exact=True)
        if c is None:
            raise ValueError(f"model {model.name!r}: the basis is not finite at a fitted step; exclude such steps")
        data = r[:prob.n_data]
        return SeparableFit(theta, c, float(r @ r), float(data @ data), prob.nfev, _coefs_at_bound(model, c), True)
    starts = prob.starts() if start is None else [np.clip(prob.z_of(start), prob.zlo, prob.zhi)]
    ranked = sorted(((prob.cost(z), i, z) for i, z in enumerate(starts)), key=lambda t: t[:2])
    best: tuple[float, FloatArray, bool] | None = None
    for cost0, _, z0 in ranked[:model.local_starts]:
        if not math.isfinite(cost0):
            continue
        out = least_squares(prob.residuals, z0, bounds=(prob.zlo, prob.zhi), method="trf",
                            diff_step=1e-6, x_scale="jac", max_nfev=200, **TOLERANCES)
        cost = 2.0 * float(out.cost)
        if best is None or cost < best[0]:
            best = (cost, out.x, bool(out.status > 0))
    if best is None:
        raise ValueError(f"model {model.name!r}: no start value gives a finite fit; check the data "
                         "(losses must be positive and the model finite at every fitted step)")
    _, z, converged = best
    if exact and model.has_surrogate and model.polish == "exact":  # a few trust-region steps on the exact basis
        prob.exact = True
        out = least_squares(prob.residuals, z, bounds=(prob.zlo, prob.zhi), method="trf",
                            diff_step=1e-6, x_scale="jac", max_nfev=POLISH_NFEV, **TOLERANCES)
        z, converged = out.x, bool(out.status > 0)
    elif exact and model.has_surrogate:  # polish the surrogate's optimum by defect correction (module docstring)
        for _ in range(POLISH_ROUNDS):
            prob.correct(z)
            out = least_squares(prob.residuals, z, bounds=(prob.zlo, prob.zhi), method="trf",
                                diff_step=1e-6, x_scale="jac", max_nfev=200, **TOLERANCES)
            moved = float(np.max(np.abs(out.x - z)))
            z, converged = out.x, bool(out.status > 0)
            if moved < POLISH_TOL:
                break
    theta = prob.theta(z)
    r, c = prob.solve(theta, exact=exact)
    if c is None:
        raise ValueError(f"model {model.name!r}: the fitted model is not finite at some fitted step")
    misfit = float(r[:prob.n_data] @ r[:prob.n_data])
    pr = np.concatenate([r[prob.n_data:], prob.prior_residuals(z) if prob.priors else np.empty(0)])
    names = [model.shape[i].name for k, i in enumerate(prob.free)
             if min(z[k] - prob.zlo[k], prob.zhi[k] - z[k]) <= 1e-6 * (prob.zhi[k] - prob.zlo[k])]
    return SeparableFit(theta, c, misfit + float(pr @ pr), misfit, prob.nfev,
                        tuple(names) + _coefs_at_bound(model, c), converged)


def _coefs_at_bound(model: LossModel, c: FloatArray) -> tuple[str, ...]:
    return tuple(p.name for p, v in zip(model.coefs, c)
                 if (math.isfinite(p.lo) and v <= p.lo) or (math.isfinite(p.hi) and v >= p.hi))

