"""Generalization 1: fit the last-iterate bound to a logged loss curve, predict others.

The model for the loss of ``w_tau`` (paper, Section 3.1, eq. 3.1 built on eq. 2.4) is

    L(tau) = L_inf + D~^2 a_tau + G~^2 b_tau,

with ``(a_tau, b_tau)`` the coefficients of eq. (2.4) from :func:`cdfast.bound_curve_terms`
evaluated at the logged steps only (a loss logged at step ``tau`` depends on
``eta_1 .. eta_tau``; see :mod:`cdfast.io` for the log-indexing convention).  The model
is linear in ``theta = (L_inf, D~^2, G~^2)`` with ``D~^2, G~^2 >= 0``, so the fit is a
bounded linear least-squares problem (:func:`scipy.optimize.lsq_linear`); the curve
coefficients are computed once per schedule, never inside the optimiser.

``robust=True`` instead minimises a Huber loss of the log residuals
``log(model) - log(loss)`` (:func:`scipy.optimize.least_squares`, ``loss="huber"``),
the usual choice for scaling-law fits (Hoffmann et al. 2022); it needs positive losses
and constrains ``L_inf >= 0``.

Two options go beyond the paper's plain form; both are chosen on the real runs of
``bench/validate_llm124m.py`` by held-out error (later steps of a run, other runs), never
by in-sample fit:

* ``burn_in`` leaves the first steps of each run out of the fit (and out of the held-out
  score): the early transient of a deep network is the least convex part of training.
* ``peak_power`` lets the peak LR enter the bound as ``eta_peak**peak_power`` instead of
  ``eta_peak``: with AdamW the update is not ``eta * gradient`` (the step is normalised
  per coordinate), so the bound's 1/eta and eta scalings (paper eq. 2.5) need not hold
  across peak LRs.  It matters only for joint fits of runs with different peak LRs.

Steps where the bound is infinite (``eta_tau = 0``, or no positive LR yet) cannot be
fitted; asking to fit them raises ValueError.  At such steps predictions are ``inf``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares, lsq_linear, minimize_scalar

from . import _validate as V
from .curve import bound_curve_terms

FloatArray = NDArray[np.float64]

__all__ = ["CurveFit", "fit_loss_curve", "fit_loss_curves", "r_squared"]

HUBER_DELTA = 1e-3  # Huber threshold on log residuals (Hoffmann et al. 2022)
PEAK_POWER_BOUNDS = (0.0, 2.0)  # search interval of peak_power="fit"; 1 is the paper's form


def r_squared(y: ArrayLike, yhat: ArrayLike) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (nan for < 2 points)."""
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    if y.size < 2:
        return float("nan")
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum((y - yhat) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


@dataclass(frozen=True)
class CurveFit:
    """Fitted constants of Generalization 1 and the quality of the fit.

    Attributes
    ----------
    L_inf, D_sq, G_sq : float
        ``L_inf``, ``D~^2``, ``G~^2`` (``D``, ``G`` give the square roots).
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
    robust : bool
        Whether the Huber log-residual fit was used.
    peak_power : float
        The exponent ``p`` of the peak LR (1 = the paper's form): the bound is evaluated
        on ``lr * max(lr)**(p - 1)``.
    burned : ndarray of bool
        Points inside the burn-in (neither fitted nor held out).
    """

    L_inf: float
    D_sq: float
    G_sq: float
    r2: float
    r2_holdout: float
    robust: bool
    steps: NDArray[np.int64] = field(repr=False)
    loss: FloatArray = field(repr=False)
    fitted: NDArray[np.bool_] = field(repr=False)
    prediction: FloatArray = field(repr=False)
    run: NDArray[np.int64] = field(repr=False)
    peak_power: float = 1.0
    burned: NDArray[np.bool_] | None = field(default=None, repr=False)

    @property
    def held_out(self) -> NDArray[np.bool_]:
        """Points scored as held out: not fitted and not inside the burn-in."""
        return ~self.fitted if self.burned is None else ~self.fitted & ~self.burned

    @property
    def D(self) -> float:
        return float(np.sqrt(self.D_sq))

    @property
    def G(self) -> float:
        return float(np.sqrt(self.G_sq))

    @property
    def residuals(self) -> FloatArray:
        """``loss - prediction`` at every logged step."""
        return self.loss - self.prediction

    def predict(self, lr: ArrayLike, at: ArrayLike | None = None, grad_sq: ArrayLike | None = None) -> FloatArray:
        """The fitted loss curve for any LR sequence, at 1-based steps ``at`` (None = all).

        ``grad_sq`` (per-step G_t^2) must be given in the same units as for the fit.
        """
        a, b = _rescale(bound_curve_terms(lr, grad_sq, at), V.as_vector(lr, "lr"), self.peak_power)
        with np.errstate(invalid="ignore"):
            return self.L_inf + self.D_sq * a + self.G_sq * b

    def holdout_error(self) -> FloatArray:
        """Relative errors ``(prediction - loss) / loss`` at the held-out points."""
        m = self.held_out
        return (self.prediction[m] - self.loss[m]) / self.loss[m]

    def summary(self) -> str:
        n, k = self.fitted.size, int(self.fitted.sum())
        runs = int(self.run.max()) + 1 if self.run.size else 0
        return (
            f"CurveFit{' (robust)' if self.robust else ''}: L = {self.L_inf:.6g} + {self.D_sq:.6g} a_tau"
            f" + {self.G_sq:.6g} b_tau  [D~ = {self.D:.4g}, G~ = {self.G:.4g}]"
            + (f", peak LR power {self.peak_power:.4g}" if self.peak_power != 1.0 else "") + "\n"
            f"  {runs} run(s), fitted on {k} of {n} logged points: R^2 = {self.r2:.5f}, "
            f"held-out R^2 = {self.r2_holdout:.5f}"
        )

    def __str__(self) -> str:
        return self.summary()


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


def _design(lr: ArrayLike, steps: NDArray[np.int64], grad_sq: ArrayLike | None) -> tuple[FloatArray, FloatArray]:
    x = V.as_vector(lr, "lr")
    if steps[-1] > x.shape[0]:
        raise ValueError(f"steps go up to {steps[-1]} but lr has only T = {x.shape[0]} entries; give eta_1..eta_T up to the last logged step")
    return bound_curve_terms(x, grad_sq, at=steps)


def _rescale(terms: tuple[ArrayLike, ArrayLike], lr: FloatArray, peak_power: float) -> tuple[FloatArray, FloatArray]:
    """Terms of ``lr * peak**(p - 1)`` from those of ``lr``: a scales by 1/c, b by c (eq. 2.4)."""
    a, b = (np.asarray(t, dtype=np.float64) for t in terms)
    if peak_power == 1.0:
        return a, b
    c = float(lr.max()) ** (peak_power - 1.0)
    return a / c, b * c


def _solve(A: FloatArray, y: FloatArray, robust: bool) -> tuple[FloatArray, float]:
    """theta = (L_inf, D^2, G^2) minimising the (robust) misfit with D^2, G^2 >= 0, and that misfit."""
    scale = np.max(np.abs(A), axis=0)
    scale[scale == 0] = 1.0
    As = A / scale
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
    return theta / scale, cost


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


def fit_loss_curves(
    lrs: Sequence[ArrayLike],
    steps: Sequence[ArrayLike],
    losses: Sequence[ArrayLike],
    *,
    fit_steps: Sequence[Any] | None = None,
    grad_sq: Sequence[ArrayLike | None] | None = None,
    robust: bool = False,
    terms: Sequence[tuple[ArrayLike, ArrayLike] | None] | None = None,
    burn_in: int | float = 0,
    peak_power: float | str = 1.0,
) -> CurveFit:
    """Joint Generalization-1 fit: several runs share ``(L_inf, D~, G~)``.

    Parameters are lists with one entry per run, each as in :func:`fit_loss_curve`
    (``fit_steps[i]`` may be None to fit all of run ``i``).  The result's arrays are
    the runs' points concatenated; ``CurveFit.run`` tells them apart.

    ``terms[i]``, if given, is run ``i``'s ``bound_curve_terms(lr, grad_sq, at=steps)``
    computed beforehand, so that many fits of the same runs (windows, subsets of runs)
    evaluate each schedule's curve once; ``grad_sq[i]`` is then unused, and ``lrs[i]``
    is only read for its length (fractional ``burn_in``) and peak (``peak_power``).

    ``burn_in`` and ``peak_power`` are as in :func:`fit_loss_curve`.  ``peak_power="fit"``
    estimates the exponent with the other constants (bounded scalar search over
    ``PEAK_POWER_BOUNDS`` of the profiled misfit); it needs runs with at least two
    different peak LRs.  Use it to transfer constants across peak LRs (cross-run
    prediction); for runs sharing one peak LR it changes nothing.
    """
    n = len(lrs)
    if n == 0 or len(steps) != n or len(losses) != n:
        raise ValueError(f"lrs, steps and losses need one entry per run, got {len(lrs)}, {len(steps)}, {len(losses)}")
    fit_steps = [None] * n if fit_steps is None else list(fit_steps)
    grad_sq = [None] * n if grad_sq is None else list(grad_sq)
    terms = [None] * n if terms is None else list(terms)
    if len(fit_steps) != n or len(grad_sq) != n or len(terms) != n:
        raise ValueError(f"fit_steps, grad_sq and terms need one entry per run ({n}), "
                         f"got {len(fit_steps)}, {len(grad_sq)} and {len(terms)}")
    power = _check_peak_power(peak_power)
    needs_lr = power != 1.0 or isinstance(burn_in, (float, np.floating))
    raw, ys, masks, burns, ss, runs, peaks = [], [], [], [], [], [], []
    for i in range(n):
        tag = "" if n == 1 else f" (run {i})"
        s = V.as_steps(steps[i], "steps" + tag)
        y = V.as_vector(losses[i], "loss" + tag)
        if y.shape != s.shape:
            raise ValueError(f"loss{tag} has {y.size} values but steps has {s.size}; give one loss per logged step")
        if not np.all(np.isfinite(y)):
            j = int(np.argmax(~np.isfinite(y)))
            raise ValueError(f"loss{tag}[{j}] (step {s[j]}) is {y[j]}; drop unlogged points before fitting")
        if terms[i] is None:
            a, b = _design(lrs[i], s, grad_sq[i])
        else:
            a, b = (np.asarray(t, dtype=np.float64) for t in terms[i])
            if a.shape != s.shape or b.shape != s.shape:
                raise ValueError(f"terms{tag} must be two arrays with one entry per logged step ({s.size}), "
                                 f"got shapes {a.shape} and {b.shape}")
        x = V.as_vector(lrs[i], "lr" + tag) if needs_lr else None
        burned = s <= _burn_threshold(burn_in, 0 if x is None else x.shape[0])
        m = _fit_mask(fit_steps[i], s, "fit_steps" + tag) & ~burned
        bad = m & ~(np.isfinite(a) & np.isfinite(b))
        if bad.any():
            j = int(np.argmax(bad))
            raise ValueError(
                f"the bound is infinite at step {s[j]}{tag} (its learning rate eta_{s[j]} is 0, or no positive LR "
                "precedes it); exclude it with fit_steps"
            )
        raw.append((a, b))
        peaks.append(np.nan if x is None else float(x.max()))
        ys.append(y)
        masks.append(m)
        burns.append(burned)
        ss.append(s)
        runs.append(np.full(s.size, i, dtype=np.int64))
    y, mask = np.concatenate(ys), np.concatenate(masks)
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
        used = np.unique([pk for pk, m in zip(peaks, masks) if m.any()])
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
    burned = np.concatenate(burns)
    held = ~mask & ~burned
    return CurveFit(
        L_inf=float(theta[0]), D_sq=float(theta[1]), G_sq=float(theta[2]),
        r2=r_squared(y[mask], pred[mask]),
        r2_holdout=r_squared(y[held], pred[held]),
        robust=bool(robust),
        steps=np.concatenate(ss), loss=y, fitted=mask, prediction=pred, run=np.concatenate(runs),
        peak_power=float(power), burned=burned,
    )


def fit_loss_curve(
    lr: ArrayLike,
    steps: ArrayLike,
    loss: ArrayLike,
    *,
    fit_steps: ArrayLike | Iterable[int] | None = None,
    grad_sq: ArrayLike | None = None,
    robust: bool = False,
    burn_in: int | float = 0,
    peak_power: float = 1.0,
) -> CurveFit:
    """Fit ``L_inf + D~^2 a_tau + G~^2 b_tau`` to a logged loss curve (Generalization 1).

    Parameters
    ----------
    lr : array_like, shape (T,)
        The run's learning rates eta_1 .. eta_T (``lr[i] = eta_{i+1}``), T >= last step.
    steps : array_like of int
        Strictly increasing 1-based iterations at which ``loss`` was logged (the loss of
        ``w_tau`` after ``tau`` updates).
    loss : array_like
        Logged losses, finite, one per step.  Prefer a validation loss: it is measured
        on ``w_tau`` itself and on the same batches each time, whereas a logged training
        loss is usually that of the batch used for update ``tau`` (i.e. of ``w_{tau-1}``).
    fit_steps : bool mask or iterable of steps, optional
        The points used for fitting (e.g. the first half); the rest are held out and
        scored by ``r2_holdout``.  Default: all.
    grad_sq : array_like, shape (T,), optional
        Per-step G_t^2 (e.g. logged squared gradient norms), Schaipp et al. (2025);
        ``G~^2`` then multiplies them.
    robust : bool
        Huber loss on log residuals instead of plain least squares.  Use it on real
        training logs (loss spikes, evaluation noise).
    burn_in : int or float
        Leave out the points at steps ``<= burn_in`` (an int: steps; a float in [0, 1):
        that fraction of T = ``len(lr)``).  They are neither fitted nor scored as held
        out.  Use it on deep-network logs, whose first thousands of steps are not
        described by the convex bound; choose it by held-out error.
    peak_power : float
        Evaluate the bound on ``lr * max(lr)**(peak_power - 1)``: the peak LR enters as
        ``eta_peak**peak_power``.  1 (default) is the paper's form; a single run cannot
        tell the difference (the constants absorb it), so this matters for
        :meth:`CurveFit.predict` on runs with another peak LR.  Estimate it with
        ``fit_loss_curves(..., peak_power="fit")`` on runs with several peak LRs.

    Returns
    -------
    CurveFit
        ``.L_inf, .D, .G, .r2, .r2_holdout, .residuals, .predict(lr, at)``.

    Notes
    -----
    Generalization 1 (paper eq. 3.1) applied to the last-iterate bound eq. (2.4).  The
    coefficients ``a_tau, b_tau`` are computed once (``bound_curve_terms(lr, grad_sq,
    at=steps)``); the fit itself is a 3-column bounded least-squares problem.  Scaling
    the LRs by ``c`` scales ``a`` by ``1/c`` and ``b`` by ``c`` (eq. 2.4, 2.5), which is
    how ``peak_power`` is applied without recomputing the terms.
    """
    return fit_loss_curves([lr], [steps], [loss], fit_steps=[fit_steps],
                           grad_sq=[grad_sq], robust=robust, burn_in=burn_in, peak_power=peak_power)
