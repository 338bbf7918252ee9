"""Which loss model predicts *your* runs best: time-series cross-validation and a leaderboard.

:func:`compare_models` fits every model on part of the user's data and scores it on the
part it did not see (the protocol the default model was chosen with, on the user's runs):

``within``  each run: fit the steps up to ``fit_frac`` of its horizon, predict the rest.
``across``  leave one run out: fit the other runs jointly (they share every parameter, so
            give runs of one setup: same model, data and optimizer under different
            schedules, horizons or peak LRs), predict the left-out run.

Scores (relative errors, in %): the predicted last logged loss of each held-out part
(median and worst over predictions), the whole-curve error (mean absolute relative
error over the held-out points, after the first ``CURVE_FROM`` of the run's horizon for
``across``), and the fit's wall time.  With ``intervals=True`` also how often the held-out
last loss falls inside ``CurveFit.interval`` at ``level``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ._curvefit import FitWarning, fit_loss_curves
from ._registry import MODELS, names
from .base import FloatArray

__all__ = ["compare_models", "Leaderboard", "prediction_errors", "CURVE_FROM"]

#: ``across`` scores a run's whole curve after this fraction of its horizon (the early
#: transient that no model here describes).
CURVE_FROM = 0.1
PROTOCOLS = ("auto", "within", "across")


def prediction_errors(pred: FloatArray, loss: FloatArray, scored: np.ndarray) -> tuple[float, float]:
    """``(error of the last logged loss, mean |error| over the scored points)``, relative."""
    rel = np.asarray(pred, dtype=np.float64) / np.asarray(loss, dtype=np.float64) - 1.0
    return float(rel[-1]), float(np.mean(np.abs(rel[scored]))) if scored.any() else math.nan


@dataclass(frozen=True)
class Leaderboard:
    """Models ranked by held-out prediction error (best first).

    ``rows``: one dict per model (``model``, ``n``, ``final_median_pct``,
    ``final_worst_pct``, ``curve_mean_pct``, ``fit_ms``, ``failed``, and ``coverage`` with
    intervals); ``predictions``: one dict per (model, held-out part) with the signed
    errors; ``best``: the winning model's name.
    """

    rows: list[dict[str, Any]]
    predictions: list[dict[str, Any]] = field(repr=False)
    protocol: str = "auto"
    #: what the scores rest on that the table does not show (a run that diverged), in words
    notes: tuple[str, ...] = ()

    @property
    def best(self) -> str:
        if not self.rows:
            raise ValueError("the leaderboard is empty: no model was scored (compare_models needs at least one "
                             "model and one run)")
        return self.rows[0]["model"]

    def __str__(self) -> str:
        head = ["model", "n", "final median %", "final worst %", "curve mean %", "fit ms"]
        keys = ["model", "n", "final_median_pct", "final_worst_pct", "curve_mean_pct", "fit_ms"]
        if self.rows and "coverage" in self.rows[0]:
            head.append("coverage")
            keys.append("coverage")
        lines = [[_fmt(r.get(k)) for k in keys] + ([f"{r['failed']} failed"] if r["failed"] else [])
                 for r in self.rows]
        widths = [max(len(x) for x in col) for col in zip(head, *[ln[:len(head)] for ln in lines])]
        best = self.best if self.rows else "none (no model was scored)"
        out = [f"held-out prediction error ({self.protocol}); best: {best}",
               "  ".join(h.rjust(w) for h, w in zip(head, widths))]
        for ln in lines:
            out.append("  ".join(x.rjust(w) for x, w in zip(ln, widths)) + ("  " + ln[-1] if len(ln) > len(head) else ""))
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _as_run(item: Any, i: int) -> tuple[str, FloatArray, np.ndarray, FloatArray, tuple[int, float] | None]:
    """``(name, lr, steps, loss, divergence)`` of one entry of ``runs``."""
    from ..io import TrainingLog, read_log

    if isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
        item = read_log(item)
    if isinstance(item, TrainingLog):
        if item.lr is None:
            raise ValueError(f"run {i} ({item.name}): the log gives no learning rates; pass lr= to read_log")
        return item.name, item.lr, item.steps, item.loss, item.divergence
    try:
        lr, steps, loss = item
    except (TypeError, ValueError):
        raise TypeError(f"runs[{i}] must be a TrainingLog, a path to a log, or a tuple (lr, steps, loss); "
                        f"got {type(item).__name__}") from None
    return f"run {i}", np.asarray(lr, dtype=np.float64), np.asarray(steps), np.asarray(loss, dtype=np.float64), None


def compare_models(runs: Sequence[Any], *, models: Sequence[str] | None = None, protocol: str = "auto",
                   fit_frac: float = 0.5, intervals: bool = False, level: float = 0.9) -> Leaderboard:
    """Rank loss models by how well they predict held-out parts of the given runs.

    Parameters
    ----------
    runs : sequence
        :class:`cdfast.io.TrainingLog` objects, paths that :func:`cdfast.io.read_log`
        reads, or ``(lr, steps, loss)`` tuples.
    models : sequence of str, optional
        Registry names (default: every model in :data:`cdfast.models.MODELS`).
    protocol : {"auto", "within", "across"}
        See the module docstring; "auto" runs ``within`` on every run and, with two or
        more runs, ``across`` too.
    fit_frac : float in (0, 1)
        ``within``: the fraction of each run's horizon that is fitted.
    intervals : bool
        Also score the coverage of ``CurveFit.interval`` at ``level`` (slower).

    Returns
    -------
    Leaderboard
        Printable; ``.rows`` (best first), ``.predictions``, ``.best``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol = {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if isinstance(fit_frac, bool) or not isinstance(fit_frac, (int, float)) or not 0.0 < fit_frac < 1.0:
        raise ValueError(f"fit_frac = {fit_frac!r} must lie in (0, 1): the fraction of each run that is fitted")
    models = list(names() if models is None else models)
    for m in models:
        if m not in MODELS:
            raise ValueError(f"unknown model {m!r}; choose from {', '.join(names())}")
    read = [_as_run(r, i) for i, r in enumerate(runs)]
    if not read:
        raise ValueError("runs is empty; give at least one training log")
    data = [r[:4] for r in read]
    notes = tuple(f"run {name!r} diverged at step {d[0]} (loss {d[1]}): it is fitted and scored up to there, as a run "
                  "that stopped; the scores say nothing of how the models predict a divergence"
                  for name, *_, d in read if d is not None)
    tasks: list[tuple[str, list[tuple[FloatArray, np.ndarray, FloatArray, np.ndarray]], tuple, np.ndarray]] = []
    if protocol in ("auto", "within"):
        for name, lr, steps, loss in data:
            cut = steps <= fit_frac * lr.shape[0]
            if cut.sum() >= 5 and (~cut).any():
                tasks.append(("within", [(lr, steps, loss, cut)], (name, lr, steps, loss), ~cut))
    if protocol in ("auto", "across") and len(data) >= 2:
        for i, (name, lr, steps, loss) in enumerate(data):
            train = [(d[1], d[2], d[3], np.ones(d[2].shape[0], bool)) for j, d in enumerate(data) if j != i]
            tasks.append(("across", train, (name, lr, steps, loss), steps > CURVE_FROM * lr.shape[0]))
    if not tasks:
        raise ValueError("nothing to score: each run needs at least 5 logged points before "
                         f"{fit_frac:g} of its horizon and some after (or give two or more runs for 'across')")
    preds: list[dict[str, Any]] = []
    rows = []
    for m in models:
        times, failed = [], 0
        for kind, train, (name, lr, steps, loss), scored in tasks:
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FitWarning)
                    fit = fit_loss_curves([t[0] for t in train], [t[1] for t in train], [t[2] for t in train],
                                            model=m, fit_steps=[t[3] for t in train])
            except ValueError:
                failed += 1
                continue
            times.append(time.perf_counter() - t0)
            pred = fit.predict(lr, at=steps)
            final, curve = prediction_errors(pred, loss, scored)
            row = dict(model=m, protocol=kind, run=name, final=final, curve=curve)
            if intervals:
                lo, hi = fit.interval(lr, at=steps[-1:], level=level)
                row["covered"] = bool(lo[0] <= loss[-1] <= hi[0])
            preds.append(row)
        mine = [p for p in preds if p["model"] == m]
        fe = 100.0 * np.abs([p["final"] for p in mine]) if mine else np.array([math.nan])
        ce = 100.0 * np.array([p["curve"] for p in mine]) if mine else np.array([math.nan])
        row = dict(model=m, n=len(mine), final_median_pct=float(np.median(fe)), final_worst_pct=float(np.max(fe)),
                   curve_mean_pct=float(np.nanmean(ce)), fit_ms=1000.0 * float(np.median(times)) if times else math.nan,
                   failed=failed)
        if intervals:
            row["coverage"] = float(np.mean([p["covered"] for p in mine])) if mine else math.nan
        rows.append(row)
    rows.sort(key=lambda r: (r["n"] == 0, r["final_median_pct"], r["curve_mean_pct"]))
    return Leaderboard(rows, preds, protocol, notes)
