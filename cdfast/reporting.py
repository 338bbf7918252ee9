"""``cdfast.report``: a training run fitted and re-planned, and the bounds of the standard schedules.

:func:`report` computes what ``cdfast report`` prints and returns it as a :class:`Report`
(its numbers as fields, the text as ``.summary()``), so a notebook gets the numbers and
the command line only prints them:

1. the run (default: the one shipped with cdfast, :data:`cdfast.data.SAMPLE_RUN`) fitted
   with a loss model; a check: the model fitted on the run's first half predicts its last
   logged loss; its predicted final loss under other schedules and horizons, with a
   bootstrap interval, and the best peak LR of each (:class:`RunReport`);
2. the bound table of the standard schedules at horizon ``steps``: the last-iterate bound
   (eq. 2.4) at the bound-optimal (or a given) peak LR, the average-iterate bound
   (eq. 2.3), the qualifying exam (Condition 2.5), and the agreement and speed of the
   backends.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from . import schedules as S
from ._format import fmt, table, with_interval
from ._kernels._backends import available_backends, get_backend
from ._memory import check_fits
from ._progress import Progress
from .bounds import average_iterate_bound, bound_terms

__all__ = ["report", "Report", "RunReport", "RUN_SCHEDULES", "BOUND_SCHEDULES"]

RUN_SCHEDULES = ("cosine", "linear", "wsd:decay_frac=0.2", "constant")
RUN_HORIZONS = (1, 2, 4)  # multiples of the run's horizon
BOUND_SCHEDULES = ("constant", "inverse_sqrt", "linear", "cosine", "wsd")
PEAK_RANGE = (1 / 16, 16.0)  # the best peak LR is searched within these factors of the run's
PEAK_XTOL = 0.02  # ... to 2% (Brent's method in log LR)
BOOT = 100  # bootstrap refits per interval: ~0.2 s each on the sample run (the library's default is 200)
LEVEL = 0.9  # level of the prediction intervals
FIGURE_POINTS = 400  # steps of each predicted curve kept for a figure


def _spec(s: str | tuple[str, dict]) -> tuple[str, dict]:
    return S.parse(s) if isinstance(s, str) else (s[0], dict(s[1]))


def curve_points(T: int, points: int, start: int = 1) -> np.ndarray:
    """``points`` evenly spaced steps start..T including both ends (every step for 0 or
    ``points`` at least the number of steps)."""
    if points == 0 or points >= T - start + 1:
        return np.arange(start, T + 1, dtype=np.int64)
    return np.unique(np.round(np.linspace(start, T, points)).astype(np.int64))


def warmup_of(lr: np.ndarray) -> int:
    """Steps before a logged schedule first reaches its peak, 0 if none: the ``warmup`` of
    :func:`cdfast.schedules.with_warmup` that reaches the peak at the same step."""
    top = float(lr.max())
    first = int(np.argmax(lr >= top))
    return first if first > 0 and lr[0] < top else 0


WARMUP_KEYS = ("warmup_steps", "warmup_iters", "num_warmup_steps")  # run-config keys of the warmup length


def configured_warmup(lr: np.ndarray, config: dict | None) -> int:
    """The run's warmup as its trainer counts it: the config's warmup length when it has
    one that matches the logged LRs, else :func:`warmup_of`.

    Trainers differ by one step: PyTorch's ``OneCycleLR`` (llm-baselines) reaches the
    peak *on* the last warmup step, Hugging Face's ramps reach it on the step after.  A
    run configured with 300 warmup steps of the first kind has 299 steps below its peak.
    """
    below = warmup_of(lr)
    for key in WARMUP_KEYS:
        value = (config or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer() \
                and below > 0 and abs(int(value) - below) <= 1:
            return int(value)
    return below


def interval(fit: Any, lr: np.ndarray, at: np.ndarray, level: float,
             n_boot: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """CurveFit.interval (a bootstrap of ``n_boot`` refits; None: the library's default)
    when the fitted model provides one and ``n_boot != 0``, else None."""
    method = getattr(fit, "interval", None)
    if method is None or n_boot == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lo, hi = method(lr, at=at, level=level, **({} if n_boot is None else {"n_boot": n_boot}))
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def _notes(fit: Any, lr: np.ndarray) -> list[str]:
    """``fit.extrapolation(lr).notes()``, or none for a fit that cannot say (no fit data kept)."""
    method = getattr(fit, "extrapolation", None)
    return method(lr).notes() if method is not None and getattr(fit, "data", None) is not None else []


def _final_loss(fit: Any, lr: np.ndarray) -> float:
    return float(fit.predict(lr, at=[lr.shape[0]])[-1])


def _peak_scan(fit: Any, shape: np.ndarray, peak: float) -> dict[str, Any]:
    """The peak LR that minimises the model's predicted final loss for a unit-peak
    ``shape``: a bounded Brent search in log LR over ``peak * PEAK_RANGE``.

    Returns the minimum (``eta``, ``loss``), every evaluated ``(etas, losses)`` sorted by
    LR, and ``edge``: ``"<"`` or ``">"`` when the minimum lies at an end of the range (the
    optimum is outside it), else ``""``.
    """
    from scipy.optimize import minimize_scalar

    seen: dict[float, float] = {}

    def f(u: float) -> float:
        v = _final_loss(fit, math.exp(u) * shape)
        seen[math.exp(u)] = v
        return v if math.isfinite(v) else math.inf

    lo, hi = math.log(peak * PEAK_RANGE[0]), math.log(peak * PEAK_RANGE[1])
    res = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": PEAK_XTOL})
    edge = "<" if res.x - lo < 3 * PEAK_XTOL else ">" if hi - res.x < 3 * PEAK_XTOL else ""
    etas = np.array(sorted(seen))
    return {"etas": etas, "losses": np.array([seen[e] for e in etas]), "eta": float(math.exp(res.x)),
            "loss": float(res.fun), "edge": edge}


def _fit(lr, steps, loss, model, mask):
    from .fit import fit_loss_curves

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CurveFit.warnings holds them; the summary prints them
        return fit_loss_curves([lr], [steps], [loss], fit_steps=None if mask is None else [mask], grad_sq=None,
                               model=model)


# ---------------------------------------------------------------------------
# the run


@dataclass
class RunReport:
    """A run fitted and re-planned (the first part of :class:`Report`).

    ``fit`` is the model fitted on every logged loss, ``half`` the one fitted on the
    first half (None when it holds fewer than 8 losses); ``check`` its prediction of
    the last logged loss, with ``check_band`` (lo, hi).  ``predictions``: one dict per
    schedule and horizon with ``schedule``, ``T``, ``loss`` (at the run's peak LR),
    ``lo``, ``hi`` (its interval, NaN without one), ``best_peak_lr``, ``best_loss``,
    ``edge`` (``"<"``/``">"`` when the best peak LR lies beyond the searched range) and
    ``extrapolation`` (how the prediction reaches beyond the fitted run, in words:
    ``CurveFit.extrapolation(lr).notes()``; empty inside it).
    ``warmup_steps`` is the run's warmup as configured (:func:`configured_warmup`);
    ``warmup`` the one the re-planned schedules get (``cdfast.schedules`` counts the
    steps below the peak), so that they reach the peak LR on the same step as the run.
    """

    path: str
    packaged: bool
    name: str
    describe: str
    lr: np.ndarray
    peak_lr: float
    warmup: int
    warmup_steps: int
    fit: Any
    half: Any
    n_first_half: int
    last_step: int
    last_loss: float
    check: float | None
    check_band: tuple[np.ndarray, np.ndarray] | None
    own: float
    predictions: list[dict[str, Any]]
    level: float
    boot: int
    figure_curves: list[dict[str, Any]] = field(default_factory=list, repr=False)
    figure_scans: list[tuple[str, dict[str, Any]]] = field(default_factory=list, repr=False)

    @property
    def T(self) -> int:
        return int(self.lr.shape[0])

    @property
    def has_interval(self) -> bool:
        return getattr(self.fit, "interval", None) is not None and self.boot != 0

    def summary(self) -> str:
        fit, level = self.fit, self.level
        where = "the packaged sample run (cdfast/data/README.md)" if self.packaged else repr(self.path)
        params = "   ".join(f"{k} = {v:.6g}" for k, v in fit.predicting_params.items())
        out = [f"cdfast report: {where}", f"  {self.name}",
               f"  {self.describe}; peak LR {self.peak_lr:g}, warmup {self.warmup_steps} steps",
               f"model {fit.model.name}, fitted on every logged loss: {params}  (R^2 = {fit.r2:.4f})"]
        if self.half is None:
            out.append(f"check: skipped ({self.n_first_half} logged losses in the first half of the run, too few to "
                       "fit and predict the rest)")
        else:
            band, last = self.check_band, self.last_loss
            inside = "" if band is None else (", inside its interval" if band[0][0] <= last <= band[1][0]
                                              else ", outside its interval")
            out.append(f"check: fitted on steps <= {self.T // 2} only, it predicts the loss at step {self.last_step} "
                       f"as {with_interval(self.check, band)} (logged {last:.4f}{inside}; error "
                       f"{100 * (self.check - last) / last:+.2f}%; held-out R^2 = {fmt(self.half.r2_holdout)})")
        out += [f"  warning: {w}" for w in getattr(fit, "warnings", ()) or ()]
        out.append(f"the run as logged: the model gives {self.own:.4f} at step {self.last_step} "
                   f"(logged {self.last_loss:.4f})")
        if fit.poor_fit:
            out.append(f"no predictions under other schedules: {fit.poor_fit}")
            return "\n".join(out)
        out.append(f"predicted final loss{f' [{100 * level:g}% interval]' if self.has_interval else ''} under other "
                   f"schedules and horizons (warmup {self.warmup_steps} steps kept):")
        rows = []
        for p in self.predictions:
            band = None if math.isnan(p["lo"]) else (np.array([p["lo"]]), np.array([p["hi"]]))
            mark = "*" if p.get("extrapolation") else ""
            rows.append([p["schedule"], f"{p['T']}{mark}", with_interval(p["loss"], band),
                         f"{p['edge']}{p['best_peak_lr']:.2g}", "" if p["edge"] else fmt(p["best_loss"], keep_zeros=True)])
        out.append(table(["schedule", "T", f"at peak LR {self.peak_lr:g}", "best peak LR", "at best peak LR"], rows))
        out.append("best peak LR: the minimum of the model's predicted final loss over peak LRs; '<' or '>': beyond "
                   f"the searched range {self.peak_lr * PEAK_RANGE[0]:.3g}..{self.peak_lr * PEAK_RANGE[1]:.3g}.  "
                   "A single run pins the loss scale but not how it moves with the peak LR: check the optimum with "
                   "a small sweep (cdfast.fit_peak_lr_law).")
        kinds = sorted({n.split(":", 1)[0] for p in self.predictions for n in p.get("extrapolation", ())})
        if kinds:
            out.append(f"'*': an extrapolation beyond the fitted run ({', '.join(kinds)}); the interval widens for a longer "
                       "horizon, another peak LR and an abrupt fall, not for a shorter run's earlier decay (the reasons "
                       "per prediction: RunReport.predictions[i]['extrapolation'])")
        if self.has_interval:
            out.append(f"interval: {100 * level:g}% bootstrap interval of the model's prediction ({self.boot} refits; "
                       "--boot N)")
        elif self.boot != 0:
            out.append(f"(model {fit.model.name} gives no prediction intervals in this version)")
        return "\n".join(out)


def _read(log: Any, loss: str | None) -> tuple[Any, str]:
    from .io import TrainingLog, read_log

    if isinstance(log, TrainingLog):
        return log, log.name or "log"
    path = str(log)
    return read_log(path, loss=loss), path


def report_run(log: Any = None, *, loss: str | None = None, model: str | None = None,
               schedules: Sequence[str | tuple[str, dict]] = RUN_SCHEDULES, steps: Sequence[int] | None = None,
               boot: int = BOOT, figure: bool = False) -> RunReport:
    """Fit a run and predict its final loss under other ``schedules`` and horizons ``steps``
    (default: 1, 2 and 4 times its own), at its peak LR and at the best peak LR of each."""
    from .data import SAMPLE_RUN

    packaged = log is None
    specs = [_spec(s) for s in schedules]
    the_log, path = _read(SAMPLE_RUN if packaged else log, loss)
    if the_log.lr is None:
        raise ValueError(f"{path!r}: the log records no learning rate and has no config that gives it; read it with "
                         "cdfast.io.read_log(path, lr=...) and pass the TrainingLog")
    lr, logged_steps, logged_loss = the_log.curve()
    source = f"learning rates: {the_log.lr_source}" if the_log.lr_source else ""
    describe = (f"{the_log.format}, T = {the_log.T}, {logged_steps.shape[0]} losses ({the_log.loss_name}) at steps "
                f"{logged_steps[0]}..{logged_steps[-1]}" + (f"; {source}" if source else ""))
    name = the_log.name or os.path.basename(os.path.normpath(path))
    T_run = int(lr.shape[0])
    horizons = list(steps) if steps else [k * T_run for k in RUN_HORIZONS]
    for T in horizons:
        check_fits(T, what=f"steps {T}", arrays=3, fix="choose a smaller horizon")
    peak = float(lr.max())
    warmup = warmup_of(lr)
    level = LEVEL

    first_half = logged_steps <= T_run // 2
    half = _fit(lr, logged_steps, logged_loss, model, first_half) if first_half.sum() >= 8 else None
    fit = _fit(lr, logged_steps, logged_loss, model, None)
    last_step, last_loss = int(logged_steps[-1]), float(logged_loss[-1])
    check = band = None
    if half is not None:
        check = float(half.predict(lr, at=[last_step])[-1])
        band = interval(half, lr, np.array([last_step]), level, boot)
    own = float(fit.predict(lr, at=[last_step])[-1])
    preds, curves, scans = [], [], []
    if fit.poor_fit:  # no schedule the model cannot describe is predicted
        specs = []
    with Progress("report", total=len(specs) * len(horizons)) as progress:
        for fam, params in specs:
            label = S.label(fam, params)
            for T in horizons:
                shape = S.make(fam, T, **params, **({"warmup": warmup} if 0 < warmup < T else {}))
                final = _final_loss(fit, peak * shape)
                pband = interval(fit, peak * shape, np.array([T]), level, boot)
                scan = _peak_scan(fit, shape, peak)
                preds.append({"schedule": label, "T": T, "loss": final,
                              "lo": math.nan if pband is None else float(pband[0][-1]),
                              "hi": math.nan if pband is None else float(pband[1][-1]),
                              "best_peak_lr": scan["eta"], "best_loss": scan["loss"], "edge": scan["edge"],
                              "extrapolation": _notes(fit, peak * shape)})
                if T == T_run and figure:  # a smooth curve of final loss against peak LR for the figure
                    etas = peak * np.geomspace(PEAK_RANGE[0], PEAK_RANGE[1], 17)
                    scans.append((label, {**scan, "etas": etas,
                                          "losses": np.array([_final_loss(fit, e * shape) for e in etas])}))
                    at = curve_points(T, FIGURE_POINTS)
                    curves.append({"label": label, "lr": peak * shape, "steps": at,
                                   "loss": fit.predict(peak * shape, at=at)})
                progress.advance()
    return RunReport(path=path, packaged=packaged, name=name, describe=describe, lr=lr, peak_lr=peak, warmup=warmup,
                     warmup_steps=configured_warmup(lr, the_log.config), fit=fit, half=half,
                     n_first_half=int(first_half.sum()), last_step=last_step, last_loss=last_loss,
                     check=check, check_band=band, own=own, predictions=preds, level=level, boot=boot,
                     figure_curves=curves, figure_scans=scans)


# ---------------------------------------------------------------------------
# the bound table


def time_terms(shape: np.ndarray, backend: str, repeat: int) -> tuple[tuple[float, float], float]:
    result = bound_terms(shape, backend=backend)  # compile / load outside the timing
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = bound_terms(shape, backend=backend)
        best = min(best, time.perf_counter() - t0)
    return result, best


def compare_backends(shape: np.ndarray, backends: Sequence[str], repeat: int) -> tuple[
        dict[str, tuple[float, float]], dict[str, float], float]:
    """``(a, b)`` of eq. (2.4) and the best time of ``repeat`` passes on every backend, and
    their largest relative difference from the first backend's ``(a, b)``."""
    terms, times = {}, {}
    for be in backends:
        terms[be], times[be] = time_terms(shape, be, repeat)
    a, b = terms[backends[0]]
    diff = max((max(abs(t[0] - a) / a, abs(t[1] - b) / b) for t in terms.values()), default=0.0)
    return terms, times, diff


def backends_for(choice: str) -> list[str]:
    """The backends a report or benchmark times: every available one for ``"all"``."""
    have = list(available_backends())
    if choice == "all":
        if not have:
            raise ImportError("no cdfast backend is available (neither Numba nor the C extension)")
        return have
    return [get_backend(choice).name]


def _exam(name: str, params: dict, warmup: int, grid: np.ndarray) -> Any:
    """qualifying_exam for a named family (a warmup of W steps is kept fixed across T)."""
    from .asymptotics import qualifying_exam

    if warmup:
        if warmup > grid[0]:
            raise ValueError(f"warmup {warmup} exceeds the exam's smallest horizon T = {grid[0]}")
        return qualifying_exam(lambda T: S.make(name, T, warmup=warmup, **params), grid, kind="family",
                               continuous=False)
    return qualifying_exam(name, grid, continuous=False, **params)


@dataclass
class Report:
    """What ``cdfast report`` prints, as numbers: ``.summary()`` is the text.

    ``run`` is the :class:`RunReport` (None with ``run=False``).  The bound table is
    ``columns`` and ``rows`` (one row per schedule: ``schedule, T, peak_lr, last_iterate,
    sqrtT_gap, average_iterate, exam, exam_s``, one ``<backend>_ms`` per timed backend,
    ``backend_rel_diff``); ``bounds`` gives the rows as dicts.  ``numba_cold``: Numba was
    not timed because its kernels are not compiled yet; ``numba_compiling``: their
    compilation runs in the background.  ``terms``: ``(schedule, a, b)`` of eq. (2.4).
    """

    run: RunReport | None
    steps: int
    D: float
    G: float
    L_star: float
    peak_lr: float | None
    warmup: int
    backends: tuple[str, ...]
    repeat: int
    exam: bool
    columns: list[str]
    rows: list[list[Any]]
    terms: list[tuple[str, float, float]]
    numba_cold: bool = False
    numba_compiling: bool = False

    @property
    def bounds(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]

    def summary(self) -> str:
        out = [self.run.summary(), ""] if self.run is not None else []
        shown = self.columns[:6] + (["exam"] if self.exam else [])  # timings: one line below, details in .rows
        peak = "peak LR = bound-optimal (D/G) sqrt(a/b)" if self.peak_lr is None else f"peak LR = {self.peak_lr:g}"
        out.append(table(shown, [r[:len(shown)] for r in self.rows], title=(
            f"bounds of the standard schedules (eq. 2.4): T = {self.steps}, D = {self.D:g}, G = {self.G:g}, "
            f"L* = {self.L_star:g}; " + peak)))
        out.append("last_iterate: eq. (2.4) at T; sqrtT_gap = sqrt(T) (bound - L*) (Table 1: 2 for linear); "
                   "average_iterate: eq. (2.3)"
                   + ("; exam: Condition 2.5 on horizons 1e3..max(T, 1e5) (`cdfast exam NAME` for the full exam)"
                      if self.exam else ""))
        worst = max((r[-1] for r in self.rows), default=0.0)
        speed = ", ".join(f"{be} {max(r[8 + k] for r in self.rows):.3g} ms" for k, be in enumerate(self.backends))
        out.append(f"backends: {' and '.join(self.backends)} agree to {worst:.2g} (largest relative difference of "
                   f"(a, b)); one bound pass at T = {self.steps}: {speed} (slowest schedule, best of {self.repeat}; "
                   "`cdfast bench` for more)")
        if self.numba_cold:
            out.append("numba: not timed: its kernels are not compiled yet (first use; the C kernels give the same "
                       "results bit for bit) - " + ("they are compiling in the background, run `cdfast report` "
                       "again to time them" if self.numba_compiling else
                       "`python -m cdfast._kernels._compile` compiles them"))
        return "\n".join(out)

    def __str__(self) -> str:
        return self.summary()


def report(log: Any = None, *, loss: str | None = None, model: str | None = None,
           run_schedules: Sequence[str | tuple[str, dict]] = RUN_SCHEDULES, run_steps: Sequence[int] | None = None,
           boot: int = BOOT, run: bool = True, schedules: Sequence[str | tuple[str, dict]] = BOUND_SCHEDULES,
           steps: int = 10**6, warmup: int = 0, peak_lr: float | None = None, D: float = 1.0, G: float = 1.0,
           L_star: float = 0.0, backend: str = "all", repeat: int = 3, exam: bool = True,
           figure: bool = False) -> Report:
    """A training run fitted and re-planned, and the bounds of the standard schedules.

    Parameters
    ----------
    log : path or cdfast.io.TrainingLog, optional
        The run (default: the packaged sample run, :data:`cdfast.data.SAMPLE_RUN`).
    loss, model : str, optional
        The log's loss column and the loss model (defaults as in :func:`cdfast.io.read_log`
        and :func:`cdfast.fit_loss_curves`).
    run_schedules, run_steps : optional
        Schedules (``"NAME[:k=v,...]"`` or ``(name, params)``) and horizons the run is
        re-planned under (default: 1, 2 and 4 times its own horizon).
    boot : int
        Bootstrap refits per prediction interval (0: no intervals).
    run : bool
        False: only the bound table.
    schedules, steps, warmup, peak_lr, D, G, L_star
        The bound table: schedules at horizon ``steps`` with ``warmup`` steps, at
        ``peak_lr`` (default: the bound-optimal ``(D/G) sqrt(a/b)``).
    backend : {"all", "auto", "numba", "c"}
        Backends timed and compared.
    repeat : int
        Timing repetitions (the best is kept).
    exam : bool
        Run the qualifying exam on horizons 1e3..max(steps, 1e5).
    figure : bool
        Also keep what :func:`cdfast.plot.report_figure` draws (a few more predictions).

    Returns
    -------
    Report
        Fields and ``.summary()``.

    Notes
    -----
    Bounds: eq. (2.4) (last iterate) and eq. (2.3) (average iterate); the exam is
    Condition 2.5.  The run's model and intervals: :func:`cdfast.fit_loss_curves` and
    ``CurveFit.interval``.
    """
    if peak_lr is None and (D == 0 or G == 0):
        raise ValueError("the optimal peak LR needs D > 0 and G > 0; give peak_lr instead")
    specs = [_spec(s) for s in schedules]
    check_fits(steps, what=f"steps {steps}", arrays=3, fix="choose a smaller steps")
    shown = report_run(log, loss=loss, model=model, schedules=run_schedules, steps=run_steps, boot=boot,
                       figure=figure) if run else None
    backends = backends_for(backend)
    cold = compiling = False
    if backend == "all" and len(backends) > 1 and "numba" in backends:
        from ._kernels import _warmup

        if not _warmup.numba_is_warm():  # first use: no compile wait; warm Numba's cache for next time
            backends.remove("numba")
            cold, compiling = True, _warmup.start_background()
    columns = ["schedule", "T", "peak_lr", "last_iterate", "sqrtT_gap", "average_iterate", "exam",
               "exam_s"] + [f"{b}_ms" for b in backends] + ["backend_rel_diff"]
    rows: list[list[Any]] = []
    terms_out = []
    grid = None
    if exam:
        from .asymptotics import EXAM_T

        grid = EXAM_T[EXAM_T <= max(steps, 10**5)]
    with Progress("report", total=len(specs)) as progress:
        for name, params in specs:
            shape = S.make(name, steps, **params, **({"warmup": warmup} if warmup else {}))
            terms, times, diff = compare_backends(shape, backends, repeat)
            a, b = terms[backends[0]]
            eta = (D / G) * math.sqrt(a / b) if peak_lr is None else peak_lr
            last = L_star + D * D * a / eta + G * G * b * eta
            avg = average_iterate_bound(eta * shape, D, G, L_star, backend=backends[0])
            verdict, exam_s = "n/a", math.nan
            if grid is not None:
                t0 = time.perf_counter()
                result = _exam(name, params, warmup, grid)
                exam_s = time.perf_counter() - t0
                verdict = "qualified" if result.qualified else "not qualified"
            label = S.label(name, params)
            rows.append([label, steps, eta, last, math.sqrt(steps) * (last - L_star), avg, verdict, exam_s]
                        + [1e3 * times[be] for be in backends] + [diff])
            terms_out.append((label, a, b))
            progress.advance()
    return Report(run=shown, steps=steps, D=D, G=G, L_star=L_star, peak_lr=peak_lr, warmup=warmup,
                  backends=tuple(backends), repeat=repeat, exam=exam, columns=columns, rows=rows, terms=terms_out,
                  numba_cold=cold, numba_compiling=bool(compiling))
