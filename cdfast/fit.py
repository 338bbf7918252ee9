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

Steps where the bound is infinite (``eta_tau = 0``, or no positive LR yet) cannot be
fitted; asking to fit them raises ValueError.  At such steps predictions are ``inf``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares, lsq_linear

from . import _validate as V
from .curve import bound_curve_terms

FloatArray = NDArray[np.float64]

__all__ = ["CurveFit", "fit_loss_curve", "fit_loss_curves", "r_squared"]

HUBER_DELTA = 1e-3  # Huber threshold on log residuals (Hoffmann et al. 2022)


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
        R^2 on the logged points not used for fitting (nan if there are fewer than 2).
    steps, loss, fitted, prediction : ndarray
        All logged steps and losses (runs concatenated for a joint fit), the mask of the
        points used for fitting, and the model at those steps.
    run : ndarray of int
        Which run each point belongs to (all 0 for a single curve).
    robust : bool
        Whether the Huber log-residual fit was used.
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
        a, b = bound_curve_terms(lr, grad_sq, at)
        with np.errstate(invalid="ignore"):
            return self.L_inf + self.D_sq * a + self.G_sq * b

    def holdout_error(self) -> FloatArray:
        """Relative errors ``(prediction - loss) / loss`` at the points not fitted."""
        m = ~self.fitted
        return (self.prediction[m] - self.loss[m]) / self.loss[m]

    def summary(self) -> str:
        n, k = self.fitted.size, int(self.fitted.sum())
        runs = int(self.run.max()) + 1 if self.run.size else 0
        return (
            f"CurveFit{' (robust)' if self.robust else ''}: L = {self.L_inf:.6g} + {self.D_sq:.6g} a_tau"
            f" + {self.G_sq:.6g} b_tau  [D~ = {self.D:.4g}, G~ = {self.G:.4g}]\n"
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


def _solve(A: FloatArray, y: FloatArray, robust: bool) -> FloatArray:
    """theta = (L_inf, D^2, G^2) minimising the (robust) misfit with D^2, G^2 >= 0."""
    scale = np.max(np.abs(A), axis=0)
    scale[scale == 0] = 1.0
    As = A / scale
    lo = np.array([-np.inf, 0.0, 0.0])
    res = lsq_linear(As, y, bounds=(lo, np.full(3, np.inf)), method="bvls")
    theta = res.x
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
        theta = out.x
    return theta / scale


def fit_loss_curves(
    lrs: Sequence[ArrayLike],
    steps: Sequence[ArrayLike],
    losses: Sequence[ArrayLike],
    *,
    fit_steps: Sequence[Any] | None = None,
    grad_sq: Sequence[ArrayLike | None] | None = None,
    robust: bool = False,
    terms: Sequence[tuple[ArrayLike, ArrayLike] | None] | None = None,
) -> CurveFit:
    """Joint Generalization-1 fit: several runs share ``(L_inf, D~, G~)``.

    Parameters are lists with one entry per run, each as in :func:`fit_loss_curve`
    (``fit_steps[i]`` may be None to fit all of run ``i``).  The result's arrays are
    the runs' points concatenated; ``CurveFit.run`` tells them apart.

    ``terms[i]``, if given, is run ``i``'s ``bound_curve_terms(lr, grad_sq, at=steps)``
    computed beforehand, so that many fits of the same runs (windows, subsets of runs)
    evaluate each schedule's curve once; ``lrs[i]`` and ``grad_sq[i]`` are then unused.
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
    rows, ys, masks, ss, runs = [], [], [], [], []
    for i in range(n):
        tag = "" if n == 1 else f" (run {i})"
        s = V.as_steps(steps[i], "steps" + tag)
        y = V.as_vector(losses[i], "loss" + tag)
        if y.shape != s.shape:
            raise ValueError(f"loss{tag} has {y.size} values but steps has {s.size}; give one loss per logged step")
        if not np.all(np.isfinite(y)):
            j = int(np.argmax(~np.isfinite(y)))
            raise ValueError(f"loss{tag}[{j}] (step {s[j]}) is {y[j]}; drop unlogged points before fitting")
        m = _fit_mask(fit_steps[i], s, "fit_steps" + tag)
        if terms[i] is None:
            a, b = _design(lrs[i], s, grad_sq[i])
        else:
            a, b = (np.asarray(t, dtype=np.float64) for t in terms[i])
            if a.shape != s.shape or b.shape != s.shape:
                raise ValueError(f"terms{tag} must be two arrays with one entry per logged step ({s.size}), "
                                 f"got shapes {a.shape} and {b.shape}")
        bad = m & ~(np.isfinite(a) & np.isfinite(b))
        if bad.any():
            j = int(np.argmax(bad))
            raise ValueError(
                f"the bound is infinite at step {s[j]}{tag} (its learning rate eta_{s[j]} is 0, or no positive LR "
                "precedes it); exclude it with fit_steps"
            )
        rows.append(np.column_stack([np.ones_like(a), a, b]))
        ys.append(y)
        masks.append(m)
        ss.append(s)
        runs.append(np.full(s.size, i, dtype=np.int64))
    A, y, mask = np.vstack(rows), np.concatenate(ys), np.concatenate(masks)
    if mask.sum() < 3:
        raise ValueError(f"only {int(mask.sum())} points selected for fitting; three constants need at least 3")
    theta = _solve(A[mask], y[mask], robust)
    with np.errstate(invalid="ignore"):
        pred = A @ theta
        pred[~np.isfinite(A).all(axis=1)] = np.inf
    return CurveFit(
        L_inf=float(theta[0]), D_sq=float(theta[1]), G_sq=float(theta[2]),
        r2=r_squared(y[mask], pred[mask]),
        r2_holdout=r_squared(y[~mask], pred[~mask]),
        robust=bool(robust),
        steps=np.concatenate(ss), loss=y, fitted=mask, prediction=pred, run=np.concatenate(runs),
    )


def fit_loss_curve(
    lr: ArrayLike,
    steps: ArrayLike,
    loss: ArrayLike,
    *,
    fit_steps: ArrayLike | Iterable[int] | None = None,
    grad_sq: ArrayLike | None = None,
    robust: bool = False,
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
        Logged losses, finite, one per step.
    fit_steps : bool mask or iterable of steps, optional
        The points used for fitting (e.g. the first half after a burn-in); the rest are
        held out and scored by ``r2_holdout``.  Default: all.
    grad_sq : array_like, shape (T,), optional
        Per-step G_t^2 (e.g. logged squared gradient norms), Schaipp et al. (2025);
        ``G~^2`` then multiplies them.
    robust : bool
        Huber loss on log residuals instead of plain least squares.

    Returns
    -------
    CurveFit
        ``.L_inf, .D, .G, .r2, .r2_holdout, .residuals, .predict(lr, at)``.

    Notes
    -----
    Generalization 1 (paper eq. 3.1) applied to the last-iterate bound eq. (2.4).  The
    coefficients ``a_tau, b_tau`` are computed once (``bound_curve_terms(lr, grad_sq,
    at=steps)``); the fit itself is a 3-column bounded least-squares problem.
    """
    return fit_loss_curves([lr], [steps], [loss], fit_steps=[fit_steps],
                           grad_sq=[grad_sq], robust=robust)
