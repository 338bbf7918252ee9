"""Planning a run from a training log: which schedule, at which peak LR, for horizon T.

:func:`plan_schedule` answers the practitioner's question with a fitted loss model
(:func:`cdfast.fit_loss_curve`, the default model unless told otherwise): for a horizon T
it finds the best peak LR of each standard decay (cosine, WSD, linear by default; a
bounded 1-D search of the model's predicted final loss over the peak LR, on a log
scale), and the schedule that minimises the predicted final loss outright
(:func:`cdfast.optimal_schedule` with ``model=``), each with its predicted final loss and a
bootstrap prediction interval (:meth:`cdfast.CurveFit.interval`).

Every schedule shares one warmup convention, that of :func:`cdfast.optimal_schedule`: a
linear ramp ``lr[t] = peak * t / W`` for ``t < W`` (``lr[0] = 0``), then the decay over the
remaining ``T - W`` steps, starting at the peak (as Hugging Face's and most trainers'
schedules with warmup do).  So each family at any peak LR is a feasible point of the
optimiser's problem (non-increasing after the warmup), and the optimal schedule's
predicted loss is never above theirs: the optimiser starts from the best of linear,
cosine and WSD (decay fraction 0.2) at their best peak LR and only accepts improvements.

:func:`refine_schedule` is the gradient-norm route: Defazio et al.'s refined schedule
(:func:`cdfast.schedules.refined`) from the norms a run logged, compared with the exact
optimum of eq. (2.4) for the same norms (:func:`cdfast.optimize.stationary_schedule`, and
:func:`cdfast.optimal_schedule` for the monotone one).

Both results write themselves with :func:`cdfast.io.write_schedule` (CSV or NumPy: one LR
per step; JSON or Python: the ``torch.optim.lr_scheduler.LambdaLR`` form); see
docs/optimal_schedules.md.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize as sopt

from . import _validate as V
from . import schedules as S

FloatArray = NDArray[np.float64]

__all__ = ["plan_schedule", "SchedulePlan", "PlannedSchedule", "refine_schedule", "RefinedSchedule",
           "FAMILIES", "PEAK_LR_RANGE"]

#: the decays :func:`plan_schedule` compares by default (WSD with its default decay fraction 0.2)
FAMILIES = ("cosine", "wsd", "linear")
#: default range of the peak-LR search when the run's peak LR is not known
PEAK_LR_RANGE = (1e-8, 10.0)
#: range searched around the fitted run's peak LR (factors) with ``extrapolate=True``
PEAK_LR_FACTORS = (1e-3, 1e3)
#: trust region around the peak LR of a single fitted run (factors): one run at one peak LR
#: shows how the loss falls with the steps taken, not how it moves with the peak LR
TRUST_FACTORS = (0.8, 1.25)
#: largest one-step LR change of a planned schedule, as a fraction of its peak, when the
#: warmup ramp's own step (peak / W) is smaller
MAX_STEP = 0.01
_GRID_PER_DECADE = 4  # coarse grid of the peak-LR search, then Brent's method between its neighbours
_XATOL = 1e-7  # Brent's tolerance in log(peak LR)

Family = Union[str, tuple[str, Mapping[str, Any]]]


# ---------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class PlannedSchedule:
    """One schedule of a plan at its best peak LR.

    Attributes
    ----------
    name : str
        ``"cosine"``, ``"wsd"``, ``"linear"`` (with parameters, e.g. ``"wsd:decay_frac=0.1"``),
        or ``"optimal"``.
    lr : ndarray, shape (T,)
        ``eta_1 .. eta_T`` (``lr[i] = eta_{i+1}``).
    peak_lr : float
        ``lr[W]``, the LR at the end of the warmup (the largest).
    loss : float
        The fitted model's predicted loss at step T.
    lo, hi : float
        Its prediction interval at the plan's ``level`` (nan without one).
    edge : str
        ``"<"`` or ``">"`` when a family's best peak LR lies at the low or high end of the
        searched range (the minimum is outside it), else ``""``.
    delta, delta_lo, delta_hi : float
        Predicted final loss minus the best schedule's, and the interval of that
        difference from the same bootstrap refits (paired; nan without intervals).
    extrapolated : bool
        The peak LR lies outside what the fitted runs support (only with ``extrapolate=True``).
    """

    name: str
    lr: FloatArray = field(repr=False)
    peak_lr: float
    loss: float
    lo: float
    hi: float
    edge: str = ""
    delta: float = 0.0
    delta_lo: float = math.nan
    delta_hi: float = math.nan
    extrapolated: bool = False

    @property
    def distinguishable(self) -> bool:
        """The difference from the best schedule is outside its interval's reach of 0 (False
        without intervals, and for the best schedule itself)."""
        return bool(self.delta_lo > 0.0)

    @property
    def multipliers(self) -> FloatArray:
        """``lr / peak_lr``: the factors of ``torch.optim.lr_scheduler.LambdaLR``."""
        return self.lr / self.peak_lr


@dataclass(frozen=True)
class SchedulePlan:
    """The result of :func:`plan_schedule`.

    ``schedules`` holds the families in the order asked for, then ``"optimal"``;
    ``plan["cosine"]`` and ``plan.optimal`` pick one, ``plan.best`` is the one with the
    lowest predicted final loss, ``numpy.asarray(plan)`` is the optimal schedule's LRs.
    """

    T: int
    warmup: int
    level: float
    schedules: tuple[PlannedSchedule, ...]
    result: Any = field(repr=False)  # the OptimalSchedule (convergence, stages)
    fit: Any = field(repr=False)  # the CurveFit the plan rests on
    peak_lr_range: tuple[float, float]
    run_name: str | None = None
    run_peak_lr: float | None = None
    run_T: int | None = None
    n_boot: int = 0
    seconds: float = 0.0
    supported: tuple[float, float] | None = None  # peak LRs the fitted runs support
    extrapolate: bool = False
    max_step: float | None = None  # the one-step change limit (fraction of the peak), None: steps allowed
    from_step: int = 0  # the first from_step LRs are the run's
    trust_note: str = ""

    def __getitem__(self, name: str) -> PlannedSchedule:
        for s in self.schedules:
            if s.name == name:
                return s
        raise KeyError(f"no schedule {name!r} in this plan; it has {', '.join(s.name for s in self.schedules)}")

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.optimal.lr, dtype=dtype)

    @property
    def optimal(self) -> PlannedSchedule:
        """The schedule minimising the model's predicted final loss."""
        return self.schedules[-1]

    @property
    def families(self) -> tuple[PlannedSchedule, ...]:
        return self.schedules[:-1]

    @property
    def best(self) -> PlannedSchedule:
        """The schedule with the lowest predicted final loss."""
        return min(self.schedules, key=lambda s: s.loss)

    def predict(self, name: str, at: ArrayLike | None = None) -> FloatArray:
        """The fitted model's loss curve under schedule ``name`` at 1-based steps ``at``."""
        return self.fit.predict(self[name].lr, at=at)

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """``(columns, rows)``: schedule, peak LR, predicted final loss, interval, edge flag."""
        columns = ["schedule", "peak_lr", "final_loss", "lo", "hi", "peak_at_range_edge", "minus_best",
                   "minus_best_lo", "minus_best_hi", "extrapolated"]
        return columns, [[s.name, s.peak_lr, s.loss, s.lo, s.hi, s.edge, s.delta, s.delta_lo, s.delta_hi,
                          s.extrapolated] for s in self.schedules]

    def summary(self) -> str:
        """The table and a few lines on what it rests on."""
        fit = self.fit
        head = f"plan for T = {self.T} steps, warmup {self.warmup}, under model {fit.model.name} (R^2 = {fit.r2:.4f})"
        if self.run_name:
            head += f" fitted to\n  {self.run_name}"
            if self.run_peak_lr is not None:
                head += f" (T = {self.run_T}, peak LR {self.run_peak_lr:.4g})"
        if self.from_step:
            head += f"\n  from step {self.from_step}: the first {self.from_step} LRs are the run's, the rest planned"
        for d in fit.divergence or ():
            if d is not None:
                head += (f"\nwarning: the fitted run diverged (loss {d[1]} at step {d[0]}): this plan extrapolates "
                         "its steps before the divergence and cannot tell whether the recommended schedules avoid it")
        band = not math.isnan(self.optimal.lo)
        pct = f"{100 * self.level:g}%"
        best = self.best
        peak_col = "LR at the checkpoint" if self.from_step else "best peak LR"
        rows = [["schedule", peak_col, "predicted final loss"]
                + ([f"{pct} interval", "minus best", f"{pct} interval of the difference"] if band else ["minus best"])]
        for s in self.schedules:
            mark = "*" if s.extrapolated else ""
            diff = "best" if s is best else f"{s.delta:+.3g}"
            row = [s.name, f"{s.edge}{s.peak_lr:.4g}{mark}", f"{s.loss:.5g}"]
            if band:
                row += [f"[{s.lo:.5g}, {s.hi:.5g}]", diff,
                        "" if s is best else f"[{s.delta_lo:+.3g}, {s.delta_hi:+.3g}]"]
            else:
                row += [diff]
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [head] + [("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                                             enumerate(zip(r, widths)))).rstrip() for r in rows]
        fam = min(self.families, key=lambda s: s.loss) if self.families else None
        res = self.result
        conv = "converged" if res.converged else "NOT converged"
        if fam is not None:
            gain = fam.loss - self.optimal.loss
            lines.append(f"optimal: {gain:.3g} below the best family ({fam.name})"
                         f"{'; non-increasing after the warmup' if res.monotone else ''}; "
                         f"{conv} ({res.iterations} iterations, {res.seconds:.1f} s)")
        opt = self.optimal.lr
        if self.from_step and self.from_step < self.T:
            cur = opt[self.from_step - 1]
            below = np.flatnonzero(opt[self.from_step:] < 0.99 * cur)
            if below.size:
                lines.append(f"optimal: holds the LR {cur:.4g} until step {self.from_step + int(below[0])}, then "
                             f"cools down over the last {self.T - self.from_step - int(below[0])} steps")
        if self.max_step is not None:
            lines.append(f"smooth: no planned LR changes by more than {100 * self.max_step:.3g}% of the peak in one step "
                         "(the warmup ramp's step or 1%, whichever is larger)")
        if self.trust_note:
            lines.append(self.trust_note)
        if any(s.edge for s in self.schedules):
            lo, hi = self.peak_lr_range
            lines.append(f"'<' / '>': the best peak LR is at the end of the searched range {lo:.3g}..{hi:.3g}")
        ext = [s.name for s in self.schedules if s.extrapolated]
        if ext:
            lo, hi = self.supported
            lines.append(f"'*' EXTRAPOLATION: the peak LR of {', '.join(ext)} lies outside {lo:.3g}..{hi:.3g}, the "
                         "range the fitted runs support; the model has not seen it: check with a short sweep "
                         "(cdfast.fit_peak_lr_law)")
        from .models.transfer import ABRUPT_NOTE

        reach = _extrapolations(fit, self.schedules)  # once per schedule: it may fit the drop peer
        notes = [n for e in reach.values() for n in e.notes() if n.startswith("horizon: ")]
        # the horizon is every planned schedule's: each sentence once
        lines += [n.replace("horizon: ", "horizon (the planned schedules): ", 1) for n in dict.fromkeys(notes)]
        sharp = [(name, e) for name, e in reach.items() if e.abrupt > ABRUPT_NOTE]
        if sharp:
            how = sharp[0][1].after_fall or "likely predicted too high for a while"
            lines.append(f"abrupt fall: {', '.join(n for n, _ in sharp)} drop the LR more abruptly than any fitted run "
                         f"does; the loss after such a fall is an extrapolation ({how}; the interval is widened for "
                         "it): check with a short run")
        if band:
            same = [s.name for s in self.schedules if s is not best and not s.distinguishable]
            if same:
                lines.append(f"the data cannot tell {', '.join(same)} from the best ({best.name}): the "
                             f"{pct} interval of the difference reaches 0")
            else:
                lines.append(f"every other schedule is predicted worse than {best.name}, beyond the {pct} interval "
                             "of the difference")
            lines.append(f"interval: {pct} bootstrap interval of the model's prediction ({self.n_boot} refits); the "
                         "difference's interval from the same refits, paired")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# ---------------------------------------------------------------------------
# Inputs


def _warmup_of(lr: FloatArray) -> int:
    """Steps before a logged schedule first reaches its peak (its warmup), 0 if none."""
    top = float(lr.max())
    first = int(np.argmax(lr >= top))
    return first if first > 0 and lr[0] < top else 0


def _has_gradient(model: Any) -> bool:
    from .models.base import LossModel

    return type(model).final_value_and_grad is not LossModel.final_value_and_grad


def _needs_grad() -> str:
    from .models import MODELS

    able = [name for name, make in MODELS.items() if _has_gradient(make())]
    return ("; the optimal schedule needs the gradient of the predicted final loss with respect to the LRs: plan "
            f"with a model that gives it ({', '.join(able)})")


def _source(source: Any, model: Any, loss: str | None) -> tuple[Any, Any]:
    """(fit, log or None) from a CurveFit, a TrainingLog or a path."""
    from .fit import CurveFit, fit_loss_curve
    from .io import TrainingLog, read_log

    if isinstance(source, CurveFit):
        if model is not None or loss is not None:
            raise ValueError("model= and loss= choose how a log is fitted; source is already a CurveFit")
        return _trusted(source), None
    if isinstance(source, (str, os.PathLike)):
        source = read_log(source, loss=loss)
    elif loss is not None:
        raise ValueError("loss= names the loss column of a log file; source is already a TrainingLog")
    if not isinstance(source, TrainingLog):
        raise TypeError(f"source must be a CurveFit, a TrainingLog or the path of a training log, "
                        f"got {type(source).__name__}")
    from .models import get_model

    m = get_model(model)
    if not _has_gradient(m):  # refuse before the fit
        raise ValueError(f"model {m.name!r} gives no gradient with respect to the learning rates{_needs_grad()}")
    lr, steps, y = source.curve()
    return _trusted(fit_loss_curve(lr, steps, y, model=m, divergence=source.divergence)), source


def _trusted(fit: Any) -> Any:
    """``fit``, unless it does not describe its data (no plan can rest on it)."""
    if fit.poor_fit:
        raise ValueError(f"source: no plan: {fit.poor_fit}; check the log (its loss column and learning rates)")
    return fit


def _families(families: Sequence[Family]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, name, params) of every family, checked."""
    if isinstance(families, (str, tuple)) and (isinstance(families, str) or
                                               (len(families) == 2 and isinstance(families[1], Mapping))):
        families = [families]  # one family given on its own
    out = []
    for f in families:
        if isinstance(f, str):
            name, params = f, {}
        elif isinstance(f, tuple) and len(f) == 2 and isinstance(f[0], str) and isinstance(f[1], Mapping):
            name, params = f[0], dict(f[1])
        else:
            raise TypeError(f"families: {f!r} is neither a schedule name nor (name, parameters), e.g. "
                            "('wsd', {'decay_frac': 0.1})")
        if name not in S.FAMILIES:
            raise ValueError(f"families: unknown schedule {name!r}; choose from {', '.join(S.FAMILIES)}")
        if "warmup" in params:
            raise ValueError(f"families: {name!r} has warmup={params['warmup']!r}; the warmup is the plan's "
                             "(warmup=), shared by every schedule")
        S.make(name, 4, **params)  # fail now on a bad parameter
        label = name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
        if label in (o[0] for o in out):
            raise ValueError(f"families: {label!r} is listed twice")
        out.append((label, name, params))
    return out


def _check_range(peak_lr_range: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in peak_lr_range)
    except (TypeError, ValueError):
        raise TypeError(f"peak_lr_range must be (low, high), got {peak_lr_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo < hi):
        raise ValueError(f"peak_lr_range = {peak_lr_range!r} must be two finite LRs with 0 < low < high")
    return lo, hi


def _fitted_peaks(fit: Any) -> list[float] | None:
    """The peak LR of every run a fit was made on, when the fit keeps them (None if not)."""
    d = fit.data
    if d is None:
        return None
    if d.preps is None and d.members:
        return _fitted_peaks(d.members[0])
    peaks = []
    for prep in d.preps or ():
        lr = getattr(prep, "lr", None)
        if lr is None:
            return None
        peaks.append(float(np.max(lr)))
    return peaks or None


def _peak_range(peak_lr_range: Any, peaks: list[float] | None, extrapolate: bool
                ) -> tuple[tuple[float, float], tuple[float, float] | None, str]:
    """(searched range, supported range or None, the line that says why)."""
    given = None if peak_lr_range is None else _check_range(peak_lr_range)
    if peaks is None:
        rng = given or PEAK_LR_RANGE
        return rng, None, (f"peak LR: the fitted runs' peak LRs are not known to the plan (a fit without its data); "
                           f"searched over {rng[0]:.3g}..{rng[1]:.3g}: a best peak far from theirs is an extrapolation")
    lo_p, hi_p = min(peaks), max(peaks)
    if hi_p > 1.01 * lo_p:
        supported = (lo_p, hi_p)
        why = (f"peak LR kept within {lo_p:.3g}..{hi_p:.3g}, the peak LRs of the fitted runs (the model interpolates "
               "between them)")
    else:
        supported = (hi_p * TRUST_FACTORS[0], hi_p * TRUST_FACTORS[1])
        why = (f"peak LR kept within {TRUST_FACTORS[0]:g}x..{TRUST_FACTORS[1]:g}x the run's {hi_p:.3g} (a trust region): "
               "one run at one peak LR shows how the loss falls with the steps, not how it moves with the peak LR")
    if given is not None and not extrapolate:
        if given[1] < lo_p or given[0] > hi_p:
            raise ValueError(f"peak_lr_range = ({given[0]:g}, {given[1]:g}) excludes the fitted run's peak LR "
                             f"{hi_p:g} (runs: {lo_p:g}..{hi_p:g}); give a range around it, or extrapolate=True "
                             "(--extrapolate) to plan elsewhere, marked as an extrapolation")
        if given[0] < supported[0] * (1 - 1e-12) or given[1] > supported[1] * (1 + 1e-12):
            raise ValueError(f"peak_lr_range = ({given[0]:g}, {given[1]:g}) reaches beyond {supported[0]:.4g}..."
                             f"{supported[1]:.4g}, the peak LRs the fitted run(s) support; narrow it, or pass "
                             "extrapolate=True (--extrapolate) to plan beyond them, marked as an extrapolation")
        return given, supported, why
    if given is not None:
        return given, supported, why + "; the range searched was given (extrapolate)"
    if extrapolate:
        centre = math.sqrt(lo_p * hi_p)
        rng = (centre * PEAK_LR_FACTORS[0], centre * PEAK_LR_FACTORS[1])
        return rng, supported, why + f"; extrapolate: searched over {rng[0]:.3g}..{rng[1]:.3g}"
    return supported, supported, why + "; extrapolate=True (--extrapolate) searches beyond, marked as an extrapolation"


def _with_ramp(decay: FloatArray, W: int) -> FloatArray:
    """The warmup ramp ``t / W`` (t < W) followed by ``decay`` (peak 1 at step W)."""
    if not W:
        return decay
    return np.concatenate([np.arange(W, dtype=np.float64) / W, decay])


# ---------------------------------------------------------------------------
# The plan


def _final(fit: Any, lr: FloatArray) -> float:
    v = float(fit.predict(lr, at=[lr.shape[0]])[-1])
    return v if math.isfinite(v) else math.inf


def _best_peak(fit: Any, shape: FloatArray, lo: float, hi: float) -> tuple[float, float, str]:
    """(peak, loss, edge): the peak LR minimising the predicted final loss of ``peak * shape``.

    A log-spaced grid over [lo, hi] (``_GRID_PER_DECADE`` per decade), then false position
    on the slope between the grid minimum's neighbours (:func:`cdfast.optimize._peak_search`).
    The convex-bound models' final loss is ``L_inf + c1 eta^-a + c2 eta^p`` in the peak LR
    ``eta``: unimodal in ``log eta``.  Evaluations are the model's O(T) ``value_and_grad``
    (the slope in ``log eta`` is ``eta * grad . shape``); the loss reported is ``fit.predict``.
    """
    from .optimize import _peak_search

    def fg(u: float) -> tuple[float, float]:
        eta = math.exp(u)
        f, g = fit.value_and_grad(eta * shape)
        f = float(f)
        if not math.isfinite(f):
            return math.inf, 0.0
        g = np.asarray(g, dtype=np.float64)
        g[shape == 0.0] = 0.0  # an LR of 0 never moves (the ramp's first step); eta^p has an infinite slope there
        return f, eta * float(np.dot(g, shape))

    u_lo, u_hi = math.log(lo), math.log(hi)
    n = max(9, int(math.ceil(_GRID_PER_DECADE * (u_hi - u_lo) / math.log(10.0))) + 1)
    grid = np.linspace(u_lo, u_hi, n)
    vals = np.array([fg(u)[0] for u in grid])
    if not np.isfinite(vals).any():
        raise ValueError("the fitted model's predicted final loss is infinite at every peak LR searched")
    k = int(np.argmin(vals))
    u, _ = _peak_search(fg, grid[max(k - 1, 0)], grid[min(k + 1, n - 1)], float(grid[k]), max_evals=30,
                        xtol=_XATOL)
    edge = "<" if u - u_lo < 1e-3 else ">" if u_hi - u < 1e-3 else ""
    return math.exp(u), _final(fit, math.exp(u) * shape), edge


def _interval(fit: Any, lr: FloatArray, level: float, n_boot: int, seed: int | None) -> tuple[float, float]:
    if n_boot == 0:
        return math.nan, math.nan
    lo, hi = fit.interval(lr, at=[lr.shape[0]], level=level, n_boot=n_boot, seed=seed)
    return float(lo[-1]), float(hi[-1])


def plan_schedule(
    source: Any,
    T: int,
    *,
    warmup: int | None = None,
    families: Sequence[Family] = FAMILIES,
    peak_lr_range: tuple[float, float] | None = None,
    extrapolate: bool = False,
    smooth: bool = True,
    from_step: int | None = None,
    monotone: bool = True,
    level: float = 0.9,
    n_boot: int = 200,
    seed: int | None = 0,
    model: str | None = None,
    loss: str | None = None,
    progress: bool | None = None,
) -> SchedulePlan:
    """For horizon T: the best peak LR of each standard decay and the optimal schedule,
    under a loss model fitted to a run, each with its predicted final loss and interval.

    Parameters
    ----------
    source : CurveFit, TrainingLog, str or PathLike
        A fitted model (:func:`cdfast.fit_loss_curve`), or a log (a path is read with
        :func:`cdfast.io.read_log`) fitted on every logged loss with ``model``.  The
        model must give the gradient of its final loss with respect to the LRs (every
        convex-bound model, including the default; not the peer laws).
    T : int
        Horizon of the planned run (>= 2).
    warmup : int, optional
        Warmup steps W < T, shared by every schedule (a linear ramp ``peak * t / W``
        then the decay).  Default: the logged run's warmup (steps before its peak LR), or
        0 for a CurveFit.
    families : sequence of str or (str, dict)
        Decays to compare, by name (:data:`cdfast.schedules.FAMILIES`) with optional
        parameters, e.g. ``("cosine", ("wsd", {"decay_frac": 0.1}), "linear")``.  Each
        decays over the ``T - W`` steps after the warmup.
    peak_lr_range : (float, float), optional
        Range of the peak LR of every schedule, the optimal one included.  Default: what
        the fitted runs support: from one run at one peak LR, :data:`TRUST_FACTORS` times
        it (a trust region); from runs at several peak LRs, their range.  A range beyond
        that (or one that excludes the run's peak) needs ``extrapolate=True``.
    extrapolate : bool
        Allow peak LRs beyond what the fitted runs support (default: 1e-3 to 1e3 times
        the run's peak LR); schedules whose peak lies outside are marked as extrapolations.
    smooth : bool
        No planned LR changes by more than ``max(peak / W, MAX_STEP * peak)`` in one step
        (default True): the optimal schedule is optimised under that limit, and a family
        that breaks it is refused.  False allows step schedules.
    from_step : int, optional
        Plan from a checkpoint of the logged run: the first ``from_step`` LRs are the
        run's logged ones (bit-identical), the rest is planned from the LR the run has
        there (non-increasing; every family cools down from it over the remaining steps;
        no new peak).  ``warmup`` and ``peak_lr_range`` do not apply.
    progress : bool, optional
        A progress bar (tqdm) while the optimal schedule is solved; None: when stderr is
        a terminal.
    monotone : bool
        Keep the optimal schedule non-increasing after the warmup (default True).
    level : float
        Level of the prediction intervals (default 0.9).
    n_boot : int
        Bootstrap refits per interval (:meth:`cdfast.CurveFit.interval`; >= 20, or 0 for
        no intervals).
    seed : int or None
        Seed of the bootstrap; every schedule is scored on the same refits.
    model, loss : str, optional
        For a log: the loss model (default :data:`cdfast.models.DEFAULT_MODEL`) and the
        loss column (default: a validation loss).

    Returns
    -------
    SchedulePlan
        ``plan.schedules`` (families, then ``"optimal"``), ``plan.optimal``,
        ``plan.best``, ``plan.summary()``, ``plan.result`` (the
        :class:`cdfast.OptimalSchedule` with its convergence report) and ``plan.fit``.

    Raises
    ------
    ValueError
        T < 2, warmup >= T, an unknown family or parameter, a bad range or level, a model
        without the gradient, a range beyond the supported peak LRs without
        ``extrapolate``, a family that breaks the smoothness limit, ``from_step`` beyond
        the log or T or inside the run's warmup.
        A fit that does not describe its data (``CurveFit.poor_fit``).
    TypeError
        A source of another type; non-integer T or warmup.

    Notes
    -----
    The predicted final loss is ``fit.predict(lr, at=[T])``; for the paper's
    ``model="bound"`` it is eq. (2.4) with fitted constants (Generalization 1, eq. 3.1).
    The optimal schedule is :func:`cdfast.optimal_schedule` ``(T, model=fit,
    warmup=W, monotone=monotone)``; since every family is feasible for it and it starts
    from the best of linear, cosine and WSD at their best peak LR, its predicted loss is
    no higher than theirs (it optimises over a knot family, ``method="multilevel"``, to a
    relative tolerance of 1e-10).  A single run determines the loss scale, not how the
    loss moves with the peak LR: so the peak stays in a trust region around the run's
    unless extrapolation is asked for.  Each schedule's difference from the best comes
    with an interval from the same bootstrap refits (paired), so that "A is better than
    B" is read off the difference, not off two overlapping intervals.  Predictions use no per-step ``grad_sq`` (the planned run's gradient
    norms are not known): plan with a fit made without them.
    """
    t0 = time.perf_counter()
    T = V.check_int(T, "T", 2)
    S._check_T(T)  # a horizon too large for memory: one clear line
    fams = _families(families)
    level = V.check_scalar(level, "level")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level = {level!r} must lie in (0, 1), e.g. 0.9 for a 90% interval")
    n_boot = V.check_int(n_boot, "n_boot", 0)
    if 0 < n_boot < 20:
        raise ValueError(f"n_boot = {n_boot} must be 0 (no intervals) or >= 20")
    for name, flag in (("monotone", monotone), ("extrapolate", extrapolate), ("smooth", smooth)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if warmup is not None:
        warmup = V.check_int(warmup, "warmup", 0)
        if warmup >= T:
            raise ValueError(f"warmup = {warmup} must be < T = {T}: at least one step must follow the warmup")
    if from_step is not None:
        from_step = V.check_int(from_step, "from_step", 1)
        if from_step >= T:
            raise ValueError(f"from_step = {from_step} must be < T = {T}: at least one step must be left to plan")
        if warmup is not None or peak_lr_range is not None:
            raise ValueError("from_step continues the run from its LR at that step: warmup and peak_lr_range do "
                             "not apply (leave them out)")
        if not monotone:
            raise ValueError("from_step plans a non-increasing continuation; monotone=False is not supported with it")
    if not monotone and smooth:
        raise ValueError("monotone=False optimises every LR without the one-step change limit: pass smooth=False "
                         "with it (--allow-steps)")

    fit, log = _source(source, model, loss)
    run_peak = run_T = None
    if log is not None:
        run_peak, run_T = float(log.lr.max()), int(log.lr.shape[0])
        if warmup is None:
            warmup = _warmup_of(log.lr)
            if warmup >= T:
                raise ValueError(f"the run's warmup ({warmup} steps) does not fit in T = {T}; give a shorter "
                                 "warmup (warmup=, or --warmup)")
    prefix = None
    if from_step is not None:
        if log is None:
            raise ValueError("from_step needs the run's logged LRs: plan from the log (a path or TrainingLog), "
                             "not from a CurveFit")
        if from_step > run_T:
            raise ValueError(f"from_step = {from_step} is beyond the log, which has {run_T} steps; give a step "
                             f"in 1..{run_T}")
        if from_step <= warmup:
            raise ValueError(f"from_step = {from_step} lies in the run's warmup ({warmup} steps); plan from a step "
                             f"after it (from_step > {warmup}), or plan a new run without from_step")
        prefix = np.array(log.lr[:from_step], dtype=np.float64)
        if prefix[-1] <= 0.0:
            raise ValueError(f"the run's LR at step {from_step} is 0: nothing to continue from")
    W = 0 if warmup is None else warmup
    peaks = [run_peak] if log is not None else _fitted_peaks(fit)
    if prefix is None:
        (lo, hi), supported, note = _peak_range(peak_lr_range, peaks, bool(extrapolate))
    else:
        lo = hi = float(prefix[-1])
        supported = None
        note = (f"from a checkpoint: every schedule continues from the run's LR {lo:.4g} at step {from_step} "
                "(no new peak)")
    ms = (max(1.0 / W, MAX_STEP) if W else MAX_STEP) if smooth else None
    try:
        fit.value_and_grad(np.full(2, lo))
    except NotImplementedError as exc:
        raise ValueError(f"{str(exc).rstrip('.')}{_needs_grad()}") from None

    from .optimize import optimal_schedule

    schedules: list[tuple[str, FloatArray, float, str]] = []  # (name, lr, loss, edge)
    for label, name, params in fams:
        if prefix is None:
            shape = _with_ramp(S.make(name, T - W, **params), W)
            peak, value, edge = _best_peak(fit, shape, lo, hi)
            lr = peak * shape
            start = max(W - 1, 0)
        else:
            lr = np.concatenate([prefix, prefix[-1] * S.make(name, T - from_step, **params)])
            value, edge, start = _final(fit, lr), "", from_step - 1
        if ms is not None:
            top = float(lr.max())
            jumps = np.abs(np.diff(lr[start:]))
            i = int(np.argmax(jumps))
            if jumps[i] > ms * top * (1 + 1e-12):
                raise ValueError(f"families: {label} changes the LR by {100 * jumps[i] / top:.3g}% of its peak in one "
                                 f"step (step {start + i + 1} to {start + i + 2}), more than the {100 * ms:.3g}% of a "
                                 "smooth plan; drop it, or pass smooth=False (--allow-steps) for a step schedule")
        schedules.append((label, lr, value, edge))
    if prefix is None:
        res = optimal_schedule(T, model=fit, warmup=W, monotone=bool(monotone), max_step=ms if monotone else None,
                               peak_range=(lo, hi) if monotone else None, tol=1e-10 if monotone else None,
                               progress=progress)
        top = float(np.max(res.lr))
        if not monotone and not extrapolate and not lo * (1 - 1e-9) <= top <= hi * (1 + 1e-9):
            raise ValueError(f"monotone=False optimises every LR with a free peak, and its optimum peaks at {top:.4g}, "
                             f"outside {lo:.4g}..{hi:.4g} (what the run supports); keep monotone=True, or pass "
                             "extrapolate=True (--extrapolate) to accept it, marked as an extrapolation")
    else:
        step = None if ms is None else min(1.0, ms * run_peak / float(prefix[-1]))
        res = optimal_schedule(T, model=fit, prefix=prefix, max_step=step, tol=1e-10, progress=progress)
    lr = np.array(res.lr, dtype=np.float64)
    if prefix is not None:
        lr[:from_step] = prefix  # the run's own LRs, bit for bit
    edge = "" if prefix is not None else "<" if lr[W] <= lo * (1 + 1e-9) else ">" if lr[W] >= hi * (1 - 1e-9) else ""
    schedules.append(("optimal", lr, _final(fit, lr), edge))

    # intervals and paired differences from one set of bootstrap refits
    best_i = int(np.argmin([v for _, _, v, _ in schedules]))
    reps = None
    if n_boot:
        from .models._curvefit import _predict_replicates, _replicates

        refits = _replicates(fit, n_boot, seed)
        reps = [_predict_replicates(fit, refits, lr_s, np.array([T], dtype=np.int64), None)[:, -1]
                for _, lr_s, _, _ in schedules]
    q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    planned = []
    for j, (label, lr_s, value, edge) in enumerate(schedules):
        peak = float(lr_s.max()) if prefix is None else float(prefix[-1])
        d_lo = d_hi = math.nan
        if reps is not None and j != best_i:
            with np.errstate(invalid="ignore"):
                d_lo, d_hi = (float(v) for v in np.quantile(reps[j] - reps[best_i], q))
        elif reps is not None:
            d_lo = d_hi = 0.0
        ext = supported is not None and not (supported[0] * (1 - 1e-9) <= peak <= supported[1] * (1 + 1e-9))
        planned.append(PlannedSchedule(label, lr_s, peak, value, *_interval(fit, lr_s, level, n_boot, seed), edge,
                                       value - schedules[best_i][2], d_lo, d_hi, ext))
    return SchedulePlan(T=T, warmup=W, level=level, schedules=tuple(planned), result=res, fit=fit,
                        peak_lr_range=(lo, hi), run_name=None if log is None else log.name,
                        run_peak_lr=run_peak, run_T=run_T, n_boot=n_boot, seconds=time.perf_counter() - t0,
                        supported=supported, extrapolate=bool(extrapolate), max_step=ms,
                        from_step=from_step or 0, trust_note=note)


def _extrapolations(fit: Any, schedules: Sequence[PlannedSchedule]) -> dict[str, Any]:
    """:meth:`CurveFit.extrapolation` of each planned schedule, by name (none for a fit that keeps
    no fit data to compare with)."""
    method = getattr(fit, "extrapolation", None)
    if method is None or getattr(fit, "data", None) is None:
        return {}
    return {s.name: method(s.lr) for s in schedules}


# ---------------------------------------------------------------------------
# Defazio et al.'s refined schedule from a log's gradient norms


@dataclass(frozen=True)
class RefinedSchedule:
    """The result of :func:`refine_schedule`.

    Attributes
    ----------
    lr : ndarray, shape (T,)
        Defazio et al.'s refined schedule (:func:`cdfast.schedules.refined`), largest LR
        ``peak_lr``: the schedule to write.
    grad_sq : ndarray, shape (T,)
        The per-step ``G_t^2`` it was built from.
    schedules : dict
        ``"refined"``, ``"exact"`` (the unconstrained optimum of eq. (2.4) for these
        ``grad_sq``), ``"monotone"`` (the non-increasing optimum), ``"linear"``: unit-peak
        shapes.
    bounds : dict
        Eq. (2.4) of each at its own best peak LR, with D = G = 1 and these ``grad_sq``
        (``2 sqrt(a b)``; D and G rescale every entry alike, so the ratios hold for any).
    """

    lr: FloatArray = field(repr=False)
    peak_lr: float
    T: int
    grad_sq: FloatArray = field(repr=False)
    schedules: dict[str, FloatArray] = field(repr=False)
    bounds: dict[str, float]
    smoothing: float = 0.0
    run_name: str | None = None
    coverage: tuple[int, int, int] | None = None  # first and last update with a logged norm, how many
    fill: str = "linear"
    converged: bool = True

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.lr, dtype=dtype)

    @property
    def excess(self) -> dict[str, float]:
        """Each schedule's bound relative to the exact optimum's, minus 1."""
        ref = self.bounds["exact"]
        return {k: v / ref - 1.0 for k, v in self.bounds.items()}

    @staticmethod
    def describe(shape: FloatArray) -> dict[str, float]:
        """Where the peak is and where the LR first falls below half of it after the peak
        (fractions of T), and the last LR over the peak."""
        s = np.asarray(shape, dtype=np.float64) / float(np.max(shape))
        top = int(np.argmax(s))
        below = np.flatnonzero(s[top:] < 0.5)
        half = (top + int(below[0])) / s.shape[0] if below.size else math.nan
        return {"peak_at": top / s.shape[0], "half_at": half, "last_over_peak": float(s[-1])}

    def table(self) -> tuple[list[str], list[list[Any]]]:
        columns = ["schedule", "bound_at_best_peak", "excess_over_exact", "peak_at", "half_at", "last_over_peak"]
        rows = []
        for name, shape in self.schedules.items():
            d = self.describe(shape)
            rows.append([name, self.bounds[name], self.excess[name], d["peak_at"], d["half_at"], d["last_over_peak"]])
        return columns, rows

    def summary(self) -> str:
        head = (f"refined schedule (Defazio et al. 2023) for T = {self.T} steps, largest LR {self.peak_lr:.4g}"
                + (f", median filter {self.smoothing:g} T" if self.smoothing else "") + ", from the gradient norms "
                + (f"of\n  {self.run_name}" if self.run_name else "given"))
        lines = [head]
        if self.coverage is not None:
            first, last, count = self.coverage
            how = "interpolated linearly" if self.fill == "linear" else "each held until the next"
            lines.append(f"gradient norms: {count} logged, at updates {first}..{last} ({how} in between)")
            if (first - 1) + (self.T - last) > 0.05 * self.T:
                lines.append(f"note: the logged norms cover only updates {first}..{last} of 1..{self.T} (e.g. a run "
                             "branched from another's checkpoint); the updates outside take the nearest logged norm")
        lines.append("eq. (2.4) with these gradient norms, each schedule at its own best peak LR:")
        rows = [["schedule", "bound", "vs exact", "peak at", "half at", "last/peak"]]
        for name, b, ex, pk, half, last in self.table()[1]:
            rows.append([name, f"{b:.6g}", "0" if name == "exact" else f"{ex:+.2e}", f"{pk:.3f} T",
                         "-" if math.isnan(half) else f"{half:.3f} T", f"{last:.2e}"])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                  for r in rows]
        lines.append("exact: the optimum of eq. (2.4) over all positive LRs; monotone: over non-increasing ones"
                     + ("" if self.converged else " (optimiser NOT converged)")
                     + "; refined: the closed form, which minimises Defazio et al.'s own bound")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def refine_schedule(
    source: Any,
    *,
    smoothing: float = 0.0,
    peak_lr: float | None = None,
    fill: str = "linear",
) -> RefinedSchedule:
    """Defazio et al.'s refined schedule from a run's logged gradient norms, and how it
    differs from the exact optimum of eq. (2.4) for the same norms.

    Parameters
    ----------
    source : TrainingLog, str, PathLike or array_like
        A log with a gradient-norm column (a path is read with :func:`cdfast.io.read_log`),
        or the per-step gradient norms ``||g_t||`` themselves (shape (T,), all > 0).
    smoothing : float
        Median-filter width as a fraction of T (Defazio et al.'s tau; 0 = none).
    peak_lr : float, optional
        Largest LR of the refined schedule.  Default: the logged run's peak LR (1 for an
        array of norms).
    fill : {"linear", "previous"}
        How updates between logged norms are filled (:meth:`cdfast.io.TrainingLog.grad_sq`).

    Returns
    -------
    RefinedSchedule
        ``lr`` (the refined schedule), the comparison (``bounds``, ``excess``, ``table()``,
        ``summary()``) with the exact and monotone optima and linear decay.

    Raises
    ------
    ValueError
        A log without gradient norms, a zero norm, a bad smoothing or peak LR.

    Notes
    -----
    Refined: ``eta_t ~ g_t^-2 sum_{p>t} g_p^-2`` (Defazio, Cutkosky, Mehta, Mishchenko 2023;
    :func:`cdfast.schedules.refined`, last step extended so that eq. (2.4) is finite).
    Exact: the stationary point of eq. (2.4) with ``grad_sq = g_t^2``
    (:func:`cdfast.optimize.stationary_schedule`); monotone:
    :func:`cdfast.optimal_schedule` ``(T, grad_sq=g_t^2)``.  Each is compared at its own
    best peak LR (:func:`cdfast.optimal_peak_lr`).
    """
    from .asymptotics import optimal_peak_lr
    from .io import TrainingLog, read_log
    from .optimize import optimal_schedule, refined, stationary_schedule

    log = read_log(source) if isinstance(source, (str, os.PathLike)) else source
    name = coverage = None
    if isinstance(log, TrainingLog):
        if log.grad_norm is None or log.grad_norm_steps is None or log.grad_norm.size == 0:
            raise ValueError(f"the log of run {log.name!r} ({log.format}) has no gradient norms (its columns: "
                             f"{', '.join(log.columns) or 'none'}); the refined schedule is built from logged "
                             "gradient norms: log a grad_norm column (e.g. the norm clip_grad_norm_ returns)")
        gsq = np.asarray(log.grad_sq(fill), dtype=np.float64)
        norms = np.sqrt(gsq)
        name = log.name
        coverage = (int(log.grad_norm_steps[0]), int(log.grad_norm_steps[-1]), int(log.grad_norm_steps.size))
        default_peak = float(log.lr.max()) if log.lr is not None else 1.0
    else:
        norms = V.as_vector(source, "grad_norms")
        V.check_values(norms, "grad_norms")
        gsq = norms * norms
        default_peak = 1.0
    T = norms.shape[0]
    if T < 2:
        raise ValueError(f"the gradient norms cover T = {T} step; a schedule needs at least 2")
    peak = default_peak if peak_lr is None else V.check_scalar(peak_lr, "peak_lr")
    if peak <= 0:
        raise ValueError(f"peak_lr = {peak!r} must be > 0")
    lr = refined(norms, smoothing=smoothing, peak_lr=peak)  # checks the norms (> 0) and smoothing
    exact = stationary_schedule(T, grad_sq=gsq)
    mono = optimal_schedule(T, grad_sq=gsq)
    shapes = {"refined": lr / peak, "exact": exact / exact.max(), "monotone": mono.shape, "linear": S.linear(T)}
    bounds = {k: float(optimal_peak_lr(v, grad_sq=gsq)[1]) for k, v in shapes.items()}
    return RefinedSchedule(lr=lr, peak_lr=peak, T=T, grad_sq=gsq, schedules=shapes, bounds=bounds,
                           smoothing=float(smoothing), run_name=name, coverage=coverage, fill=fill,
                           converged=mono.converged)
