"""Fitting loss models to logged loss curves; predicting other schedules (public as :mod:`cdfast.fit`).

A loss model (:mod:`cdfast.models`) maps a learning-rate sequence to the loss at logged
steps (a loss logged at step ``tau`` is that of ``w_tau`` and depends on ``eta_1 ..
eta_tau``; :mod:`cdfast.io` applies each trainer's indexing).  ``fit_loss_curve(s)`` fit
one model, by default the one that predicts best on held-out runs
(:data:`cdfast.models.DEFAULT_MODEL`, chosen in ``bench/validate_predictions.py``).

``model="bound"`` is the paper's Generalization 1 (Section 3.1, eq. 3.1 on eq. 2.4),
fitted exactly as cdfast always has:

    L(tau) = L_inf + D~^2 a_tau + G~^2 b_tau,

linear in ``(L_inf, D~^2, G~^2)`` with ``D~^2, G~^2 >= 0``: a bounded linear least-squares
problem (:func:`scipy.optimize.lsq_linear`) on the coefficients of eq. (2.4) from
:func:`cdfast.bound_curve_terms`, computed once per schedule.  Its options:
``robust=True`` minimises a Huber loss of the log residuals (Hoffmann et al. 2022);
``peak_power`` lets the peak LR enter as ``eta_peak**peak_power`` (AdamW's step is not
``eta * gradient``), for joint fits across peak LRs.

Every other model is separable (linear coefficients times a basis with a few shape
parameters) and is fitted by variable projection on relative residuals, with weak priors
on the shape parameters (:mod:`cdfast.models.fitting`).  ``burn_in`` leaves the first
steps out of the fit and out of the held-out score: the early transient of a deep network
is the least convex part of training.

Steps where a model is infinite (``eta_tau = 0`` for the convex bound, or no positive LR
yet) cannot be fitted; asking to fit them raises ValueError.  Predictions there are inf.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any, Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares, lsq_linear, minimize_scalar

from .. import _validate as V
from ..curve import bound_curve_terms
from ._registry import get_model
from .annealing import AnnealingLaw
from .average import Averaged
from .base import LossModel
from .convex import moved_steps
from .fitting import PRIOR_NOISE, CoefPrior, fit_separable
from .gain import gain_priors
from .mpl import MultiPowerLaw
from .transfer import (DECAY_LEVEL, DROP_PEAK_RANGE, Extrapolation, abrupt_decays_only, decayed_at, drop_weight,
                       extrapolation, peak_taper)

FloatArray = NDArray[np.float64]

__all__ = ["CurveFit", "FitWarning", "fit_loss_curve", "fit_loss_curves", "r_squared"]


class FitWarning(UserWarning):
    """A fit that worked but looks wrong: a parameter on its bound, a poor fit."""

HUBER_DELTA = 1e-3  # Huber threshold on log residuals (Hoffmann et al. 2022)
PEAK_POWER_BOUNDS = (0.0, 2.0)  # search interval of peak_power="fit"; 1 is the paper's form


def r_squared(y: ArrayLike, yhat: ArrayLike) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``.

    Computed on ``y / max|y|`` so that losses near the float64 limit (1e300) do not
    overflow the sums of squares.  nan for fewer than 2 points or a non-finite
    prediction; for a constant ``y`` (``SS_tot = 0``) R^2 is 1 when the prediction
    equals it to rounding and nan (undefined) otherwise.
    """
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    if y.size < 2 or not (np.all(np.isfinite(y)) and np.all(np.isfinite(yhat))):
        return float("nan")
    scale = float(np.max(np.abs(y)))
    if scale == 0.0 or not math.isfinite(scale):
        scale = 1.0
    y, yhat = y / scale, yhat / scale
    with np.errstate(over="ignore"):
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        ss_res = float(np.sum((y - yhat) ** 2))
    if not math.isfinite(ss_res):
        return float("nan")
    tiny = y.size * (16.0 * np.finfo(np.float64).eps) ** 2  # rounding of values of size <= 1
    if ss_tot <= tiny:
        return 1.0 if ss_res <= tiny else float("nan")
    return 1.0 - ss_res / ss_tot


@dataclass(frozen=True)
class CurveFit:
    """A fitted loss model and the quality of the fit.

    Attributes
    ----------
    model : LossModel
        The fitted model (:mod:`cdfast.models`); ``model.name`` is its registry name.
    params : dict
        Every parameter by name: shape parameters and linear coefficients.
    r2 : float
        R^2 on the fitted points.
    r2_holdout : float
        R^2 on the held-out points: those neither fitted nor inside the burn-in, scored
        against their own mean (nan if there are fewer than 2).
    steps, loss, fitted, prediction : ndarray
        All logged steps and losses (runs concatenated for a joint fit), the mask of the
        points used for fitting, and the model at those steps.
    run : ndarray of int
        Which run each point belongs to (all 0 for a single curve).
    burned : ndarray of bool
        Points inside the burn-in (neither fitted nor held out).
    warnings : tuple of str
        What looked wrong (a parameter on its bound, a poor fit); also issued as
        :class:`FitWarning`.
    robust, peak_power :
        Options of ``model="bound"`` (Huber log-residual fit; the peak LR enters as
        ``eta_peak**peak_power``).
    divergence : tuple of ((int, float) or None), or None
        Per run, ``(step, loss)`` where it diverged, as passed to the fit (None: not told).
    """

    model: LossModel
    params: dict[str, float]
    r2: float
    r2_holdout: float
    steps: NDArray[np.int64] = field(repr=False)
    loss: FloatArray = field(repr=False)
    fitted: NDArray[np.bool_] = field(repr=False)
    prediction: FloatArray = field(repr=False)
    run: NDArray[np.int64] = field(repr=False)
    burned: NDArray[np.bool_] | None = field(default=None, repr=False)
    warnings: tuple[str, ...] = ()
    robust: bool = False
    peak_power: float = 1.0
    data: "_FitData | None" = field(default=None, repr=False, compare=False)
    divergence: tuple[tuple[int, float] | None, ...] | None = None

    @property
    def diverged(self) -> bool:
        """Whether a fitted run diverged (see ``divergence``)."""
        return any(d is not None for d in self.divergence or ())

    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def held_out(self) -> NDArray[np.bool_]:
        """Points scored as held out: not fitted and not inside the burn-in."""
        return ~self.fitted if self.burned is None else ~self.fitted & ~self.burned

    @property
    def L_inf(self) -> float:
        """The loss floor: the model's offset coefficient (``L_inf``, or ``L0`` of the peer laws;
        the mean over the members of an averaged model)."""
        if isinstance(self.model, Averaged):
            return float(sum(w * f.L_inf for w, f in zip(self.model.weights, self.data.members) if w > 0))
        return float(self.params[self.model.coefs[0].name])

    def _coef(self, name: str) -> float:
        if name not in self.params:
            raise AttributeError(f"model {self.model.name!r} has no {name}; its parameters are {sorted(self.params)}")
        return float(self.params[name])

    @property
    def D_sq(self) -> float:
        """``D~^2``, the distance-term coefficient of the convex-bound models."""
        return self._coef("D_sq")

    @property
    def G_sq(self) -> float:
        """``G~^2``, the gradient-term coefficient of the convex-bound models."""
        return self._coef("G_sq")

    @property
    def D(self) -> float:
        return float(np.sqrt(self.D_sq))

    @property
    def G(self) -> float:
        return float(np.sqrt(self.G_sq))

    @property
    def poor_fit(self) -> str | None:
        """Why the fitted model cannot be trusted to predict, or None: its fitted points' RMS
        relative error exceeds ``UNFIT_RMS`` (the model does not describe the logged curve)."""
        y, p = self.loss[self.fitted], self.prediction[self.fitted]
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = float(np.sqrt(np.mean((p / y - 1.0) ** 2))) if y.size else 0.0
        if rms <= UNFIT_RMS:
            return None
        return (f"the fitted model misses the logged losses by {100 * rms:.2g}% RMS (more than {100 * UNFIT_RMS:g}%): "
                "it does not describe this run (a loss that grows without becoming non-finite, another loss column, "
                "or learning rates that are not the run's), so it predicts nothing")

    @property
    def predicting_params(self) -> dict[str, float]:
        """:attr:`params` of the models that predict: for an averaged model, those of the
        members with a positive weight (the default's nested paper's form is fitted every time
        but predicts only when the data follow it)."""
        if not isinstance(self.model, Averaged):
            return dict(self.params)
        used = {m.name for m, w in zip(self.model.all_members, self.model.weights) if w > 0}
        return {k: v for k, v in self.params.items() if k.split(":", 1)[0] in used}

    @property
    def residuals(self) -> FloatArray:
        """``loss - prediction`` at every logged step."""
        return self.loss - self.prediction

    def _vector(self) -> FloatArray:
        return np.array([self.params[n] for n in self.model.param_names], dtype=np.float64)

    def predict(self, lr: ArrayLike, at: ArrayLike | None = None, grad_sq: ArrayLike | None = None) -> FloatArray:
        """The fitted loss curve for any LR sequence, at 1-based steps ``at`` (None = all).

        ``grad_sq`` (per-step G_t^2) must be given in the same units as for the fit.
        Steps where the model is infinite (e.g. a zero LR for the convex bound) are ``inf``.

        After an abrupt LR fall (:func:`cdfast.models.transfer.drop_weight`: more than 30% of
        the peak within 0.2% of the run, e.g. a step decay) the default model weighs in the
        multi-power law, fitted on the fitted runs at the nearest fitted peak LR the first
        time such a schedule is predicted (a second or more), with a weight that tapers off
        with the peak's distance (none from 1.25x); where it has none, or when the law cannot
        be fitted, the model's own prediction stands.
        :meth:`extrapolation` says which (docs/models.md, After an abrupt fall).
        """
        x = V.as_vector(lr, "lr")
        steps = np.arange(1, x.shape[0] + 1, dtype=np.int64) if at is None else V.as_steps(at, "at", x.shape[0])
        g = None if grad_sq is None else V.as_vector(grad_sq, "grad_sq")
        own = self._predict_own(x, steps, g)
        return own + self._after_falls(x, steps, own)

    def _predict_own(self, x: FloatArray, steps: NDArray[np.int64], g: FloatArray | None) -> FloatArray:
        if self.model.name == "bound":
            a, b = _rescale(_bound_terms(x, g, steps), x, self.peak_power)
            with np.errstate(invalid="ignore"):
                return self.L_inf + self.D_sq * a + self.G_sq * b
        prep = self.model.prepare_predict(x, steps, g)
        with np.errstate(invalid="ignore", over="ignore"):
            out = self.model.predict(self._vector(), prep)
        return np.where(np.isnan(out), np.inf, out)

    def _after_falls(self, x: FloatArray, steps: NDArray[np.int64], own: FloatArray) -> FloatArray | float:
        """What the drop peer adds to the prediction ``own`` after abrupt falls (0 mostly)."""
        if getattr(self.model, "drop_peer", None) is None or self.data is None:
            return 0.0
        w = drop_weight(x, steps)
        if not w.any():
            return 0.0
        peer, _, taper = _drop_peer(self, float(x.max()))
        if peer is None:
            return 0.0
        w = w * taper
        # the peer is evaluated only where it has weight: its loss-drop sum costs O(T M) per step
        used = w > 0
        out = np.zeros(own.shape)
        with np.errstate(invalid="ignore"):
            out[used] = w[used] * (peer._predict_own(x, steps[used], None) - own[used])
        out[~np.isfinite(out)] = 0.0  # where either model is infinite (a zero LR), the model's own
        return out

    def interval(self, lr: ArrayLike, at: ArrayLike | None = None, level: float = 0.9,
                 grad_sq: ArrayLike | None = None, n_boot: int = 200, seed: int | None = 0) -> tuple[FloatArray, FloatArray]:
        """A ``level`` prediction interval of the loss curve under ``lr`` at steps ``at``.

        Two sources of error, added in quadrature around the point prediction:

        * parameters: a bootstrap of ``n_boot`` refits.  Each replicate resamples every
          run's relative residuals in moving blocks (a tenth of the run's fitted points
          each, so the serial correlation of a loss curve is kept) and, for the models
          with priors, draws the prior centres from ``PRIOR_DRAW`` times the priors
          (randomize-then-optimize: a shape parameter the data barely determine, as in a
          prediction far beyond the fitted steps, varies with its prior, which is where
          most of the error of such an extrapolation comes from).  Refits start from the
          fitted shape and use the models' search basis; the ``(1 - level)/2`` and
          ``(1 + level)/2`` quantiles of the replicates are taken.
        * the model itself, for what no refit sees: a relative error (at 90%, scaled to
          ``level`` by normal quantiles) of

              sqrt(MODEL_ERROR^2 + (K_HORIZON * h)^2 + (K_PEAK * rho)^2 + (K_ABRUPT * e)^2),

          ``h = log(step / T_fit)`` at steps beyond the last fitted step ``T_fit`` (0
          before it, and 0 for the schedule of a fitted run itself: the refits already
          vary the continuation of a run they fit) and ``rho = |log(eta_max / peak)|`` for
          the nearest peak LR among the fitted runs, and ``e`` the largest abrupt fall of
          the LR by that step, as a fraction of its peak (:mod:`cdfast.models.transfer`;
          0.9 after a 10x step decay, 0.01 in a linear cooldown over 20% of the run).  A
          prediction for another run at a longer horizon or another peak LR, or through a
          fall no fitted run shows, errs more than one inside the fitted
          runs, and several fitted runs pin the parameters so well that their refits do
          not show it.  :meth:`extrapolation` says which of these apply.

        ``PRIOR_DRAW``, ``MODEL_ERROR``, ``K_HORIZON`` and ``K_PEAK`` are calibrated on real
        runs, ``K_ABRUPT`` on the noisy quadratic (the real runs have no abrupt falls); the
        coverage (how often the held-out loss falls inside) is reported by
        ``bench/validate_predictions.py --intervals`` and in docs/models.md.
        """
        level = V.check_scalar(level, "level")
        if not 0.0 < level < 1.0:
            raise ValueError(f"level = {level!r} must lie in (0, 1), e.g. 0.9 for a 90% interval")
        if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 20:
            raise ValueError(f"n_boot = {n_boot!r} must be an integer >= 20")
        if self.data is None:
            raise ValueError("this CurveFit carries no fit data to resample; refit it with fit_loss_curve(s)")
        x = V.as_vector(lr, "lr")
        steps = np.arange(1, x.shape[0] + 1, dtype=np.int64) if at is None else V.as_steps(at, "at", x.shape[0])
        g = None if grad_sq is None else V.as_vector(grad_sq, "grad_sq")
        reps = _bootstrap(self, x, steps, g, int(n_boot), seed)
        own = self._predict_own(x, steps, g)
        # after an abrupt fall the prediction moves by the drop peer's share; the refits (of the
        # model itself) vary around it as they vary around the model's own curve
        shift = self._after_falls(x, steps, own)
        lo, hi = np.quantile(reps, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0) + shift
        pred = own + shift
        # the model's own error, scaled from a 90% to a ``level`` interval (normal quantiles)
        z = NormalDist().inv_cdf(0.5 + level / 2.0) / NormalDist().inv_cdf(0.95)
        h, rho, fall = extrapolation(x, self.data.lrs, self.data.fitted_T).per_step(x, steps)
        extra = z * np.sqrt(MODEL_ERROR ** 2 + (K_HORIZON * h) ** 2 + (K_PEAK * rho) ** 2
                            + (K_ABRUPT * fall) ** 2) * np.abs(pred)
        with np.errstate(invalid="ignore"):
            return pred - np.hypot(np.maximum(pred - lo, 0.0), extra), pred + np.hypot(np.maximum(hi - pred, 0.0), extra)

    def extrapolation(self, lr: ArrayLike) -> Extrapolation:
        """How a prediction under ``lr`` reaches beyond the fitted runs: a longer horizon, another
        peak LR, an LR falling more abruptly than in any fitted run
        (:class:`cdfast.models.transfer.Extrapolation`; ``.notes()`` says it in words).
        :meth:`interval` widens with each of them."""
        x = V.as_vector(lr, "lr")
        V.check_values(x, "lr")
        if self.data is None:
            raise ValueError("this CurveFit carries no fit data to compare with; refit it with fit_loss_curve(s)")
        e = extrapolation(x, self.data.lrs, self.data.fitted_T)
        if getattr(self.model, "drop_peer", None) is None or not drop_weight(x, np.array([x.shape[0]])).any():
            return e
        return replace(e, after_fall=_drop_peer(self, float(x.max()))[1])

    def value_and_grad(self, lr: ArrayLike, grad_sq: ArrayLike | None = None) -> tuple[float, FloatArray]:
        """The predicted loss at the last step ``T = len(lr)`` and its gradient with respect
        to every learning rate: the protocol :func:`cdfast.optimal_schedule` (``model=``)
        optimises against.  Convex-bound models only (O(T), through
        :func:`cdfast.bound_gradient`); ``model="bound"`` with ``peak_power != 1`` and the
        peer laws raise an error saying so.  It is the model's own loss, without the law
        :meth:`predict` weighs in after an abrupt fall: the optimiser's schedules are smooth
        unless told otherwise, and ``plan`` scores its candidates with :meth:`predict`."""
        if self.model.name == "bound" and self.peak_power != 1.0:
            raise NotImplementedError("value_and_grad of a bound fit with peak_power != 1 is not implemented "
                                      "(the peak enters through max(lr)); refit with peak_power=1")
        x = V.as_vector(lr, "lr")
        g = None if grad_sq is None else V.as_vector(grad_sq, "grad_sq")
        return self.model.final_value_and_grad(self._vector(), x, g)

    def holdout_error(self) -> FloatArray:
        """Relative errors ``(prediction - loss) / loss`` at the held-out points."""
        m = self.held_out
        return (self.prediction[m] - self.loss[m]) / self.loss[m]

    def summary(self) -> str:
        n, k = self.fitted.size, int(self.fitted.sum())
        runs = int(self.run.max()) + 1 if self.run.size else 0
        if self.model.name == "bound":
            head = (f"CurveFit{' (robust)' if self.robust else ''}: L = {self.L_inf:.6g} + {self.D_sq:.6g} a_tau"
                    f" + {self.G_sq:.6g} b_tau  [D~ = {self.D:.4g}, G~ = {self.G:.4g}]"
                    + (f", peak LR power {self.peak_power:.4g}" if self.peak_power != 1.0 else ""))
        else:
            head = f"CurveFit ({self.model.name}): " + ", ".join(f"{k} = {v:.6g}"
                                                                 for k, v in self.predicting_params.items())
        lines = [head, f"  {runs} run(s), fitted on {k} of {n} logged points: R^2 = {self.r2:.5f}, "
                       f"held-out R^2 = {self.r2_holdout:.5f}"]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v:.6g}" for k, v in self.params.items())
        return f"CurveFit(model={self.model.name!r}, {inner}, r2={self.r2:.6g}, r2_holdout={self.r2_holdout:.6g})"


@dataclass(frozen=True)
class _FitData:
    """What a fit keeps to resample itself (CurveFit.interval)."""

    preps: tuple | None
    ys: tuple
    masks: tuple
    prior: bool
    theta: FloatArray
    design: FloatArray | None  # model="bound": the stacked design matrix
    robust: bool = False
    members: tuple = ()  # an averaged model: the members' fits
    weights: list | None = None  # relative point weights of the fit
    coef_priors: tuple = ()  # priors on the coefficients (the noise term's size, models.gain)
    lrs: tuple = ()  # the LRs of every run with fitted points (None where only the bound's terms were given)
    fitted_T: tuple = ()  # ... and the last fitted step of each
    cache: dict = field(default_factory=dict)  # bootstrap refits by (n_boot, seed)


def _blocks(n: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Indices of a moving-block bootstrap sample of 0..n-1 (blocks of about n/10)."""
    L = max(1, int(round(n / 10)))
    starts = rng.integers(0, n - L + 1, size=-(-n // L))
    return (starts[:, None] + np.arange(L)[None, :]).ravel()[:n]


def _replicates(fit: CurveFit, n_boot: int, seed: int | None) -> list:
    """The bootstrap refits of ``fit`` (parameter vectors, or per member for an averaged
    model), computed once per ``(n_boot, seed)`` and kept with the fit: several intervals
    of one fit (other schedules, other horizons) share them."""
    if seed is None:  # fresh randomness asked for: nothing to share
        return _refit(fit, n_boot, np.random.default_rng())
    key = (n_boot, seed)
    got = fit.data.cache.get(key)
    if got is None:
        got = _refit(fit, n_boot, np.random.default_rng(seed))
        fit.data.cache[key] = got
    return got


def _refit(fit: CurveFit, n_boot: int, rng: np.random.Generator) -> list:
    d = fit.data
    m = fit.model
    if isinstance(m, Averaged):  # paired: every used member resamples with the same random stream
        seed = int(rng.integers(0, 2**63 - 1))
        return [_refit(f, n_boot, np.random.default_rng(seed)) if w > 0 else None
                for f, w in zip(d.members, m.weights)]
    reps = []
    if m.name == "bound":  # linear: resample absolute residuals, re-solve the same design
        y, mask = fit.loss, fit.fitted
        for _ in range(n_boot):
            ystar = fit.prediction.copy()
            for r in range(int(fit.run.max()) + 1):
                sel = np.flatnonzero((fit.run == r) & mask)
                if sel.size:
                    res = (y - fit.prediction)[sel]
                    ystar[sel] = fit.prediction[sel] + res[_blocks(sel.size, rng)]
            reps.append(_solve(d.design[mask], ystar[mask], d.robust)[0])
        return reps
    preds, start = [], 0
    for y in d.ys:
        preds.append(fit.prediction[start:start + y.shape[0]])
        start += y.shape[0]
    for _ in range(n_boot):
        ys = []
        for y, p, mk in zip(d.ys, preds, d.masks):
            ystar = y.copy()
            sel = np.flatnonzero(mk)
            if sel.size:
                rel = y[sel] / p[sel] - 1.0
                ystar[sel] = p[sel] * (1.0 + rel[_blocks(sel.size, rng)])
            ys.append(ystar)
        centers = {par.name: par.prior[0] + PRIOR_DRAW * par.prior[1] * rng.standard_normal()
                   for par in m.shape if d.prior and par.prior is not None and not par.fixed}
        # the coefficient priors' centres are drawn alike (relative width PRIOR_NOISE / weight)
        cps = [CoefPrior(c.row, c.target * math.exp(COEF_PRIOR_DRAW * PRIOR_NOISE / c.weight * rng.standard_normal()),
                         c.weight) for c in d.coef_priors]
        res = fit_separable(m, d.preps, ys, d.masks, prior=d.prior, start=d.theta, centers=centers, exact=False,
                            point_weights=d.weights, coef_priors=cps)
        reps.append((res.theta, res.coefs))
    return reps


def _bootstrap(fit: CurveFit, x: FloatArray, steps: NDArray[np.int64], g: FloatArray | None, n_boot: int,
               seed: int | None) -> FloatArray:
    """Predictions of every bootstrap refit under ``x`` at ``steps``: shape (n_boot, len(steps))."""
    return _predict_replicates(fit, _replicates(fit, n_boot, seed), x, steps, g)


def _predict_replicates(fit: CurveFit, reps: list, x: FloatArray, steps: NDArray[np.int64],
                        g: FloatArray | None) -> FloatArray:
    m = fit.model
    if isinstance(m, Averaged):
        return sum(w * _predict_replicates(f, r, x, steps, g)
                   for f, r, w in zip(fit.data.members, reps, m.weights) if w > 0)
    with np.errstate(invalid="ignore", over="ignore"):
        if m.name == "bound":
            a, b = _rescale(_bound_terms(x, g, steps), x, fit.peak_power)
            target = np.column_stack([np.ones_like(a), a, b])
            return np.array([target @ theta for theta in reps])
        prep_t = m.prepare(x, steps, g)  # the search basis of the target: one prepare, cheap evaluations
        return np.array([np.asarray(m.search_basis(theta, prep_t), dtype=np.float64) @ coefs
                         for theta, coefs in reps])


# ---------------------------------------------------------------------------


def _fit_mask(fit_steps: Any, steps: NDArray[np.int64], name: str) -> NDArray[np.bool_]:
    if fit_steps is None:
        return np.ones(steps.shape, dtype=bool)
    arr = np.asarray(fit_steps)
    if arr.dtype == bool:
        if arr.shape != steps.shape:
            raise ValueError(f"{name} is a boolean mask of length {arr.size} but there are {steps.size} logged steps")
        return arr.copy()
    wanted = np.asarray(list(fit_steps) if not isinstance(fit_steps, np.ndarray) else fit_steps).astype(np.int64).ravel()
    mask = np.isin(steps, wanted)
    missing = np.setdiff1d(wanted, steps)
    if missing.size:
        raise ValueError(f"{name} contains step {missing[0]} which has no logged loss; use steps from `steps`")
    return mask


def _bound_terms(x: FloatArray, grad_sq: ArrayLike | None, at: ArrayLike | None) -> tuple[FloatArray, FloatArray]:
    """``bound_curve_terms(x, grad_sq, at)`` of the paper's model, where a step with a zero
    LR takes the terms of the last step that moved the iterate (eq. 2.4 is infinite there,
    the loss is not: :func:`cdfast.models.convex.moved_steps`)."""
    steps = np.arange(1, x.shape[0] + 1, dtype=np.int64) if at is None else V.as_steps(at, "at", x.shape[0])
    moved, expand = moved_steps(x, steps)
    if expand is None:
        return bound_curve_terms(x, grad_sq, at=at)
    a, b = bound_curve_terms(x, grad_sq, at=moved)
    return np.asarray(a, dtype=np.float64)[expand], np.asarray(b, dtype=np.float64)[expand]


def _rescale(terms: tuple[ArrayLike, ArrayLike], lr: FloatArray, peak_power: float) -> tuple[FloatArray, FloatArray]:
    """Terms of ``lr * peak**(p - 1)`` from those of ``lr``: a scales by 1/c, b by c (eq. 2.4)."""
    a, b = (np.asarray(t, dtype=np.float64) for t in terms)
    if peak_power == 1.0:
        return a, b
    c = float(lr.max()) ** (peak_power - 1.0)
    return a / c, b * c


def _solve(A: FloatArray, y: FloatArray, robust: bool) -> tuple[FloatArray, float]:
    """theta = (L_inf, D^2, G^2) minimising the (robust) misfit with D^2, G^2 >= 0, and that misfit
    (in units of ``max|y|``: losses near 1e300 would overflow its sum of squares)."""
    scale = np.max(np.abs(A), axis=0)
    scale[scale == 0] = 1.0
    As = A / scale
    y_scale = float(np.max(np.abs(y)))
    y_scale = y_scale if 0.0 < y_scale < np.inf else 1.0
    y = y / y_scale
    lo = np.array([-np.inf, 0.0, 0.0])
    res = lsq_linear(As, y, bounds=(lo, np.full(3, np.inf)), method="bvls")
    theta, cost = res.x, float(res.cost)
    if robust:
        if np.any(y <= 0):
            raise ValueError("robust=True fits log residuals and needs positive losses; use robust=False")
        lo[0] = 0.0
        start = np.maximum(theta, lo)
        start[0] = min(max(start[0], 0.0), 0.99 * float(y.min()))
        logy = np.log(y)

        def resid(p):
            return np.log(np.maximum(As @ p, 1e-300)) - logy

        def jac(p):
            return As / np.maximum(As @ p, 1e-300)[:, None]

        out = least_squares(resid, start, jac=jac, bounds=(lo, np.full(3, np.inf)), loss="huber",
                            f_scale=HUBER_DELTA, x_scale="jac", method="trf")
        theta, cost = out.x, float(out.cost)
    return theta / scale * y_scale, cost


def _burn_threshold(burn_in: int | float, T: int) -> float:
    """Last step inside the burn-in: ``burn_in`` steps, or a fraction ``burn_in`` of T."""
    if isinstance(burn_in, (bool, np.bool_)) or not isinstance(burn_in, (int, float, np.integer, np.floating)):
        raise TypeError(f"burn_in = {burn_in!r} must be a number of steps (int) or a fraction of T (float in [0, 1))")
    if isinstance(burn_in, (float, np.floating)):
        if not 0.0 <= burn_in < 1.0:
            raise ValueError(f"burn_in = {burn_in!r} as a float is a fraction of T and must lie in [0, 1); "
                             "give an int for a number of steps")
        return burn_in * T
    if burn_in < 0:
        raise ValueError(f"burn_in = {burn_in} must be >= 0 steps")
    return float(burn_in)


def _check_peak_power(peak_power: float | str) -> float | None:
    """None for "fit", else the validated exponent."""
    if isinstance(peak_power, str):
        if peak_power != "fit":
            raise ValueError(f"peak_power = {peak_power!r}; give a number (1 = the paper's form) or 'fit'")
        return None
    lo, hi = PEAK_POWER_BOUNDS
    p = V.check_scalar(peak_power, "peak_power")
    if not lo <= p <= hi:
        raise ValueError(f"peak_power = {p!r} must lie in [{lo:g}, {hi:g}] (1 = the paper's form)")
    return p


BURN_FRAC = 0.1  # burn_in="auto": this fraction of each run's horizon T (chosen on held-out runs)
POOR_RMS = 0.01  # warn when the fitted points' RMS relative error exceeds this
# CurveFit.poor_fit: above this RMS relative error the fit predicts nothing (plan, predict, report decline).
# The paper's form misfits real runs by 2-4% RMS and still predicts within its documented errors
# (docs/models.md); a loss that explodes without becoming non-finite is missed by tens of percent.
UNFIT_RMS = 0.05
WEIGHT_POWER = 1.0  # fitted points weigh (step / T)**WEIGHT_POWER within a run (later points count more)
# interval(): shape priors' centres are drawn with PRIOR_DRAW times their width (the coefficient
# priors' with COEF_PRIOR_DRAW: drawing the noise term's prior too made the intervals of half a
# run twice as wide as its errors), and a relative model error
# sqrt(MODEL_ERROR^2 + (K_HORIZON h)^2 + (K_PEAK rho)^2) is added in quadrature to the refits'
# spread.  Calibrated on the default's predictions of every real protocol of
# bench/validate_predictions.py (338 predictions; the default's 90% intervals now cover 0.93 / 1.00 /
# 0.89 / 0.91 / 0.93 of held-out final losses on A / B / M / C / D); constants chosen on half the
# predicted runs cover 0.80-0.94 on the other half (docs/models.md).
PRIOR_DRAW = 0.4
COEF_PRIOR_DRAW = 0.0
MODEL_ERROR = 0.0025
K_HORIZON = 0.01
K_PEAK = 0.01
# ... and K_ABRUPT e for an abrupt fall of the LR (models.transfer; whether or not a fitted run shows
# one: the bound's memory cannot follow it either way): the real runs have no abrupt falls, so it is set
# on the noisy quadratic of bench/synthetic_cases.py (protocol S), where the default's error right after
# a 10x drop (e = 0.9) reaches 0.9%: a floor, as a network may forget its pre-fall noise at another pace
# than the quadratic does.
K_ABRUPT = 0.01


def _fitted_T(runs: list) -> tuple:
    """The last fitted step of every run with fitted points (``_FitData.fitted_T``)."""
    return tuple(int(r[1][r[5]].max()) for r in runs if r[5].any())


def _auto_burn(burn_in: int | float | str, model: LossModel) -> int | float:
    if isinstance(burn_in, str):
        if burn_in != "auto":
            raise TypeError(f"burn_in = {burn_in!r} must be 'auto', a number of steps (int) or a fraction of T "
                            "(float in [0, 1))")
        return 0 if model.name == "bound" else BURN_FRAC
    return burn_in


def _runs(lrs, steps, losses, fit_steps, grad_sq, terms, burn_in, needs_lr):
    """Validate every run once; yield (tag, s, y, x, g, mask, burned, term)."""
    n = len(lrs)
    if n == 0 or len(steps) != n or len(losses) != n:
        raise ValueError(f"lrs, steps and losses need one entry per run, got {len(lrs)}, {len(steps)}, {len(losses)}")
    fit_steps = [None] * n if fit_steps is None else list(fit_steps)
    grad_sq = [None] * n if grad_sq is None else list(grad_sq)
    terms = [None] * n if terms is None else list(terms)
    if len(fit_steps) != n or len(grad_sq) != n or len(terms) != n:
        raise ValueError(f"fit_steps, grad_sq and terms need one entry per run ({n}), "
                         f"got {len(fit_steps)}, {len(grad_sq)} and {len(terms)}")
    out = []
    for i in range(n):
        tag = "" if n == 1 else f" (run {i})"
        s = V.as_steps(steps[i], "steps" + tag)
        y = V.as_vector(losses[i], "loss" + tag)
        if y.shape != s.shape:
            raise ValueError(f"loss{tag} has {y.size} values but steps has {s.size}; give one loss per logged step")
        if not np.all(np.isfinite(y)):
            j = int(np.argmax(~np.isfinite(y)))
            raise ValueError(f"loss{tag}[{j}] (step {s[j]}) is {y[j]}; drop unlogged points before fitting")
        x = V.as_vector(lrs[i], "lr" + tag) if (needs_lr or terms[i] is None) else None
        if x is not None and s[-1] > x.shape[0]:
            raise ValueError(f"steps{tag} go up to {s[-1]} but lr has only T = {x.shape[0]} entries; "
                             "give eta_1..eta_T up to the last logged step")
        g = None if grad_sq[i] is None else V.as_vector(grad_sq[i], "grad_sq" + tag)
        T = V.as_vector(lrs[i], "lr" + tag).shape[0] if x is None else x.shape[0]
        burned = s <= _burn_threshold(burn_in, T)
        mask = _fit_mask(fit_steps[i], s, "fit_steps" + tag) & ~burned
        out.append((tag, s, y, x, g, mask, burned, terms[i]))
    return out


def _warn(msgs: list[str]) -> tuple[str, ...]:
    for m in msgs:
        warnings.warn(m, FitWarning, stacklevel=3)
    return tuple(msgs)


def fit_loss_curves(
    lrs: Sequence[ArrayLike],
    steps: Sequence[ArrayLike],
    losses: Sequence[ArrayLike],
    *,
    model: str | LossModel | None = None,
    fit_steps: Sequence[Any] | None = None,
    grad_sq: Sequence[ArrayLike | None] | None = None,
    burn_in: int | float | str = "auto",
    prior: bool = True,
    robust: bool = False,
    terms: Sequence[tuple[ArrayLike, ArrayLike] | None] | None = None,
    peak_power: float | str = 1.0,
    divergence: Sequence[tuple[int, float] | None] | None = None,
) -> CurveFit:
    """Fit a loss model to several runs at once: they share every parameter.

    Parameters are lists with one entry per run, each as in :func:`fit_loss_curve`
    (``fit_steps[i]`` may be None to fit all of run ``i``).  The result's arrays are the
    runs' points concatenated; ``CurveFit.run`` tells them apart.  Runs that share
    constants are runs of one setup (model, data, optimizer) under different schedules,
    horizons or peak LRs.

    ``robust``, ``terms`` and ``peak_power`` are options of ``model="bound"`` only:
    ``terms[i]`` is run ``i``'s ``bound_curve_terms(lr, grad_sq, at=steps)`` computed
    beforehand (then ``grad_sq[i]`` is unused and ``lrs[i]`` only read for its length and
    peak); ``peak_power="fit"`` estimates the exponent with which the peak LR enters
    (bounded scalar search over ``PEAK_POWER_BOUNDS`` of the profiled misfit; it needs
    runs with at least two different peak LRs).

    ``divergence[i]``: ``(step, loss)`` where run ``i`` diverged (its log's
    :attr:`cdfast.io.TrainingLog.divergence`), or None; the fit then warns that it
    describes that run only up to its divergence (``.warnings``, ``.summary()``).
    """
    div, div_msgs = _divergence_messages(divergence, len(lrs) if hasattr(lrs, "__len__") else None)
    fit = _fit_loss_curves(lrs, steps, losses, model, fit_steps, grad_sq, burn_in, prior, robust, terms, peak_power)
    msgs = div_msgs + _abrupt_only(fit)
    if not msgs:
        return fit
    return replace(fit, warnings=fit.warnings + _warn(msgs), divergence=div)


def _fitted_runs(fit: CurveFit) -> list[tuple[int, FloatArray, NDArray[np.int64], FloatArray, NDArray[np.bool_]]]:
    """``(run index, lr, steps, loss, fitted mask)`` of every run with fitted points, or [] when
    the fit does not know their learning rates (runs given as the bound's terms)."""
    idx = [int(i) for i in np.unique(fit.run) if fit.fitted[fit.run == i].any()]
    lrs = () if fit.data is None else fit.data.lrs
    if len(lrs) != len(idx) or any(v is None for v in lrs):
        return []
    return [(i, v, fit.steps[fit.run == i], fit.loss[fit.run == i], fit.fitted[fit.run == i]) for i, v in zip(idx, lrs)]


def _abrupt_only(fit: CurveFit) -> list[str]:
    """The warning of :func:`cdfast.models.transfer.abrupt_decays_only` for a convex-bound fit."""
    runs = [] if isinstance(fit.model, (MultiPowerLaw, AnnealingLaw)) else _fitted_runs(fit)
    if not runs:
        return []
    msg = abrupt_decays_only([r[1] for r in runs], [r[2] for r in runs], [r[4] for r in runs],
                             [r[0] for r in runs] if len(np.unique(fit.run)) > 1 else None)
    return [] if msg is None else [msg]


def _divergence_messages(divergence: Any, n: int | None) -> tuple[tuple[Any, ...] | None, list[str]]:
    if divergence is None:
        return None, []
    divergence = list(divergence)
    if n is not None and len(divergence) != n:
        raise ValueError(f"divergence needs one entry per run ({n}), got {len(divergence)}; None for a run that "
                         "did not diverge")
    msgs, out = [], []
    for i, d in enumerate(divergence):
        if d is None:
            out.append(None)
            continue
        try:
            step, value = d
            step, value = int(step), float(value)
        except (TypeError, ValueError):
            raise TypeError(f"divergence[{i}] = {d!r} must be (step, loss) or None, as TrainingLog.divergence "
                            "gives it") from None
        out.append((step, value))
        run = "the run " if n == 1 else f"run {i} "
        msgs.append(f"{run}diverged: its loss is {value} at step {step}; the fit describes its steps before "
                    "the divergence, and predictions assume a run that keeps training normally")
    return tuple(out), msgs


def _fit_loss_curves(lrs, steps, losses, model, fit_steps, grad_sq, burn_in, prior, robust, terms,
                     peak_power) -> CurveFit:
    m = get_model(model)
    burn_in = _auto_burn(burn_in, m)
    if m.name == "bound":
        return _fit_bound(m, lrs, steps, losses, fit_steps, grad_sq, robust, terms, burn_in, peak_power)
    if robust or terms is not None or peak_power != 1.0:
        raise ValueError(f"robust, terms and peak_power are options of model='bound', not of {m.name!r}")
    if isinstance(m, Averaged):
        return _fit_averaged(m, lrs, steps, losses, fit_steps, grad_sq, burn_in, prior)
    runs = _runs(lrs, steps, losses, fit_steps, grad_sq, None, burn_in, needs_lr=True)
    n_params = len(m.coefs) + sum(not p.fixed for p in m.shape)
    n_fit = sum(int(r[5].sum()) for r in runs)
    if n_fit < n_params + 1:
        raise ValueError(f"only {n_fit} points selected for fitting (after a burn-in of {burn_in}); model {m.name!r} "
                         f"has {n_params} parameters and needs at least {n_params + 1}")
    for tag, s, y, *_ in runs:
        if np.any(y <= 0):
            j = int(np.argmax(y <= 0))
            raise ValueError(f"loss{tag}[{j}] (step {s[j]}) is {float(y[j])!r}; model {m.name!r} is fitted on relative "
                             "errors and needs positive losses (shift the losses, or use model='bound')")
    preps = [m.prepare(x, s, g) for _, s, _, x, g, *_ in runs]
    ys = [r[2] for r in runs]
    masks = [r[5] for r in runs]
    for (tag, s, y, x, g, mask, *_), prep in zip(runs, preps):
        # the cheap search basis suffices: infinite steps (a zero LR) are infinite at any shape
        bad = mask & ~np.isfinite(m.search_basis(m.shape_defaults(), prep)).all(axis=1)
        if bad.any():
            j = int(np.argmax(bad))
            raise ValueError(f"model {m.name!r} is infinite at step {s[j]}{tag} (its learning rate eta_{s[j]} is 0, "
                             "or no positive LR precedes it); exclude it with fit_steps")
    pw = None if WEIGHT_POWER == 0 else [(r[1] / r[3].shape[0]) ** WEIGHT_POWER for r in runs]
    cp = gain_priors(m, [r[3] for r in runs], [r[1] for r in runs], ys, masks) if getattr(m, "gain_prior", False) else []
    res = fit_separable(m, preps, ys, masks, prior=prior, point_weights=pw, coef_priors=cp)
    params = dict(zip(m.param_names, (*res.theta.tolist(), *res.coefs.tolist())))
    pred = np.concatenate([np.asarray(m.basis(res.theta, p), dtype=np.float64) @ res.coefs for p in preps])
    pred[~np.isfinite(pred)] = np.inf
    y, mask = np.concatenate(ys), np.concatenate(masks)
    burned = np.concatenate([r[6] for r in runs])
    held = ~mask & ~burned
    msgs = []
    for name in res.at_bound:
        msgs.append(f"parameter {name} = {params[name]:.4g} sits on its bound: the data push it outside the "
                    "model's range (a term the runs do not show, or too little data for it)")
    rms = float(np.sqrt(np.mean((pred[mask] / y[mask] - 1.0) ** 2)))
    if rms > POOR_RMS:
        msgs.append(f"poor fit: the fitted points' RMS relative error is {100 * rms:.2g}%; the model does not "
                    "describe these runs well (try another model, a longer burn-in, or check the learning rates)")
    return CurveFit(
        model=m, params=params,
        r2=r_squared(y[mask], pred[mask]), r2_holdout=r_squared(y[held], pred[held]),
        steps=np.concatenate([r[1] for r in runs]), loss=y, fitted=mask, prediction=pred,
        run=np.concatenate([np.full(r[1].size, i, dtype=np.int64) for i, r in enumerate(runs)]),
        burned=burned, warnings=_warn(msgs),
        data=_FitData(tuple(preps), tuple(ys), tuple(masks), prior, res.theta, None, robust=False, weights=pw,
                      coef_priors=tuple(cp), lrs=tuple(r[3] for r in runs if r[5].any()),
                      fitted_T=_fitted_T(runs)),
    )


def _fit_averaged(m: Averaged, lrs, steps, losses, fit_steps, grad_sq, burn_in, prior) -> CurveFit:
    """Fit every member (and the nested model) on its own; predict their weighted mean.

    With a nested model, the Bayesian information criterion on the fitted points' relative
    residuals decides whether the members' extra parameters are needed
    (:mod:`cdfast.models.average`); if not, the nested model alone predicts."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        fits = [_fit_loss_curves(lrs, steps, losses, member, fit_steps, grad_sq, burn_in, prior, False, None, 1.0)
                for member in m.all_members]
    del caught  # re-issued below with the member's name
    weights = np.array(m.weights)
    if m.nested is not None:
        weights = _nested_choice(m, fits)
    m = m.with_weights(weights)
    params = {f"{f.model.name}:{k}": v for f in fits for k, v in f.params.items()}
    first = fits[0]
    pred = sum(w * f.prediction for w, f in zip(m.weights, fits) if w > 0)
    y, mask, burned = first.loss, first.fitted, first.burned
    held = ~mask & ~burned
    msgs = [f"{f.model.name}: {w}" for f, wt in zip(fits, m.weights) if wt > 0 for w in f.warnings]
    return CurveFit(
        model=m, params=params,
        r2=r_squared(y[mask], pred[mask]), r2_holdout=r_squared(y[held], pred[held]),
        steps=first.steps, loss=y, fitted=mask, prediction=pred, run=first.run, burned=burned,
        warnings=_warn(msgs),
        data=_FitData(None, (), (), prior, np.empty(0), None, members=tuple(fits), lrs=fits[0].data.lrs,
                      fitted_T=fits[0].data.fitted_T),
    )


def _drop_peer(fit: CurveFit, peak: float) -> tuple[CurveFit | None, str, float]:
    """The model's drop peer fitted on the fitted runs at the fitted peak LR nearest ``peak``
    (once per set of runs; kept with the fit data), what it does after an abrupt fall in
    words (``Extrapolation.after_fall``) or why it is not used, and its weight for the peak
    (:func:`cdfast.models.transfer.peak_taper`)."""
    peer = fit.model.drop_peer
    if getattr(fit.model, "nested_only", False):
        # the data follow the paper's form, and with it the bound's memory: nothing to hand over
        return None, ("the model's own: the fitted runs follow eq. (2.4) (the paper's form predicts), whose memory "
                      "this is"), 0.0
    runs = _fitted_runs(fit)
    if not runs:
        return None, f"the model's own (the fit has no learning rates for {peer.name} to read)", 0.0
    # the law's coefficients are not shared across peak LRs the way the bound's are (protocol D: its
    # held-out peaks miss by 2.3% median, and its loss drop there by as much): only the runs at the
    # nearest fitted peak (peaks within 1% are one), with a weight that tapers off away from it
    peaks = np.array([float(r[1].max()) for r in runs])
    nearest = float(peaks[np.argmin(np.abs(np.log(peaks / peak)))])
    taper = peak_taper(peak, nearest)
    if taper == 0.0:
        return None, (f"the model's own: the peak LR {peak:.4g} is {DROP_PEAK_RANGE:g}x or more from every fitted "
                      f"run's, and {peer.name} does not transfer across peak LRs; likely predicted too high for a "
                      "while"), 0.0
    same = tuple(k for k, v in enumerate(peaks) if abs(math.log(v / nearest)) <= 0.01)
    key = ("drop_peer", same)
    if key not in fit.data.cache:
        fit.data.cache[key] = _fit_drop_peer(peer, [runs[k] for k in same])
    out, why = fit.data.cache[key]
    if out is not None and taper < 1.0:
        ratio = max(peak, nearest) / min(peak, nearest)
        why += (f"; with {100 * taper:.2g}% of its weight, as the peak LR is {ratio:.4g}x from the fitted "
                f"{nearest:.4g} (none from {DROP_PEAK_RANGE:g}x: the law does not transfer across peak LRs)")
    return out, why, taper


def _fit_drop_peer(peer: LossModel, runs: list) -> tuple[CurveFit | None, str]:
    # a loss-drop law fitted on runs that never decay has no data for its drop term
    if all(decayed_at(v, s[m]) is None for _, v, s, _, m in runs):
        return None, (f"the model's own: no fitted run at the nearest fitted peak LR decays it below "
                      f"{DECAY_LEVEL:.0%}, which {peer.name} would need to learn its loss drop; likely predicted too "
                      "high for a while")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            out = _fit_loss_curves([r[1] for r in runs], [r[2] for r in runs], [r[3] for r in runs], peer,
                                   [r[4] for r in runs], None, 0, True, False, None, 1.0)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as err:
        return None, f"the model's own ({peer.name} could not be fitted: {err}); likely predicted too high for a while"
    if out.poor_fit is not None:
        return None, (f"the model's own ({peer.name} misses the fitted losses by more than {100 * UNFIT_RMS:g}% RMS); "
                      "likely predicted too high for a while")
    return out, (f"weighted towards {peer.name!r} ({peer.summary.split(':')[0]}), fitted on the runs at the nearest "
                 "fitted peak LR, whose loss drop saturates in the size of the fall (the convex bound forgets the "
                 "larger LR's noise too slowly)")


def _free_params(model: LossModel) -> int:
    return len(model.coefs) + sum(not p.fixed for p in model.shape)


def _nested_choice(m: Averaged, fits: list[CurveFit]) -> FloatArray:
    """Weights: the model's own, or all on the nested model when it fits better than every member by more
    than the BIC penalty of the member's extra parameters (:mod:`cdfast.models.average`)."""
    mask = fits[0].fitted
    n = int(mask.sum())
    rss = [float(np.sum((f.prediction[mask] / f.loss[mask] - 1.0) ** 2)) for f in fits]
    k_nested = _free_params(m.nested)
    nested_rss = rss[-1]
    # the nested form must fit better than every member by more than the BIC penalty of the member's extra
    # parameters: the members' priors then demonstrably hold them away from the data
    prefer = all(n * np.log(max(nested_rss, 1e-300) / max(r, 1e-300)) <= -(_free_params(mem) - k_nested) * np.log(n)
                 for mem, r in zip(m.members, rss[:-1]))
    if prefer:
        w = np.zeros(len(fits))
        w[-1] = 1.0
        return w
    return np.array(m.weights)


def _fit_bound(m, lrs, steps, losses, fit_steps, grad_sq, robust, terms, burn_in, peak_power) -> CurveFit:
    """The paper's three-constant form, exactly as cdfast has always fitted it (bounded linear LSQ)."""
    power = _check_peak_power(peak_power)
    needs_lr = power != 1.0 or isinstance(burn_in, (float, np.floating))
    runs = _runs(lrs, steps, losses, fit_steps, grad_sq, terms, burn_in, needs_lr)
    raw, peaks = [], []
    for tag, s, y, x, g, mask, burned, term in runs:
        if term is None:
            a, b = _bound_terms(x, g, s)
        else:
            a, b = (np.asarray(t, dtype=np.float64) for t in term)
            if a.shape != s.shape or b.shape != s.shape:
                raise ValueError(f"terms{tag} must be two arrays with one entry per logged step ({s.size}), "
                                 f"got shapes {a.shape} and {b.shape}")
        bad = mask & ~(np.isfinite(a) & np.isfinite(b))
        if bad.any():
            j = int(np.argmax(bad))
            raise ValueError(
                f"the bound is infinite at step {s[j]}{tag} (its learning rate eta_{s[j]} is 0, or no positive LR "
                "precedes it); exclude it with fit_steps"
            )
        raw.append((a, b))
        peaks.append(np.nan if x is None else float(x.max()))
    y = np.concatenate([r[2] for r in runs])
    mask = np.concatenate([r[5] for r in runs])
    masks = [r[5] for r in runs]
    if mask.sum() < 3:
        raise ValueError(f"only {int(mask.sum())} points selected for fitting (after a burn-in of {burn_in}); "
                         "three constants need at least 3")

    def design(p: float) -> FloatArray:
        cols = []
        for (a, b), peak in zip(raw, peaks):
            c = 1.0 if p == 1.0 else peak ** (p - 1.0)
            cols.append(np.column_stack([np.ones_like(a), a / c, b * c]))
        return np.vstack(cols)

    if power is None:
        used = np.unique([pk for pk, mk in zip(peaks, masks) if mk.any()])
        if used.size < 2:
            raise ValueError("peak_power='fit' needs fitted runs with at least two different peak LRs, "
                             f"got {used.size}; give a number (1 = the paper's form)")
        best = minimize_scalar(lambda p: _solve(design(p)[mask], y[mask], robust)[1],
                               bounds=PEAK_POWER_BOUNDS, method="bounded", options={"xatol": 1e-4})
        power = float(best.x)
    A = design(power)
    theta, _ = _solve(A[mask], y[mask], robust)
    with np.errstate(invalid="ignore"):
        pred = A @ theta
        pred[~np.isfinite(A).all(axis=1)] = np.inf
    burned = np.concatenate([r[6] for r in runs])
    held = ~mask & ~burned
    params = {"L_inf": float(theta[0]), "D_sq": float(theta[1]), "G_sq": float(theta[2])}
    msgs = [f"{k} = 0 sits on its bound: the fitted curve has no {'distance' if k == 'D_sq' else 'gradient'} "
            "term (the data show none, or too little of the run was fitted)" for k in ("D_sq", "G_sq") if params[k] == 0.0]
    return CurveFit(
        model=m, params=params,
        r2=r_squared(y[mask], pred[mask]), r2_holdout=r_squared(y[held], pred[held]),
        steps=np.concatenate([r[1] for r in runs]), loss=y, fitted=mask, prediction=pred,
        run=np.concatenate([np.full(r[1].size, i, dtype=np.int64) for i, r in enumerate(runs)]),
        burned=burned, warnings=_warn(msgs), robust=bool(robust), peak_power=float(power),
        data=_FitData(None, tuple(r[2] for r in runs), tuple(masks), False, np.empty(0), A, robust=bool(robust),
                      lrs=tuple(r[3] for r in runs if r[5].any()),
                      fitted_T=_fitted_T(runs)),
    )


def fit_loss_curve(
    lr: ArrayLike,
    steps: ArrayLike,
    loss: ArrayLike,
    *,
    model: str | LossModel | None = None,
    fit_steps: ArrayLike | Iterable[int] | None = None,
    grad_sq: ArrayLike | None = None,
    burn_in: int | float | str = "auto",
    prior: bool = True,
    robust: bool = False,
    peak_power: float = 1.0,
    divergence: tuple[int, float] | None = None,
) -> CurveFit:
    """Fit a loss model to a logged loss curve; predict any other schedule with ``.predict``.

    Parameters
    ----------
    lr : array_like, shape (T,)
        The run's learning rates eta_1 .. eta_T (``lr[i] = eta_{i+1}``), T >= last step.
    steps : array_like of int
        Strictly increasing 1-based iterations at which ``loss`` was logged (the loss of
        ``w_tau`` after ``tau`` updates; :func:`cdfast.io.read_log` gives them).
    loss : array_like
        Logged losses, finite (positive for every model but ``"bound"``), one per step.
        Prefer a validation loss: it is measured on ``w_tau`` itself and on the same
        batches each time.
    model : str or LossModel, optional
        A name from :data:`cdfast.models.MODELS` or an instance.  None: the default,
        :data:`cdfast.models.DEFAULT_MODEL`, the model that predicts best on held-out
        runs (docs/models.md).  ``"bound"`` is the paper's three-constant form.
    fit_steps : bool mask or iterable of steps, optional
        The points used for fitting (e.g. the first half); the rest are held out and
        scored by ``r2_holdout``.  Default: all.
    grad_sq : array_like, shape (T,), optional
        Per-step G_t^2 (e.g. squared gradient norms from the log), Schaipp et al. (2025).
        Used by the convex-bound models; ``predict`` then needs them too.
    burn_in : "auto", int or float
        Leave out the points at steps ``<= burn_in`` (an int: steps; a float in [0, 1):
        that fraction of T = ``len(lr)``): the early, least convex phase of training.
        "auto": none for ``"bound"`` (the paper's form), ``BURN_FRAC`` of T otherwise
        (chosen on held-out runs; a fraction, so short and long runs alike keep most
        of their points).
    prior : bool
        Use the models' priors on shape parameters (:class:`cdfast.models.Param`), which
        keep exponents that half a run cannot determine at values validated on many runs.
    robust, peak_power :
        Options of ``model="bound"``: Huber loss on log residuals; the peak LR entering
        the bound as ``eta_peak**peak_power`` (estimate it with ``fit_loss_curves(...,
        peak_power="fit")`` on runs with several peak LRs).
    divergence : (int, float), optional
        Where the run diverged, ``(step, loss)``: pass the log's
        :attr:`cdfast.io.TrainingLog.divergence`.  The fit then warns (``.warnings`` and
        ``.summary()``) that it describes the steps before the divergence only.

    Returns
    -------
    CurveFit
        ``.params``, ``.predict(lr, at)``, ``.interval(lr, at)``, ``.r2``,
        ``.r2_holdout``, ``.warnings``; ``.L_inf, .D, .G`` for the convex-bound models.

    Warns
    -----
    FitWarning
        When a parameter sits on its bound or the fit is poor (also in ``.warnings``).

    Notes
    -----
    ``model="bound"`` is Generalization 1 (paper eq. 3.1) of the last-iterate bound eq.
    (2.4): the coefficients ``a_tau, b_tau`` are computed once (``bound_curve_terms(lr,
    grad_sq, at=steps)``) and the fit is a 3-column bounded least-squares problem.  The
    other models are fitted by variable projection (:mod:`cdfast.models.fitting`).
    """
    if isinstance(lr, (list, tuple)) and lr and not np.isscalar(lr[0]):
        raise ValueError("fit_loss_curve takes one run (lr is a list of sequences); use fit_loss_curves for several")
    return fit_loss_curves([lr], [steps], [loss], model=model, fit_steps=[fit_steps], grad_sq=[grad_sq],
                           burn_in=burn_in, prior=prior, robust=robust, peak_power=peak_power,
                           divergence=None if divergence is None else [divergence])
