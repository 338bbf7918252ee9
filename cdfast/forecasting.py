"""Forecast the final loss of a run in progress, from its whole planned schedule.

A run's learning-rate schedule is known in advance (``eta_1 .. eta_T``), its losses only
up to the current step.  :class:`Forecaster` fits the default loss model's members (the
convex bound on an effective LR, :mod:`cdfast.models.convex`: ``power-bound`` and
``sat-bound``, averaged) to the losses logged so far and predicts the rest of the curve
under the *planned* schedule: the loss at ``T``, its interval, and the curve in between.

What makes it a forecaster rather than a refit:

* **Incremental.**  The parameter-free work of the models (the bound's terms at the
  Chebyshev nodes of the shape parameter, :meth:`PowerBound.prepare`) is done once per
  logged step, when the step arrives, and once for the forecast grid; a new loss costs
  the terms at one step plus a local least-squares search from the previous optimum
  (:func:`cdfast.models.fitting.fit_separable` with ``start=``).  The multi-start search
  runs only on the first fit and when the fitted points have grown by ``RESTART_GROWTH``
  since the last one, so its cost is paid O(log n) times over a run.
* **Noisy losses.**  Training losses logged by trainers (per batch, or averaged over the
  logging window) are far noisier than validation losses.  The noise level is estimated
  from the data (the spread of successive log-differences, robust to outliers), and the
  models' priors on their shape parameters are weighted by it: a curve that cannot
  determine an exponent (noisy, or short) leaves it at its prior, which is what keeps
  noisy fits from running away (a floor of ``-317`` and a negative final loss, before).
  Noisy data are first pooled into medians of ``POOL`` consecutive points (robust to loss
  spikes).  The loss floor is bounded below by 0 (a cross-entropy cannot be negative).
* **Exact where it counts.**  Fits search on the members' Chebyshev surrogate of the
  bound's terms in the shape parameter (:meth:`PowerBound.search_basis`, relative error up
  to ~0.5% in a term at the edges of a shape parameter's range), as the offline fit does;
  the forecast curve and the final loss use the exact terms at the fitted shape (one O(T)
  pass per member when the shape changes, i.e. after a search, not after every loss).
* **Honest.**  Where the data cannot support a forecast (too few points after the early
  transient, a diverged run, a fit that does not describe the curve, an interval that
  would include a non-positive loss) the result carries a ``reason`` and no numbers.

The interval.  Its relative half-width at ``level = 0.9`` is

    sqrt( (K_DROP * drop^DROP_POWER)^2 + (K_SPREAD * spread)^2 + MODEL_FLOOR^2 + noise_T^2
          + (K_NOISE * noise)^2 )

where ``drop`` is the relative loss drop the model still predicts between the last
logged step and ``T`` (what is extrapolated: most of the error of a forecast is in the
size of the cooldown's gain), ``spread`` the disagreement of the two members at ``T``,
``MODEL_FLOOR`` what remains when nothing is extrapolated, ``noise_T`` the noise of
the final loss itself for noisy losses (the mean of the last ``FINAL_FRAC`` of a run's
logged losses), and ``noise`` the relative noise of one logged loss (what a noisy fit's
parameters inherit).  Other levels scale it by normal quantiles.  The constants were
calibrated on the real runs of shared/data by ``bench/validate_forecast.py``, which
reports the coverage of the interval at every cut of every run.

Indexing is the paper's: ``lr[i] = eta_{i+1}`` is the LR of update ``i + 1``; a loss
logged at step ``s`` is that of ``w_s``, the weights after ``s`` updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validate as V
from .models.base import LossModel, Param
from .models.convex import ConvexPrep, PowerBound
from .models._curvefit import WEIGHT_POWER
from .models.fitting import fit_separable
from .models._registry import DEFAULT_MODEL, get_model
from .models.gain import gain_priors
from .models.transfer import ABRUPT_NOTE, ABRUPT_WINDOW, abrupt_falls

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

__all__ = ["Forecast", "Forecaster", "forecast"]

#: Points at steps <= BURN_FRAC * T are the early transient: neither fitted nor forecast from
#: (the same fraction as ``fit_loss_curve(burn_in="auto")``).
BURN_FRAC = 0.1
#: The prior on the noise term's size (GAIN_PRIOR, GAIN_SLOPE, GAIN_PEAK_RANGE, GAIN_YIELD) is the
#: default model's: :mod:`cdfast.models.gain`.  Without it the noise term and the floor trade off
#: freely while the LR is near its peak (b' is then nearly constant), so a short or noisy curve
#: could forecast any cooldown gain.
#: Fewest (pooled) points after the burn-in for a forecast.
MIN_POINTS = 8
#: Noisy losses are pooled into medians of up to this many consecutive logged points (fewer
#: while that would leave fewer than MIN_POINTS of them: a run logged rarely is forecast as soon
#: as one logged often).
POOL = 5
#: A relative noise (robust spread of successive log-differences / sqrt 2) above this marks
#: the losses as noisy when ``noisy=None``; validation losses of the real runs sit at
#: 0.05-0.3%, per-step training losses at 1-5%.
NOISY_ABOVE = 0.006
#: The models' priors cost one prior width per this relative misfit (as in the offline fit)
#: or per the estimated noise level, whichever is larger.
PRIOR_NOISE = 1e-3
#: A new multi-start search when the fitted points have grown by this factor since the last;
#: a local search from the previous optimum when they have grown by SEARCH_GROWTH; in between,
#: only the linear coefficients are re-solved at the previous shape (one bounded linear solve).
RESTART_GROWTH = 1.5
SEARCH_GROWTH = 1.1
#: Declined as a poor fit when the fitted points' RMS relative misfit exceeds this multiple of
#: the noise level plus POOR_FLOOR: the model does not describe the curve.
POOR_RATIO = 4.0
POOR_FLOOR = 0.01
#: Declined when the interval's relative half-width exceeds this: the data cannot tell.
MAX_HALF_WIDTH = 0.25
#: Interval constants (90% level), calibrated by bench/validate_forecast.py (module docstring):
#: chosen on every second run, they cover 0.94-1.00 (validation) and 0.94-1.00 (training) of
#: the other runs' final losses at 25, 50 and 75% of a run.
K_DROP = 0.10
DROP_POWER = 1.25
K_SPREAD = 1.0
MODEL_FLOOR = 0.004
K_NOISE = 0.4
#: For noisy losses, the final loss is the mean of the last FINAL_FRAC of the run's logged losses.
FINAL_FRAC = 0.02
#: Points of the predicted curve between the burn-in and T.
GRID = 256


@dataclass(frozen=True)
class Forecast:
    """The forecast of a run's final loss, as of its last logged step.

    Attributes
    ----------
    T : int
        The planned horizon (``len(lr)``).
    step : int
        The last logged step the forecast uses (0 before any).
    level : float
        The interval's level.
    loss, low, high : float or None
        The predicted loss at step ``T`` and its ``level`` interval; None when the forecast
        was declined (see ``reason``).  For noisy losses, the loss at ``T`` is the mean of the
        last ``FINAL_FRAC`` of the run's logged losses (what a noisy final loss is compared by).
    steps, curve, curve_low, curve_high : ndarray
        The predicted curve after ``step`` (a grid of steps ending at ``T``) and its ``level``
        band (the interval's formula at each step); empty when declined.
    reason : str or None
        Why no forecast was made (too few points, diverged, poor fit, ...) and what would
        help; None when the forecast stands.
    noisy : bool
        Whether the losses were treated as noisy (training losses).
    noise : float
        The estimated relative noise of one logged loss.
    n_points : int
        Logged points used by the fit (after the burn-in, before pooling).
    diverged : (int, float) or None
        The step and value of the first non-finite loss, if the run diverged.
    params : dict
        The fitted parameters of both members (empty when declined).
    drop, spread, noise_T : float
        What the interval is built from (module docstring): the relative drop still
        predicted between ``step`` and ``T``, the members' relative disagreement at ``T``,
        the relative noise of the final loss itself (0 for validation losses).
    """

    T: int
    step: int
    level: float
    loss: float | None
    low: float | None
    high: float | None
    steps: IntArray = field(repr=False)
    curve: FloatArray = field(repr=False)
    reason: str | None = None
    noisy: bool = False
    noise: float = float("nan")
    n_points: int = 0
    diverged: tuple[int, float] | None = None
    params: dict[str, float] = field(default_factory=dict, repr=False)
    drop: float = float("nan")
    spread: float = float("nan")
    noise_T: float = float("nan")
    curve_low: FloatArray = field(default_factory=lambda: np.empty(0), repr=False)
    curve_high: FloatArray = field(default_factory=lambda: np.empty(0), repr=False)
    #: what the forecast extrapolates beyond the logged part of the run, in words (an abrupt LR
    #: fall still ahead that the run has not shown: :mod:`cdfast.models.transfer`)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the forecast stands (``loss``, ``low``, ``high`` are numbers)."""
        return self.reason is None

    @property
    def fraction(self) -> float:
        """How far the run is: ``step / T``."""
        return self.step / self.T

    def summary(self) -> str:
        where = f"step {self.step} of {self.T} ({100 * self.fraction:.1f}% of the run)"
        if not self.ok:
            return f"no forecast at {where}: {self.reason}"
        kind = "training loss (noisy; mean of the run's last 2% of logged losses)" if self.noisy else "loss"
        return (f"forecast of the final {kind} at step T = {self.T}: {self.loss:.4f} "
                f"[{self.low:.4f}, {self.high:.4f}] ({100 * self.level:g}% interval), "
                f"extrapolated from {where}, {self.n_points} points fitted"
                + "".join(f"\n  note: {n}" for n in self.notes))

    def __str__(self) -> str:
        return self.summary()


def _members() -> list[PowerBound]:
    """The default model's members (the loss floor bounded below by 0, the noise term's prior)."""
    return list(get_model(DEFAULT_MODEL).members)


def _weighted_priors(shape: tuple[Param, ...], factor: float) -> tuple[Param, ...]:
    """``shape`` with every prior width divided by ``factor`` (the priors weigh ``factor`` times more)."""
    return tuple(p if p.prior is None else replace(p, prior=(p.prior[0], p.prior[1] / factor)) for p in shape)


def _fixed(shape: tuple[Param, ...], theta: FloatArray) -> tuple[Param, ...]:
    """``shape`` fixed at ``theta`` (a fit then only solves the coefficients)."""
    return tuple(replace(p, lo=float(t), hi=float(t), start=(float(t),), prior=None) for p, t in zip(shape, theta))


class _OnSurrogate(LossModel):
    """A member with this fit's shape (its priors weighted by the noise, or fixed between
    searches), fitted and evaluated on its Chebyshev surrogate (no exact polish)."""

    has_surrogate = False

    def __init__(self, member: PowerBound, shape: tuple[Param, ...]) -> None:
        self.member = member
        self.name = member.name
        self.coefs = member.coefs
        self.shape = shape

    def prepare(self, lr, steps, grad_sq=None):  # pragma: no cover - the forecaster prepares the member
        raise NotImplementedError("prepare the wrapped member")

    def basis(self, theta: FloatArray, prep: ConvexPrep) -> FloatArray:
        return self.member.search_basis(theta, prep)


def _noise(y: FloatArray) -> float:
    """Relative noise of one point: the robust spread of successive log-differences / sqrt 2."""
    if y.size < 4:
        return float("nan")
    d = np.diff(np.log(y))
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


def _pool(steps: IntArray, y: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
    """Medians of ``k`` consecutive points, at their middle step (the last group may be shorter)."""
    n = y.size
    if k <= 1 or n < 2 * k:
        return steps, y
    cut = np.arange(0, n, k)
    ys = np.array([np.median(y[i:i + k]) for i in cut])
    ss = np.array([steps[min(i + (min(k, n - i) - 1) // 2, n - 1)] for i in cut], dtype=np.int64)
    return ss, ys


def _concat(a: ConvexPrep, b: ConvexPrep) -> ConvexPrep:
    """Two preparations of one model at consecutive step ranges, as one."""
    return ConvexPrep(b.lr, np.concatenate([a.steps, b.steps]), b.grad_sq, b.p_nodes,
                      np.concatenate([a.log_a, b.log_a], axis=1), np.concatenate([a.log_b, b.log_b], axis=1))


class Forecaster:
    """The final loss of a run in progress, updated as losses arrive.

    Parameters
    ----------
    lr : array_like, shape (T,)
        The *whole planned* schedule ``eta_1 .. eta_T`` (``lr[i]`` is the LR of update
        ``i + 1``), finite and >= 0, with a positive LR somewhere after the burn-in.
    level : float
        Level of the interval, in (0, 1).
    noisy : bool or None
        True for training losses (noisy), False for validation losses, None to decide from
        the data (relative noise above ``NOISY_ABOVE``).

    Examples
    --------
    >>> fc = Forecaster(lr)                       # doctest: +SKIP
    >>> for step, loss in logged: fc.update(step, loss)
    >>> print(fc.forecast())
    """

    def __init__(self, lr: ArrayLike, *, level: float = 0.9, noisy: bool | None = None) -> None:
        x = V.as_vector(lr, "lr")
        V.check_values(x, "lr")
        self.T = int(x.shape[0])
        self.level = V.check_scalar(level, "level")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level = {level!r} must lie in (0, 1), e.g. 0.9 for a 90% interval")
        if noisy is not None and not isinstance(noisy, (bool, np.bool_)):
            raise TypeError(f"noisy must be True, False or None, got {noisy!r}")
        self.noisy_option = None if noisy is None else bool(noisy)
        self._lr = x
        self._burn = int(BURN_FRAC * self.T)
        positive = np.flatnonzero(x > 0)
        if positive.size == 0 or positive[-1] + 1 <= self._burn:
            raise ValueError("lr has no positive learning rate after the first "
                             f"{100 * BURN_FRAC:g}% of the run (steps 1..{self._burn}); pass the whole planned schedule")
        self._steps: list[int] = []
        self._losses: list[float] = []
        self.diverged: tuple[int, float] | None = None
        self._members = _members()
        self._prep: list[ConvexPrep | None] = [None, None]  # per member, at self._prepared steps
        self._prepared = np.empty(0, dtype=np.int64)
        self._grid_prep: list[ConvexPrep] | None = None
        self._theta: list[FloatArray | None] = [None, None]
        self._restart_at = 0
        self._search_at = 0
        #: how many multi-start and local searches have run (the rest of the updates only re-solved
        #: the linear coefficients): O(log n) of each over n updates
        self.n_restarts = 0
        self.n_searches = 0
        self._cached: Forecast | None = None
        # abrupt LR falls (models.transfer): the largest reached by each step, and the largest from each step on
        self._falls = abrupt_falls(x)
        self._falls_seen = np.maximum.accumulate(self._falls)
        self._falls_ahead = np.maximum.accumulate(self._falls[::-1])[::-1]

    # -- data ---------------------------------------------------------------

    @property
    def step(self) -> int:
        """The last logged step (0 before any)."""
        return self._steps[-1] if self._steps else 0

    @property
    def n(self) -> int:
        """How many losses have been logged."""
        return len(self._steps)

    def update(self, step: int | ArrayLike, loss: float | ArrayLike) -> None:
        """Add the loss(es) logged at step(s) ``step`` (1-based updates done, increasing).

        A non-finite loss marks the run as diverged at that step: the forecast then says so
        instead of forecasting from the steps before it.
        """
        s = V.as_steps(np.atleast_1d(np.asarray(step)), "step")  # whole numbers >= 1, strictly increasing
        y = V.as_vector(np.atleast_1d(np.asarray(loss)), "loss")
        if s.shape != y.shape:
            raise ValueError(f"step and loss must be two scalars or two 1-D arrays of one length, "
                             f"got {s.size} steps and {y.size} losses")
        if s[-1] > self.T:
            raise ValueError(f"step {s[-1]} lies beyond T = {self.T} (the length of lr); pass the whole planned "
                             "schedule as lr, one LR per update")
        if s[0] <= self.step:
            raise ValueError(f"steps must increase: step {s[0]} comes after step {self.step}")
        bad = np.isfinite(y) & (y <= 0)
        if bad.any():
            j = int(np.argmax(bad))
            raise ValueError(f"loss {float(y[j])!r} at step {s[j]} is not positive; the forecaster's models are fitted on "
                             "relative errors of positive losses")
        for sj, yj in zip(s.tolist(), y.tolist()):
            if not math.isfinite(yj):
                if self.diverged is None:
                    self.diverged = (int(sj), float(yj))
                continue
            self._steps.append(int(sj))
            self._losses.append(float(yj))
        if s.size:
            self._cached = None

    # -- fitting ------------------------------------------------------------

    def _prepare_steps(self, steps: IntArray) -> IntArray:
        """Extend the members' preparations to ``steps`` (prepared steps are kept; the columns stay
        sorted by step) and return the columns of ``steps``."""
        missing = np.setdiff1d(steps, self._prepared, assume_unique=True)
        if missing.size:
            top = int(missing[-1])
            for i, m in enumerate(self._members):
                p = m.prepare(self._lr[:top], missing)
                self._prep[i] = p if self._prep[i] is None else _concat(self._prep[i], p)
            self._prepared = np.concatenate([self._prepared, missing])
            if np.any(np.diff(self._prepared) < 0):  # a step inside the prepared range: re-sort
                order = np.argsort(self._prepared, kind="stable")
                self._prepared = self._prepared[order]
                self._prep = [p.select(order) for p in self._prep]
        idx = np.searchsorted(self._prepared, steps)
        if not np.array_equal(self._prepared[idx], steps):  # pragma: no cover - an internal invariant
            raise RuntimeError("cdfast forecaster: prepared steps out of step with the data; please report this")
        return idx

    def _grid(self) -> tuple[IntArray, list[ConvexPrep]]:
        steps = np.unique(np.linspace(self._burn + 1, self.T, GRID).round().astype(np.int64))
        if self._grid_prep is None:
            self._grid_prep = [m.prepare(self._lr, steps) for m in self._members]
        return steps, self._grid_prep

    def _decline(self, reason: str, noisy: bool = False, noise: float = float("nan"), n: int = 0) -> Forecast:
        return Forecast(self.T, self.step, self.level, None, None, None, np.empty(0, np.int64), np.empty(0),
                        reason, noisy, noise, n, self.diverged)

    def forecast(self) -> Forecast:
        """The forecast as of the last logged step (cached until the next update)."""
        if self._cached is None:
            self._cached = self._forecast()
        return self._cached

    def _forecast(self) -> Forecast:
        if self.diverged is not None:
            s, v = self.diverged
            return self._decline(f"the run diverged: its loss is {v} at step {s}; a diverged run has no final loss "
                                 "to forecast (restart from a checkpoint before it, with a smaller LR)")
        steps = np.asarray(self._steps, dtype=np.int64)
        y = np.asarray(self._losses, dtype=np.float64)
        keep = steps > self._burn
        steps, y = steps[keep], y[keep]
        first = self._burn + 1
        if steps.size < MIN_POINTS:
            return self._decline(f"too few losses after the early transient: {steps.size} logged after step "
                                 f"{self._burn} (the first {100 * BURN_FRAC:g}% of the run, not fitted), "
                                 f"{MIN_POINTS} needed; forecasts start once {MIN_POINTS} losses after step {first} "
                                 "are logged", n=int(steps.size))
        noise = _noise(y)
        noisy = noise > NOISY_ABOVE if self.noisy_option is None else self.noisy_option
        if noisy:  # medians of up to POOL points, as many as leave MIN_POINTS of them
            steps, y = _pool(steps, y, min(POOL, steps.size // MIN_POINTS))
        # (a step with a zero LR is predicted as the step after the last positive LR: the
        # members' prepare does that, models.convex.moved_steps)
        idx = self._prepare_steps(steps)
        grid, gpreps = self._grid()
        nz = noise if math.isfinite(noise) else 0.0
        factor = max(1.0, nz / PRIOR_NOISE)
        restart = steps.size >= RESTART_GROWTH * self._restart_at
        search = restart or steps.size >= SEARCH_GROWTH * self._search_at
        if restart:
            self._restart_at = steps.size
            self.n_restarts += 1
        if search:
            self._search_at = steps.size
            self.n_searches += 1
        # later points weigh more, as in the offline fit; the noise term's prior (models.gain) yields as the
        # LR comes down from its peak and weighs more for noisy losses, as the shape priors do
        pw = (steps / self.T) ** WEIGHT_POWER
        every = np.ones(steps.size, dtype=bool)
        preds_T, curves, now, params = [], [], [], {}
        rms = []
        for i, m in enumerate(self._members):
            p = self._prep[i]
            sub = p.select(idx)
            if search or self._theta[i] is None:
                shape = _weighted_priors(m.shape, factor)
                start = None if restart or self._theta[i] is None else self._theta[i]
            else:  # between searches: the previous shape, coefficients re-solved
                shape, start = _fixed(m.shape, self._theta[i]), None
            try:
                res = fit_separable(_OnSurrogate(m, shape), [sub], [y], [every], start=start, exact=False,
                                    point_weights=[pw], coef_priors=gain_priors(m, [self._lr], [steps], [y], [every], nz))
            except ValueError as e:
                return self._decline(f"the loss model cannot be fitted to these losses ({e})", noisy, noise,
                                     int(keep.sum()))
            self._theta[i] = res.theta
            full = np.concatenate([res.theta, res.coefs])
            gp = gpreps[i]
            if len(gp.exact) > 1:  # keep the exact terms of the latest shape only
                gp.exact = {q: v for q, v in gp.exact.items() if q == float(res.theta[1])}
            curve = m.basis(res.theta, gp) @ res.coefs  # exact terms: one O(T) pass per new shape
            curves.append(curve)
            fitted = m.search_basis(res.theta, sub) @ res.coefs
            rms.append(float(np.sqrt(np.mean((fitted / y - 1.0) ** 2))))
            now.append(float(fitted[-1]))
            preds_T.append(float(curve[-1]))
            params.update({f"{m.name}:{k}": float(v) for k, v in zip(m.param_names, full)})
        curve = np.mean(curves, axis=0)
        pred = float(curve[-1])
        if not (math.isfinite(pred) and np.all(np.isfinite(curve))):
            return self._decline("the fitted model is not finite at the forecast steps (check the schedule)",
                                 noisy, noise, int(keep.sum()))
        misfit = float(np.mean(rms))
        if misfit > POOR_RATIO * nz + POOR_FLOOR:
            return self._decline(f"poor fit: the model misses the logged losses by {100 * misfit:.2g}% RMS (their "
                                 f"noise is {100 * nz:.2g}%); the curve does not look like a loss curve under this "
                                 "schedule (check that lr is the schedule the run uses)", noisy, noise, int(keep.sum()))
        drop = abs(pred - float(np.mean(now))) / pred
        spread = abs(preds_T[0] - preds_T[1]) / pred
        noise_T = 0.0
        if noisy:  # the final loss is the mean of the last FINAL_FRAC of the logged losses
            every = max(1.0, float(np.median(np.diff(np.asarray(self._steps)))) if self.n > 1 else 1.0)
            noise_T = nz / math.sqrt(max(1.0, FINAL_FRAC * self.T / every))
        z = NormalDist().inv_cdf(0.5 + self.level / 2.0) / NormalDist().inv_cdf(0.95)
        # the interval's formula at every step of the curve (its last entry is the final loss's)
        halves = z * np.sqrt((K_DROP * (np.abs(curve - float(np.mean(now))) / curve) ** DROP_POWER) ** 2
                             + (K_SPREAD * np.abs(curves[0] - curves[1]) / curve) ** 2 + MODEL_FLOOR ** 2 + noise_T ** 2
                             + (K_NOISE * nz) ** 2)
        half = float(halves[-1])
        if half > MAX_HALF_WIDTH:
            return self._decline(f"the data cannot tell: the {100 * self.level:g}% interval would be +-{100 * half:.0f}% "
                                 f"of the forecast (the model still extrapolates a {100 * drop:.0f}% drop); "
                                 "more of the run is needed", noisy, noise, int(keep.sum()))
        after = grid > self.step
        return Forecast(self.T, self.step, self.level, pred, pred * (1.0 - half), pred * (1.0 + half),
                        grid[after], curve[after], None, bool(noisy), noise, int(keep.sum()), None, params,
                        drop, spread, noise_T, (curve * (1.0 - halves))[after], (curve * (1.0 + halves))[after],
                        self._notes())

    def _notes(self) -> tuple[str, ...]:
        """An abrupt LR fall still ahead, more abrupt than any the run has gone through (the loss
        right after it is an extrapolation: :mod:`cdfast.models.transfer`)."""
        if self.step >= self.T:
            return ()
        seen = float(self._falls_seen[self.step - 1]) if self.step > 0 else 0.0
        ahead = float(self._falls_ahead[self.step])
        if ahead - seen <= ABRUPT_NOTE:
            return ()
        at = self.step + int(np.argmax(self._falls[self.step:])) + 1  # the 1-based step the largest fall reaches
        return (f"the plan drops the LR by {100 * ahead:.3g}% of its peak within {ABRUPT_WINDOW:.1%} of the run by step "
                f"{at}, more abruptly than the run so far; the loss right after that fall is an extrapolation, likely "
                "forecast too high for a while",)


def forecast(lr: ArrayLike, steps: ArrayLike, losses: ArrayLike, *, level: float = 0.9,
             noisy: bool | None = None) -> Forecast:
    """Forecast the final loss of a run from the losses logged so far.

    Parameters
    ----------
    lr : array_like, shape (T,)
        The whole planned schedule ``eta_1 .. eta_T`` (not just the steps done so far).
    steps, losses : array_like
        The 1-based steps logged so far (increasing, <= T) and their losses; a non-finite
        loss marks the run as diverged.
    level : float
        Level of the interval.
    noisy : bool or None
        Training (noisy) or validation losses; None decides from the data.

    Returns
    -------
    Forecast
        ``loss``, ``low``, ``high`` at step ``T`` and the predicted curve, or a ``reason``.
    """
    fc = Forecaster(lr, level=level, noisy=noisy)
    fc.update(steps, losses)
    return fc.forecast()


#: ``forecast_log`` refuses a planned schedule that differs from the log's own LR by more than this
#: (relative) at the last step the log knows: it is then not the schedule the run follows.
SCHEDULE_RTOL = 0.02


def forecast_log(log: Any, lr: ArrayLike | None = None, *, level: float = 0.9, noisy: bool | None = None,
                 until: int | None = None) -> Forecast:
    """Forecast a run in progress from its log (:func:`cdfast.io.read_log`).

    Parameters
    ----------
    log : cdfast.io.TrainingLog
        The run's log so far.
    lr : array_like, optional
        The whole planned schedule ``eta_1 .. eta_T``.  Needed when the log does not know
        its schedule to the end (``log.unfinished``: e.g. a Hugging Face run read before
        ``max_steps``, whose LRs after the last logged one are unknown); otherwise the log's
        own (e.g. rebuilt from a W&B config).  The forecast uses the log's LRs up to the
        last step it knows (``log.lr_known_steps``) and the planned schedule after it; the
        two must agree at that step (within ``SCHEDULE_RTOL``), or the plan is not the
        run's and a ValueError says so.
    level, noisy :
        As in :class:`Forecaster`.
    until : int, optional
        Use only the losses logged at steps <= ``until`` (a forecast as of an earlier
        point of the run).

    Returns
    -------
    Forecast
    """
    steps, losses = np.asarray(log.steps), np.asarray(log.loss)
    diverged = getattr(log, "divergence", None)
    if lr is None:
        if log.lr is None:
            raise ValueError(f"run {log.name!r}: the log records no learning rate; give the whole planned schedule "
                             "(lr=, or on the command line --schedule NAME --steps T --peak-lr X, or --lr-file FILE)")
        if log.unfinished:
            raise ValueError(f"run {log.name!r} looks unfinished: its last logged LR is at step {log.lr_known_steps} "
                             f"of T = {log.T}, so the LRs after it are unknown; give the whole planned schedule "
                             "(lr=, or on the command line --schedule NAME --steps T --peak-lr X, or --lr-file FILE)")
        x = np.asarray(log.lr, dtype=np.float64)
    else:
        x = V.as_vector(lr, "lr")
        V.check_values(x, "lr")
        if steps.size and steps[-1] > x.shape[0]:
            raise ValueError(f"lr has {x.shape[0]} steps but the log has a loss at step {steps[-1]}; the planned "
                             "schedule must cover the whole run (--steps T >= the last logged step)")
        if log.lr is not None:  # the run's own LRs up to the last it knows, the plan after it
            known = min(log.lr_known_steps, x.shape[0])
            have, want = float(log.lr[known - 1]), float(x[known - 1])
            if abs(want - have) > SCHEDULE_RTOL * max(abs(have), 1e-3 * float(log.lr[:known].max())):
                raise ValueError(f"the planned schedule gives LR {want:.6g} at step {known}, where run {log.name!r} "
                                 f"logged {have:.6g}; give the schedule the run uses (check the peak LR, warmup and "
                                 "horizon)")
            x = np.concatenate([np.asarray(log.lr[:known], dtype=np.float64), x[known:]])
    if until is not None:
        keep = steps <= int(until)
        steps, losses = steps[keep], losses[keep]
    if diverged is not None and (until is None or diverged[0] <= until):
        keep = steps < diverged[0]  # the run is reported as diverged at its step, never truncated silently
        steps = np.append(steps[keep], diverged[0])
        losses = np.append(losses[keep], diverged[1])
    fc = Forecaster(x, level=level, noisy=noisy)
    fc.update(steps, losses)
    return fc.forecast()
