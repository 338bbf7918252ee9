"""Learning-rate schedules that minimise the last-iterate bound of eq. (2.4), or a fitted loss model.

:func:`optimal_schedule` solves

    minimise  B(eta) = L_* + D^2 / (2 P_T) + (G^2 / 2) [eta_T G_T^2 + sum_{j<T} eta_j^2 G_j^2 / (P_T - P_j)]

over the LR sequence ``eta_1 .. eta_T`` under the constraints people use:

* ``warmup = W``: the first W steps are a linear ramp to the peak, ``lr[t] = lr[W] t / W``
  (the convention of :func:`cdfast.schedules.with_warmup`: ``lr[0] = 0``, the peak is
  reached at step W);
* ``monotone=True`` (default): non-increasing after the warmup, ``lr[W] >= lr[W+1] >= ...``;
* ``peak_lr``: fixed ``lr[W]`` (else free);
* ``final_lr``: a floor, *every* LR after the warmup is ``>= final_lr``.  (The bound
  rewards small final LRs, so with a floor the optimum usually ends on it; a floor is
  a lower bound, not an equality, so that the problem stays convex and always feasible.)

B is convex in ``eta`` (cdfast/gradient.py), every constraint set above is convex, and the
parametrisations below are linear or (for a fixed peak) projective maps, so a stationary
point is the global optimum.  The optimiser is scipy's bound-constrained truncated Newton
method (TNC; L-BFGS-B on request) on a parametrisation that keeps the constraints as
simple bounds:

* monotone: the decay part is ``floor + (reverse cumulative sum of decrements z >= 0)``
  (with a fixed peak the cumulative sums are normalised by their first entry, so the
  peak stays put);
* not monotone: the decay part itself, between the floor and the (fixed) peak.

Scale invariance: with neither a floor, a fixed peak nor a model, the shape ``s`` is
optimised for ``J(s) = (1/2) log(a(s) b(s))`` (``a, b`` = :func:`cdfast.bound_terms`), the
log of the bound at the best peak LR, which does not depend on the scale of ``s``; the
peak then follows in closed form, ``eta = (D / G) sqrt(a / b)``, and the bound is
``L_* + 2 D G sqrt(a b)`` (:func:`cdfast.optimal_peak_lr`).  With a floor or a model the
scale matters and is optimised together with the shape.

Long horizons are solved in two stages: a coarse stage on at most ``knots`` values
(every one of the last 64 steps, geometrically spaced before them, linear in between),
then a full-resolution stage started from the better of the coarse solution, the best
standard schedule and (without a floor, a fixed peak or a model) the exact unconstrained
optimum projected onto the constraints.  The unconstrained optimum itself has a closed
form up to one scalar: at a stationary point, with ``rho_k = eta_k / (P_T - P_k)``,

    G_k^2 rho_k = c + S_k / 2,   S_{k+1} = S_k + G_k^2 rho_k^2,   G_T^2 / 2 = c + S_T / 2,

``c = D^2 / (2 G^2 P_T^2)`` (``S_k`` as in cdfast/gradient.py): a forward recursion for a
given c and one monotone equation for c (:func:`stationary_schedule`).  For constant G it
is close to linear decay, ``rho_k ~ 2 / (T + 3 - k)``, but ends on a last LR about 2.4 times
the one before it, so ``monotone=True`` is active at the last steps.

:func:`refined` is the closed-form schedule of Defazio et al. (2023) from observed gradient
norms; see docs/optimal_schedules.md for how it differs from the exact optimum of eq. (2.4).
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize as sopt

from . import _validate as V
from .gradient import _grad_kernel
from .schedules import refined  # noqa: F401  (defined with the schedule families; kept importable here)

FloatArray = NDArray[np.float64]

TAIL_KNOTS = 64  # the coarse stage keeps every one of the last TAIL_KNOTS steps
BASELINES = ("linear", "cosine", "wsd")
_WSD_DECAY = 0.2  # decay fraction of the WSD baseline


@runtime_checkable
class LossModel(Protocol):
    """A fitted loss model: its predicted final loss for an LR sequence and the gradient.

    ``value_and_grad(lr)`` takes ``lr`` of shape (T,) (``lr[i] = eta_{i+1}``) and returns
    ``(loss, d loss / d lr)`` as ``(float, ndarray of shape (T,))``.
    """

    def value_and_grad(self, lr: FloatArray) -> tuple[float, FloatArray]: ...


@dataclass(frozen=True)
class Stage:
    """One optimiser run: its size, work, end point and why it stopped.

    ``grad_norm`` is the inf-norm of the projected gradient of the scaled objective with
    respect to the stage's variables (zero at an exact constrained optimum).
    """

    name: str
    variables: int
    iterations: int
    evaluations: int
    objective: float
    grad_norm: float
    converged: bool
    message: str
    seconds: float


@dataclass(frozen=True)
class OptimalSchedule:
    """The result of :func:`optimal_schedule`.

    ``numpy.asarray(result)`` is ``result.lr``.  ``value`` is what was minimised (the
    bound of eq. (2.4), or the model's predicted loss); ``bound`` is always eq. (2.4)
    with the given D, G, L_*, grad_sq.  ``baselines`` holds the value of linear, cosine
    and WSD (decay fraction 0.2) decays under the same constraints (same warmup, floor
    and peak, or at their own optimal peak LR when the peak is free).
    """

    lr: FloatArray
    value: float
    bound: float
    peak_lr: float
    converged: bool
    iterations: int
    evaluations: int
    grad_norm: float
    message: str
    stages: tuple[Stage, ...]
    baselines: dict[str, float]
    T: int
    warmup: int
    monotone: bool
    final_lr: float
    fixed_peak: bool
    objective: str
    seconds: float
    constraints: dict[str, Any] = field(default_factory=dict)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.lr, dtype=dtype)

    def __len__(self) -> int:
        return self.T

    @property
    def shape(self) -> FloatArray:
        """The schedule shape ``lr / peak_lr`` (1 at the end of the warmup)."""
        return self.lr / self.peak_lr

    @property
    def improvement(self) -> float:
        """``best baseline / value - 1`` (objective minus ``L_*`` for the bound)."""
        best = min(self.baselines.values())
        shift = self.constraints.get("L_star", 0.0) if self.objective == "bound" else 0.0
        return (best - shift) / (self.value - shift) - 1.0

    def summary(self) -> str:
        """A few lines: value, peak, convergence, the baselines."""
        lines = [
            f"optimal schedule, T = {self.T}, warmup = {self.warmup}, monotone = {self.monotone}, "
            f"final_lr = {self.final_lr:g}, peak {'fixed' if self.fixed_peak else 'free'}",
            f"  {self.objective} = {self.value:.10g} at peak LR {self.peak_lr:.6g} "
            f"(bound of eq. 2.4: {self.bound:.10g})",
            f"  {'converged' if self.converged else 'NOT converged'}: {self.iterations} iterations, "
            f"{self.evaluations} evaluations, projected gradient {self.grad_norm:.2e}, {self.seconds:.2f} s ({self.message})",
        ]
        for name, v in self.baselines.items():
            lines.append(f"  {name:<8} {v:.10g}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Validation


def _check_positive(value: Any, name: str) -> float:
    v = V.check_scalar(value, name)
    if v == 0.0:
        raise ValueError(f"{name} = 0 must be > 0")
    return v


def _check_grad_sq(grad_sq: Any, T: int) -> FloatArray | None:
    g = V.check_grad_sq(grad_sq, T)
    if g is None:
        return None
    V.check_values(g, "grad_sq")
    if not g.all():
        i = int(np.argmin(g != 0))
        raise ValueError(
            f"grad_sq[{i}] is 0; optimal_schedule needs every G_t^2 > 0 (a step without gradient "
            "noise would take an unbounded LR): floor the measured values, e.g. np.maximum(grad_sq, eps)"
        )
    return g


def _check_range(rng: Any, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in rng)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be (low, high), got {rng!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo <= hi):
        raise ValueError(f"{name} = {rng!r} must be two finite LRs with 0 < low <= high")
    return lo, hi


def _check_model(model: Any) -> Any:
    if model is None:
        return None
    if not callable(getattr(model, "value_and_grad", None)):
        raise TypeError(
            f"model must have a method value_and_grad(lr) -> (loss, gradient); got {type(model).__name__}"
        )
    return model


# ---------------------------------------------------------------------------
# The exact unconstrained optimum


def stationary_schedule(
    T: int,
    D: float = 1.0,
    G: float = 1.0,
    grad_sq: ArrayLike | None = None,
) -> FloatArray:
    """The LR sequence minimising eq. (2.4) over all positive LRs (no constraints).

    Parameters
    ----------
    T : int
        Number of steps (>= 1).
    D, G : float
        Distance and gradient bound (> 0).
    grad_sq : array_like, shape (T,), optional
        Per-step G_t^2 (> 0); G scales them.

    Returns
    -------
    ndarray, shape (T,)

    Notes
    -----
    Eq. (2.4) is convex in the LRs; its stationary point satisfies, with
    ``rho_k = eta_k / (P_T - P_k)`` and ``S_1 = 0``,
    ``G_k^2 rho_k = c + S_k / 2``, ``S_{k+1} = S_k + G_k^2 rho_k^2`` (k < T) and
    ``G_T^2 / 2 = c + S_T / 2`` with ``c = D^2 / (2 G^2 P_T^2)``.  The residual of the last
    equation increases with c; it is solved by Brent's method on ``log c`` (each
    evaluation one O(T) pass), then the gaps are rebuilt backwards from
    ``P_T = D / (G sqrt(2 c))``.  The result is positive everywhere; it is not monotone
    (for constant G the last LR is about 2.4 times the one before).
    """
    from ._kernels import _numba_grad as kg

    T = V.check_int(T, "T", 1)
    D = _check_positive(D, "D")
    G = _check_positive(G, "G")
    g = _check_grad_sq(grad_sq, T)
    gam = np.ones(T) if g is None else g
    if T == 1:  # D^2 / (2 eta) + G^2 G_1^2 eta / 2
        return np.array([D / (G * math.sqrt(gam[0]))])

    def resid(logc: float) -> float:
        return float(kg._stationary_residual(math.exp(logc), gam))

    lo = math.log(min(gam[-1], 1.0) * 1e-3 / T)
    while resid(lo) >= 0.0:
        lo -= 10.0
    hi = lo + 1.0
    while resid(hi) < 0.0:
        lo, hi = hi, hi + 2.0
    logc = sopt.brentq(resid, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=400)
    c = math.exp(logc)
    out = np.empty(T)
    kg._stationary_schedule(c, gam, math.log(D / G) - 0.5 * math.log(2.0 * c), out)
    return out


# ---------------------------------------------------------------------------
# The problem: variables <-> LRs, objective, gradient


def _knots(n: int, k_max: int) -> NDArray[np.int64]:
    """Step indices 0 .. n-1 of the coarse stage's knots (every one of the last steps)."""
    tail = min(TAIL_KNOTS, n)
    r = np.concatenate([np.arange(1, tail + 1), np.geomspace(tail, n, max(k_max - tail, 2)).round(), [n]])
    return np.unique(n - np.unique(r.astype(np.int64)))


class _Problem:
    """The constrained problem in terms of its optimisation variables (simple bounds).

    Modes: "shape" (no floor, free peak, the bound: scale-free objective), "free" (the
    scale is a variable: a floor or a model), "fixed" (fixed peak).
    """

    def __init__(self, T, W, monotone, peak, floor, gam, D, G, L_star, model, backend):
        self.T, self.W, self.n = T, W, T - W
        self.monotone, self.peak, self.floor = monotone, peak, floor
        self.gam, self.D, self.G, self.L_star = gam, D, G, L_star
        self.model, self.backend = model, backend
        if model is None and peak is None and floor == 0.0:
            self.mode = "shape"
        else:
            self.mode = "fixed" if peak is not None else "free"
        self.ramp = np.arange(W, dtype=np.float64) / W if W else None
        self.eta0 = 1.0  # scale of the variables in "free" mode
        self.f0 = 1.0  # scale of the objective (modes "free" and "fixed")
        self.evaluations = 0

    # -- LRs from the decay values and back ---------------------------------

    def full_lr(self, d: FloatArray) -> FloatArray:
        lr = np.empty(self.T)
        lr[self.W:] = d
        if self.W:
            lr[: self.W] = d[0] * self.ramp
        return lr

    def objective_lr(self, lr: FloatArray) -> tuple[float, FloatArray]:
        """Objective and its gradient with respect to every LR (full length T)."""
        self.evaluations += 1
        if self.model is not None:
            val, grad = self.model.value_and_grad(lr)
            grad = np.array(grad, dtype=np.float64)
            if grad.shape != (self.T,):
                raise ValueError(f"model.value_and_grad returned a gradient of shape {grad.shape}; expected ({self.T},)")
            if self.W:
                # lr[0] = 0 on the warmup ramp whatever the variables, so its derivative is never used; for a
                # model on eta^p with p < 1 (power-bound, part of the default model) it is infinite there
                grad[0] = 0.0
            val = float(val)
            if not (math.isfinite(val) and np.isfinite(grad).all()):
                raise ValueError("model.value_and_grad returned a non-finite loss or gradient at a feasible schedule")
            return val / self.f0, grad / self.f0
        if self.mode == "shape":
            a, b, db = _grad_kernel(lr, self.gam, 0.0, 1.0, self.backend, "optimal_schedule")
            db *= 0.5 / b
            db -= a
            return 0.5 * (math.log(a) + math.log(b)), db
        d2, g2 = self.D * self.D, self.G * self.G
        a, b, grad = _grad_kernel(lr, self.gam, d2, g2, self.backend, "optimal_schedule")
        grad /= self.f0
        return (d2 * a + g2 * b) / self.f0, grad

    def value(self, lr: FloatArray) -> float:
        """What the user asked to minimise, unscaled (bound at the best peak in shape mode)."""
        if self.model is not None:
            return float(self.model.value_and_grad(lr)[0])
        from .bounds import bound_terms

        a, b = bound_terms(lr, self.gam, self.backend)
        if self.mode == "shape":
            return self.L_star + 2.0 * self.D * self.G * math.sqrt(a * b)
        return self.L_star + self.D * self.D * a + self.G * self.G * b

    # -- variables ------------------------------------------------------------

    def decay_from_u(self, u: FloatArray) -> FloatArray:
        if self.mode == "shape":
            return u
        if self.mode == "free":
            return self.floor + self.eta0 * u
        if self.monotone:
            return self.floor + (self.peak - self.floor) * (u / u[0])
        return self.peak * u

    def u_from_decay(self, d: FloatArray) -> FloatArray:
        if self.mode == "shape":
            return d / d[0]
        if self.mode == "free":
            return (d - self.floor) / self.eta0
        if self.monotone:
            return (d - self.floor) / (self.peak - self.floor)
        return d / self.peak

    def bounds(self, m: int) -> tuple[FloatArray, FloatArray]:
        eps = 1e-9 / self.n
        lo = np.zeros(m)
        hi = np.full(m, np.inf)
        if not self.monotone and self.mode == "fixed":
            lo[:] = self.floor / self.peak
            hi[:] = 1.0
            lo[0] = 1.0
        if self.floor == 0.0:
            lo[-1] = max(lo[-1], eps)
        return lo, hi

    def x_from_u(self, v: FloatArray) -> FloatArray:
        if self.monotone:
            return v - np.append(v[1:], 0.0)
        return v.copy()

    def fun(self, x: FloatArray, op) -> tuple[float, FloatArray]:
        v = np.cumsum(x[::-1])[::-1] if self.monotone else x
        if op is None:
            u = v
        else:
            i, lam, m = op
            u = v[i] * (1.0 - lam)
            u += lam * v[i + 1]
        d = self.decay_from_u(u)
        lr = self.full_lr(d)
        J, glr = self.objective_lr(lr)
        gd = glr[self.W:]
        if self.W and self.mode != "fixed":
            gd[0] += float(np.dot(glr[: self.W], self.ramp))
        if self.mode == "free":
            gd *= self.eta0
        elif self.mode == "fixed":
            if self.monotone:
                scale = (self.peak - self.floor) / u[0]
                g0 = -scale / u[0] * float(np.dot(gd[1:], u[1:]))
                gd *= scale
                gd[0] = g0
            else:
                gd *= self.peak
        if op is None:
            gv = gd
        else:
            gv = np.bincount(i, gd * (1.0 - lam), m)
            gv += np.bincount(i + 1, gd * lam, m)
        return J, (np.cumsum(gv) if self.monotone else gv)

    def minimize(self, name: str, x0: FloatArray, op, maxiter: int, tol: float, method: str) -> tuple[FloatArray, Stage]:
        lo, hi = self.bounds(x0.shape[0])
        x0 = np.clip(x0, lo, hi)
        start, ev0 = time.perf_counter(), self.evaluations
        if method == "L-BFGS-B":
            options = dict(maxiter=maxiter, maxfun=4 * maxiter, maxcor=20 if op is not None else 10, ftol=tol, gtol=1e-14)
        else:
            options = dict(maxfun=10 * maxiter, ftol=tol, gtol=1e-14)
        res = sopt.minimize(self.fun, x0, args=(op,), jac=True, method=method, bounds=sopt.Bounds(lo, hi),
                            options=options)
        g = np.asarray(res.jac, dtype=np.float64)
        free = ((res.x > lo) | (g < 0)) & ((res.x < hi) | (g > 0))
        pg = float(np.max(np.abs(np.where(free, g, 0.0)))) if g.size else 0.0
        stage = Stage(name, x0.shape[0], int(getattr(res, "nit", 0)), self.evaluations - ev0, float(res.fun), pg,
                      bool(res.success), str(res.message), time.perf_counter() - start)
        return res.x, stage

    def lr_from_x(self, x: FloatArray, op=None) -> FloatArray:
        v = np.cumsum(x[::-1])[::-1] if self.monotone else x
        if op is not None:
            i, lam, _ = op
            v = v[i] * (1.0 - lam) + lam * v[i + 1]
        return self.full_lr(self.decay_from_u(v))


# ---------------------------------------------------------------------------
# Standard schedules under the same constraints


def _decay_shape(name: str, n: int) -> FloatArray:
    from . import schedules as S

    if name == "linear":
        return S.linear(n)
    if name == "cosine":
        return S.cosine(n)
    if name == "constant":
        return np.ones(n)
    return S.wsd(n, decay_frac=_WSD_DECAY)


def _best_scale(prob: _Problem, shape: FloatArray) -> tuple[float, FloatArray]:
    """The decay ``floor + c * shape`` at its best c (free mode): 1-D search on log c."""

    def f(logc: float) -> float:
        lr = prob.full_lr(prob.floor + math.exp(logc) * shape)
        try:
            return prob.value(lr)
        except ValueError:
            return math.inf

    if prob.model is None:
        c_ref = prob.D / (prob.G * math.sqrt(prob.T * (1.0 if prob.gam is None else float(np.mean(prob.gam)))))
        grid = math.log(c_ref) + np.linspace(-12.0, 12.0, 25)
    else:
        grid = np.log(10.0) * np.linspace(-8.0, 2.0, 41)
    vals = [f(x) for x in grid]
    k = int(np.argmin(vals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    res = sopt.minimize_scalar(f, bounds=(lo, hi), method="bounded", options=dict(xatol=1e-10))
    best = res.x if res.fun <= vals[k] else grid[k]
    c = math.exp(best)
    return c, prob.full_lr(prob.floor + c * shape)


def _baseline(prob: _Problem, name: str) -> FloatArray:
    """The named decay over the post-warmup steps, feasible for ``prob``, at its best peak."""
    from .asymptotics import optimal_peak_lr

    s = _decay_shape(name, prob.n)
    if prob.mode == "shape":
        lr = prob.full_lr(s)
        eta, _ = optimal_peak_lr(lr, prob.D, prob.G, prob.gam, backend=prob.backend)
        return eta * lr
    if prob.mode == "fixed":
        return prob.full_lr(prob.floor + (prob.peak - prob.floor) * s)
    return _best_scale(prob, s)[1]


# ---------------------------------------------------------------------------
# The public function


def optimal_schedule(
    T: int,
    *,
    D: float = 1.0,
    G: float = 1.0,
    grad_sq: ArrayLike | None = None,
    model: LossModel | None = None,
    monotone: bool = True,
    warmup: int = 0,
    peak_lr: float | None = None,
    final_lr: float | None = None,
    L_star: float = 0.0,
    knots: int = 2048,
    maxiter: int = 1000,
    tol: float | None = None,
    method: str | None = None,
    backend: str | None = None,
    max_step: float | None = None,
    peak_range: tuple[float, float] | None = None,
    prefix: ArrayLike | None = None,
    progress: bool | None = None,
) -> OptimalSchedule:
    """The LR sequence minimising the last-iterate bound (or a loss model) under constraints.

    Parameters
    ----------
    T : int
        Number of steps (>= 2).
    D, G : float
        Distance and gradient bound of eq. (2.4) (> 0).
    grad_sq : array_like, shape (T,), optional
        Per-step G_t^2 (all > 0), e.g. measured squared gradient norms; G scales them.
    model : object with ``value_and_grad(lr) -> (float, ndarray)``, optional
        Minimise this model's predicted final loss instead of the bound (peak and shape
        together); see :class:`LossModel`.
    monotone : bool
        Non-increasing after the warmup (default True).
    warmup : int
        Length W of the linear warmup ramp, ``lr[t] = lr[W] t / W`` for t < W (0 <= W < T).
    peak_lr : float, optional
        Fix ``lr[W]`` (the peak); free by default.  With ``monotone=False`` it also caps
        every LR.
    final_lr : float, optional
        Floor: every LR after the warmup is ``>= final_lr`` (default 0, any positive LR).
    L_star : float
        Optimal loss L_* added to the bound.
    knots : int
        Size of the coarse stage (0 disables it); used when T - W > 1.5 knots.
    maxiter : int
        Iterations per stage (L-BFGS-B; TNC gets ``10 * maxiter`` evaluations).
    tol : float, optional
        Relative-reduction tolerance of the optimiser (scipy's ``ftol``; default 1e-15, or
        1e-12 for the multilevel method, whose levels stop when one gains less than
        ``100 tol`` relative).
    method : {None, "multilevel", "TNC", "L-BFGS-B", "auto"}
        ``"multilevel"`` (the default with a model, ``max_step``, ``peak_range`` or
        ``prefix``; monotone only): L-BFGS-B on a smooth non-increasing schedule given by
        a few hundred knots, coarse to fine and short horizon to long (module
        :mod:`cdfast._multilevel`): seconds at T = 10^6.  The others (default for the bound
        of eq. (2.4) without those options) optimise every LR: "TNC" (scipy's truncated
        Newton), "L-BFGS-B", or "auto" (L-BFGS-B then TNC); exact to the last digits at
        small T, minutes at T = 10^5 (docs/optimal_schedules.md has the measurements).
    backend : {None, "auto", "numba", "c"}
    max_step : float, optional
        Largest one-step change of the LR after the warmup, as a fraction of the peak
        (e.g. 0.01); None: no limit.  Needs ``method="multilevel"``.
    peak_range : (float, float), optional
        Bounds of a free peak LR (a trust region); default: a wide range (1e-8 to 100 with
        a model).
    prefix : array_like, optional
        LRs already run (from a checkpoint): ``lr[:len(prefix)]`` is ``prefix`` exactly and
        only the rest is optimised, non-increasing from ``prefix[-1]`` (then ``warmup`` must
        be 0 and ``peak_lr`` is not given: the prefix holds both).
    progress : bool, optional
        A progress bar (tqdm) over the levels of the multilevel method; None: when stderr
        is a terminal.

    Returns
    -------
    OptimalSchedule
        ``lr``, ``value``, ``bound``, ``peak_lr``, convergence (``converged``,
        ``iterations``, ``evaluations``, ``grad_norm``, ``stages``) and ``baselines``;
        ``numpy.asarray(result)`` gives the LRs.

    Raises
    ------
    ValueError
        T < 2, warmup >= T, a floor above the peak, a non-positive peak, D or G,
        ``grad_sq`` of the wrong length or with entries <= 0.
    TypeError
        Non-integer T or warmup, or a model without ``value_and_grad``.

    Examples
    --------
    >>> import numpy as np, cdfast
    >>> res = cdfast.optimal_schedule(1000)
    >>> bool(res.converged), bool(res.value <= min(res.baselines.values()))
    (True, True)
    >>> bool((np.diff(res.lr) <= 0).all())
    True

    Notes
    -----
    Minimises eq. (2.4) (convex in the LRs) with a bound-constrained optimiser on a
    parametrisation that keeps the constraints; the peak LR follows in closed form when the problem is scale-free
    (``eta = (D/G) sqrt(a/b)``, as :func:`cdfast.optimal_peak_lr`).  The result is never
    worse than the best of the linear, cosine and WSD decays under the same constraints:
    the final stage starts from the best of them whenever the coarse stage is not better.
    See the module docstring and docs/optimal_schedules.md.
    """
    t_start = time.perf_counter()
    T = V.check_int(T, "T", 2)
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral) or warmup < 0:
        raise ValueError(f"warmup = {warmup!r} must be a non-negative integer number of steps")
    W = int(warmup)
    if W >= T:
        raise ValueError(f"warmup = {W} must be < T = {T}: at least one step must follow the warmup")
    D = _check_positive(D, "D")
    G = _check_positive(G, "G")
    L_star = V.check_scalar(L_star, "L_star", nonneg=False)
    gam = _check_grad_sq(grad_sq, T)
    model = _check_model(model)
    peak = None if peak_lr is None else _check_positive(peak_lr, "peak_lr")
    floor = 0.0 if final_lr is None else V.check_scalar(final_lr, "final_lr")
    if peak is not None and floor > peak:
        raise ValueError(
            f"final_lr = {floor!r} is above peak_lr = {peak!r}: the floor must not exceed the peak "
            "(lower final_lr or raise peak_lr)"
        )
    if not isinstance(monotone, (bool, np.bool_)):
        raise TypeError(f"monotone must be True or False, got {monotone!r}")
    knots = V.check_int(knots, "knots", 0)
    maxiter = V.check_int(maxiter, "maxiter", 1)
    tol = None if tol is None else V.check_scalar(tol, "tol")
    if method not in (None, "multilevel", "TNC", "L-BFGS-B", "auto"):
        raise ValueError(f"method = {method!r} must be 'multilevel', 'TNC', 'L-BFGS-B', 'auto' or None")
    if max_step is not None:
        max_step = V.check_scalar(max_step, "max_step")
        if not 0.0 < max_step <= 1.0:
            raise ValueError(f"max_step = {max_step!r} must lie in (0, 1]: a fraction of the peak LR per step")
    if peak_range is not None:
        peak_range = _check_range(peak_range, "peak_range")
        if peak is not None:
            raise ValueError("peak_range bounds a free peak; peak_lr fixes it: give one of them")
    if prefix is not None:
        prefix = V.as_vector(prefix, "prefix")
        V.check_values(prefix, "prefix")
        if not 1 <= prefix.shape[0] < T:
            raise ValueError(f"prefix has {prefix.shape[0]} LRs; it must have 1 to T - 1 = {T - 1} (at least one "
                             "step left to plan)")
        if W or peak is not None:
            raise ValueError("prefix holds the warmup and the current LR: give warmup=0 and no peak_lr with it")
        if prefix[-1] <= floor:
            raise ValueError(f"the last LR of prefix, {prefix[-1]!r}, is not above final_lr = {floor!r}: nothing "
                             "to decay")
    if method is None:
        special = model is not None or max_step is not None or peak_range is not None or prefix is not None
        method = "multilevel" if special and monotone else "TNC"
    if method != "multilevel" and (max_step is not None or peak_range is not None or prefix is not None):
        raise ValueError(f"max_step, peak_range and prefix need method='multilevel' (monotone); got "
                         f"method={method!r}, monotone={monotone!r}")
    if method == "multilevel" and not monotone:
        raise ValueError("method='multilevel' optimises non-increasing schedules (monotone=True); use "
                         "method='TNC' for monotone=False")

    if tol is None and method != "multilevel":
        tol = 1e-15
    prob = _Problem(T, W, bool(monotone), peak, floor, gam, D, G, L_star, model, backend)
    constraints = dict(D=D, G=G, L_star=L_star, knots=knots, grad_sq=gam is not None)
    if method == "multilevel":
        constraints.update(max_step=max_step, peak_range=peak_range, prefix=None if prefix is None else prefix.shape[0])
        return _multilevel(prob, prefix, max_step, peak_range, maxiter, 1e-12 if tol is None else tol, constraints,
                           t_start, progress)

    # Candidates at full resolution: the standard decays under the same constraints.
    base_lr = {name: _baseline(prob, name) for name in BASELINES}
    baselines = {name: prob.value(lr) for name, lr in base_lr.items()}
    best_name = min(baselines, key=baselines.get)
    if prob.mode == "free":
        prob.eta0 = float(base_lr[best_name][W]) - floor or 1.0
    if prob.mode != "shape":
        prob.f0 = abs(baselines[best_name] - (L_star if model is None else 0.0)) or 1.0

    def start_x(lr: FloatArray) -> FloatArray:
        return prob.x_from_u(prob.u_from_decay(lr[W:]))

    if peak is not None and floor == peak:  # nothing to choose: constant after the warmup
        lr = prob.full_lr(np.full(prob.n, peak))
        return _result(prob, lr, (), baselines, constraints, t_start, "constant: final_lr equals peak_lr")

    candidates = [start_x(base_lr[best_name])]
    if prob.mode == "shape":
        exact = stationary_schedule(prob.n, D, G, None if gam is None else gam[W:])
        if monotone:
            exact = sopt.isotonic_regression(exact, increasing=False).x
        candidates.append(start_x(prob.full_lr(exact)))

    stages: list[Stage] = []
    if knots and prob.n > 1.5 * knots:
        tk = _knots(prob.n, knots)
        t = np.arange(prob.n)
        i = np.minimum(np.searchsorted(tk, t, side="right") - 1, tk.shape[0] - 2)
        lam = (t - tk[i]) / (tk[i + 1] - tk[i])
        op = (i, lam, tk.shape[0])
        u0 = prob.u_from_decay(base_lr[best_name][W:])[tk]
        xc, st = prob.minimize("coarse", prob.x_from_u(u0), op, maxiter, tol, "L-BFGS-B" if method == "auto" else method)
        stages.append(st)
        candidates.append(start_x(prob.lr_from_x(xc, op)))

    # The full-resolution stage starts from the best candidate.
    scores = [prob.fun(np.clip(x, *prob.bounds(x.shape[0])), None)[0] for x in candidates]
    x0 = candidates[int(np.argmin(scores))]
    best = (min(scores), x0)
    for m in (("L-BFGS-B", "TNC") if method == "auto" else (method,)):
        x0, st = prob.minimize("full " + m, best[1], None, maxiter, tol, m)
        stages.append(st)
        if st.objective <= best[0]:
            best = (st.objective, x0)
    lr = prob.lr_from_x(best[1])
    return _result(prob, lr, tuple(stages), baselines, constraints, t_start, stages[-1].message)


def _objective_at(prob: _Problem, T: int):
    """lr -> (value, gradient) of what ``prob`` minimises at horizon T (the model, or eq. (2.4))."""

    def f(lr: FloatArray) -> tuple[float, FloatArray]:
        if prob.model is not None:
            val, grad = prob.model.value_and_grad(lr)
            grad = np.array(grad, dtype=np.float64)
            if grad.shape != (lr.shape[0],):
                raise ValueError(f"model.value_and_grad returned a gradient of shape {grad.shape}; "
                                 f"expected ({lr.shape[0]},)")
            # an LR of 0 (the ramp's first step) is never varied; a model on eta^p has an infinite slope there
            grad[lr == 0.0] = 0.0
            val = float(val)
            if math.isfinite(val) and not np.isfinite(grad).all():
                raise ValueError("model.value_and_grad returned a non-finite gradient at a feasible schedule")
            return val, grad
        d2, g2 = prob.D * prob.D, prob.G * prob.G
        gam = prob.gam if T == prob.T else None
        a, b, grad = _grad_kernel(lr, gam, d2, g2, prob.backend, "optimal_schedule")
        return prob.L_star + d2 * a + g2 * b, grad

    return f


def _peak_search(fg, ulo: float, uhi: float, u0: float, max_evals: int = 14, xtol: float = 1e-4):
    """(u, f) minimising ``f(u)`` (unimodal) on [ulo, uhi] from ``u0``; ``fg(u) -> (f, df/du)``.

    Steps downhill (doubling) until the slope changes sign, then false position (Illinois)
    on the slope: a handful of evaluations, each one O(T) pass.
    """
    u0 = min(max(u0, ulo), uhi)
    f0, d0 = fg(u0)
    best = (f0, u0)
    if not math.isfinite(f0):
        raise ValueError("the objective is infinite at the starting peak LR")
    evals, step = 1, 0.25
    a, da = u0, d0
    b = db = None
    direction = -1.0 if d0 > 0 else 1.0
    while evals < max_evals and d0 != 0.0:
        u1 = min(max(a + direction * step, ulo), uhi)
        if u1 == a:
            return best[1], best[0]  # at the end of the range, still downhill
        f1, d1 = fg(u1)
        evals += 1
        if not math.isfinite(f1):
            b, db = u1, direction * math.inf
            break
        if f1 < best[0]:
            best = (f1, u1)
        if (d1 > 0) == (d0 > 0) and d1 != 0.0 and f1 <= f0:
            a, da, f0, step = u1, d1, f1, step * 2.0
            continue
        b, db = u1, d1
        break
    side = 0
    while b is not None and evals < max_evals and abs(b - a) > xtol:
        if math.isfinite(db) and db != da:
            u = b - db * (b - a) / (db - da)
            if not min(a, b) < u < max(a, b):
                u = 0.5 * (a + b)
        else:
            u = 0.5 * (a + b)
        f, d = fg(u)
        evals += 1
        if not math.isfinite(f):
            b, db = u, direction * math.inf
            continue
        if f < best[0]:
            best = (f, u)
        if d == 0.0:
            break
        if (d > 0) == (da > 0):
            a, da = u, d
            if side == -1 and math.isfinite(db):
                db *= 0.5
            side = -1
        else:
            b, db = u, d
            if side == 1:
                da *= 0.5
            side = 1
    return best[1], best[0]


def _multilevel(prob: _Problem, prefix, max_step, peak_range, maxiter, tol, constraints, t_start,
                progress) -> OptimalSchedule:
    from . import _multilevel as ML
    from ._progress import Progress

    T, W, floor = prob.T, prob.W, prob.floor
    if peak_range is None and prob.peak is None and prefix is None:
        if prob.model is None:
            c = prob.D / (prob.G * math.sqrt(T * (1.0 if prob.gam is None else float(np.mean(prob.gam)))))
            peak_range = (c * 1e-6, c * 1e6)
        else:
            peak_range = (1e-8, 1e2)
    rng = peak_range or (1.0, 1.0)
    coarsen = prob.gam is None
    found: dict[tuple[int, str], float] = {}  # best peak of each baseline by horizon

    def baseline(Th: int, Wh: int, name: str) -> tuple[FloatArray, float]:
        """The named decay at horizon Th after the warmup (or prefix), at its best peak in the range."""
        objective = _objective_at(prob, Th)
        a = prefix.shape[0] if prefix is not None else Wh
        s = _decay_shape(name, Th - a)
        ramp = np.arange(Wh, dtype=np.float64) / Wh if Wh else None

        def lr_of(peak: float) -> FloatArray:
            lr = np.empty(Th)
            if prefix is not None:
                lr[:a] = prefix
            elif Wh:
                lr[:Wh] = peak * ramp
            lr[a:] = floor + (peak - floor) * s
            return lr

        fixed = prefix[-1] if prefix is not None else prob.peak
        if fixed is not None:
            lr = lr_of(float(fixed))
            return lr, objective(lr)[0]

        def fg(u: float) -> tuple[float, float]:
            peak = math.exp(u)
            lr = lr_of(peak)
            f, g = objective(lr)
            d = float(np.dot(g[a:], s)) + (float(np.dot(g[:Wh], ramp)) if Wh else 0.0)
            return f, d * peak

        ulo, uhi = math.log(rng[0]), math.log(rng[1])
        prev = [v for (h, n), v in found.items() if n == name]
        u0 = prev[-1] if prev else 0.5 * (ulo + uhi)
        # from the peak found at a shorter horizon: a few O(T) evaluations at a long one
        u, f = _peak_search(fg, ulo, uhi, u0, max_evals=30 if not prev else 10)
        found[(Th, name)] = u
        return lr_of(math.exp(u)), f

    def start(Th: int, Wh: int) -> FloatArray:
        # from a checkpoint, holding the LR is a candidate too (an LR already below the best one is best held)
        got = [baseline(Th, Wh, name) for name in BASELINES + (("constant",) if prefix is not None else ())]
        return min(got, key=lambda v: v[1])[0]

    n_levels = len(ML.KNOT_LEVELS) + 3
    with Progress("optimal schedule", total=n_levels, enabled=progress) as bar:
        lr, records = ML.solve(T, lambda Th: _objective_at(prob, Th), prefix=prefix, warmup=W, floor=floor,
                               peak=prob.peak, peak_range=rng, max_step=max_step, start=start, tol=tol,
                               level_tol=max(100.0 * tol, 1e-10), maxiter=maxiter, coarsen=coarsen, progress=bar)
        base = {name: baseline(T, W, name) for name in BASELINES}
    objective = _objective_at(prob, T)
    value = objective(lr)[0]
    message = records[-1]["message"] if records else "no levels"
    best = min(base, key=lambda n: base[n][1])
    if base[best][1] < value and _feasible(base[best][0], W if prefix is None else prefix.shape[0], max_step):
        lr, value, message = base[best][0], base[best][1], f"the {best} baseline: no level improved on it"
    stages = tuple(Stage(r["name"], r["variables"], r["iterations"], r["evaluations"], r["objective"],
                         r["grad_norm"], r["converged"], r["message"], r["seconds"]) for r in records)
    from .bounds import bound_terms

    a, b = bound_terms(lr, prob.gam, prob.backend)
    full = [s for s in stages if s.name.startswith(f"T={T} ")]
    last = full[-1] if full else None
    return OptimalSchedule(
        lr=lr, value=value, bound=prob.L_star + prob.D * prob.D * a + prob.G * prob.G * b,
        peak_lr=float(lr[W]) if prefix is None else float(prefix[-1]),
        converged=bool(last is not None and (last.converged or len(full) > 1)),
        iterations=sum(s.iterations for s in stages), evaluations=sum(r["evaluations"] for r in records),
        grad_norm=last.grad_norm if last else 0.0, message=message, stages=stages,
        baselines={n: v[1] for n, v in base.items()}, T=T, warmup=W, monotone=True, final_lr=floor,
        fixed_peak=prob.peak is not None or prefix is not None,
        objective="model" if prob.model is not None else "bound", seconds=time.perf_counter() - t_start,
        constraints=constraints)


def _feasible(lr: FloatArray, a: int, max_step: float | None) -> bool:
    if max_step is None:
        return True
    return float(np.max(np.abs(np.diff(lr[max(a - 1, 0):])), initial=0.0)) <= max_step * float(lr.max()) * (1 + 1e-12)


def _result(prob: _Problem, lr, stages, baselines, constraints, t_start, message) -> OptimalSchedule:
    from .bounds import bound_terms

    if prob.mode == "shape":  # the peak in closed form
        a, b = bound_terms(lr, prob.gam, prob.backend)
        lr = lr * ((prob.D / prob.G) * math.sqrt(a / b))
    value = prob.value(lr)
    a, b = bound_terms(lr, prob.gam, prob.backend)
    bound = prob.L_star + prob.D * prob.D * a + prob.G * prob.G * b
    last = stages[-1] if stages else None
    return OptimalSchedule(
        lr=lr,
        value=value,
        bound=bound,
        peak_lr=float(lr[prob.W]),
        converged=last.converged if last else True,
        iterations=sum(s.iterations for s in stages),
        evaluations=prob.evaluations,
        grad_norm=last.grad_norm if last else 0.0,
        message=message,
        stages=stages,
        baselines=baselines,
        T=prob.T,
        warmup=prob.W,
        monotone=prob.monotone,
        final_lr=prob.floor,
        fixed_peak=prob.peak is not None,
        objective="model" if prob.model is not None else "bound",
        seconds=time.perf_counter() - t_start,
        constraints=constraints,
    )


__all__ = ["optimal_schedule", "OptimalSchedule", "Stage", "LossModel", "stationary_schedule", "refined"]
