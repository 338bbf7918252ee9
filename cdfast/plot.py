"""Figures: schedules, bound curves, fits and predictions, the qualifying exam.

matplotlib is optional (``pip install "cdfast[plot]"``); it is imported on first use, so
importing cdfast never needs it.

Two layers, as matplotlib users expect:

* ``plot_*(..., ax=None) -> Axes`` draw one panel into ``ax`` (a new figure when
  ``ax`` is None) and return the axes, so they compose into your own figures:
  :func:`plot_schedule`, :func:`plot_bound_curve`, :func:`plot_fit`,
  :func:`plot_residuals`, :func:`plot_prediction`, :func:`plot_exam`,
  :func:`plot_peak_lr`, :func:`plot_peak_scan`.
  :func:`plot_forecast` draws a :class:`cdfast.Forecast` of a run in progress.
* ``*_figure(...) -> Figure`` compose them into the figures of the command line:
  :func:`curve_figure`, :func:`fit_figure`, :func:`prediction_figure`,
  :func:`report_figure`, :func:`exam_figure`, :func:`peak_lr_figure`, :func:`forecast_figure`.

:func:`save_png` writes a figure atomically (a temporary file in the target directory,
then ``os.replace``), so a failed write never leaves a partial PNG behind.  The command
line uses the non-interactive Agg backend (:func:`use_agg`); the ``plot_*`` functions
leave your backend alone.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import _files

_INSTALL = 'plotting needs matplotlib; install it with: pip install "cdfast[plot]"'

__all__ = [
    "save_png", "use_agg",
    "plot_schedule", "plot_bound_curve", "plot_fit", "plot_residuals", "plot_prediction", "plot_exam",
    "plot_peak_lr", "plot_peak_scan", "distinct_labels",
    "curve_figure", "fit_figure", "prediction_figure", "report_figure", "exam_figure", "peak_lr_figure",
    "plan_figure", "plot_forecast", "forecast_figure",
]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(_INSTALL) from None
    return plt


def use_agg() -> None:
    """Switch matplotlib to the file-only Agg backend (no display needed); raises an
    ImportError naming the extra when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(_INSTALL) from None
    matplotlib.use("Agg", force=True)


def _axes(ax: Any, figsize: tuple[float, float] = (6.5, 4.0)) -> Any:
    if ax is not None:
        return ax
    plt = _pyplot()
    _, ax = plt.subplots(figsize=figsize)
    return ax


def _wrap(title: str, width: int = 64) -> str:
    """Long titles (W&B run names run to 150 characters) wrap instead of overflowing."""
    return textwrap.fill(title, width, break_long_words=True, break_on_hyphens=False)


def _fmt(v: float) -> str:
    v = float(v)
    return f"{v:.4g}" if v == 0 or 1e-3 <= abs(v) < 1e5 else f"{v:.3e}"


def save_png(fig: Any, path: str | os.PathLike) -> None:
    """Write ``fig`` to ``path`` as PNG atomically and close it."""
    plt = _pyplot()
    try:
        _files.atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"), "wb")
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------
# panels


def plot_schedule(lr: ArrayLike, *, steps: ArrayLike | None = None, ax: Any = None, label: str | None = None,
                  **kwargs: Any) -> Any:
    """The learning rates ``eta_1 .. eta_T`` against the step (default ``1 .. T``)."""
    ax = _axes(ax)
    lr = np.asarray(lr, dtype=float)
    x = np.arange(1, lr.shape[0] + 1) if steps is None else np.asarray(steps)
    kwargs.setdefault("lw", 1.2)
    ax.plot(x, lr, label=label, **kwargs)
    ax.set_ylabel("learning rate")
    ax.set_xlabel("step")
    return ax


def plot_bound_curve(steps: ArrayLike, bound: ArrayLike, *, ax: Any = None,
                     label: str = "last-iterate bound, eq. (2.4)", **kwargs: Any) -> Any:
    """The bound curve of eq. (2.4) against the 1-based step, on a log scale."""
    ax = _axes(ax)
    kwargs.setdefault("color", "tab:blue")
    kwargs.setdefault("lw", 1.5)
    ax.plot(np.asarray(steps), np.asarray(bound, dtype=float), label=label, **kwargs)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("bound")
    if label:
        ax.legend(fontsize="small")
    return ax


def distinct_labels(names: Sequence[str] | None, n: int, width: int = 28) -> list[str]:
    """Short legend labels for ``n`` runs: the names without their common prefix and suffix
    (run names of one sweep differ in a few characters), cut to ``width``; "run k" when a
    name is missing or nothing is left."""
    given = [str(x) for x in (names or [])][:n]
    names = given + [f"run {k}" for k in range(len(given), n)]
    if len(given) == n and len(set(names)) == n and n > 1:
        pre = os.path.commonprefix(names)
        suf = os.path.commonprefix([x[::-1] for x in names])[::-1]
        # keep whole tokens ("iter25000", not "25"): back off to the separators
        seps = "_-/ "
        pre = pre[: max((pre.rfind(c) for c in seps), default=-1) + 1]
        cuts_at = [i for i in (suf.find(c) for c in seps) if i >= 0]
        suf = suf[min(cuts_at):] if cuts_at else ""
        cut = [x[len(pre):len(x) - len(suf)] for x in names]
        if all(cut):
            names = [c.strip(seps) or c for c in cut]
    return [x if len(x) <= width else x[: width - 1] + "\u2026" for x in names]


def _runs_of(steps: np.ndarray, run: ArrayLike | None) -> tuple[np.ndarray, list[int]]:
    r = np.zeros(steps.shape, dtype=np.int64) if run is None else np.asarray(run, dtype=np.int64)
    return r, sorted(set(r.tolist()))


def plot_fit(steps: ArrayLike, loss: ArrayLike, fitted: ArrayLike, *, fit_mask: ArrayLike | None = None,
             burn_mask: ArrayLike | None = None, cutoff: float | Sequence[float] | None = None,
             params: Mapping[str, float] | None = None, r2: float | None = None, r2_holdout: float | None = None,
             model: str | None = None, run: ArrayLike | None = None, run_names: Sequence[str] | None = None,
             ax: Any = None) -> Any:
    """Logged losses against the fitted model, the three kinds of points told apart.

    Parameters
    ----------
    steps, loss, fitted : array_like
        Logged steps, losses, and the fitted model at those steps (several runs
        concatenated, told apart by ``run``).
    fit_mask, burn_mask : array_like of bool, optional
        Points used for fitting, and points inside the burn-in (neither fitted nor scored).
        The rest are held out (predicted, not fitted).  Default: every point fitted.
    cutoff : float or sequence of float, optional
        The last fitted step (one per run), drawn as a dashed vertical line.
    params, r2, r2_holdout, model : optional
        Fitted parameters and scores, printed in a box on the panel.
    run, run_names : optional
        Run index of every point and the runs' names (for the legend).
    ax : matplotlib Axes, optional
        Where to draw (default: a new figure).

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    steps = np.asarray(steps)
    loss = np.asarray(loss, dtype=float)
    fitted = np.asarray(fitted, dtype=float)
    fit = np.ones(steps.shape, bool) if fit_mask is None else np.asarray(fit_mask, bool)
    burn = np.zeros(steps.shape, bool) if burn_mask is None else np.asarray(burn_mask, bool)
    held = ~fit & ~burn
    runs, ids = _runs_of(steps, run)
    cuts = None if cutoff is None else np.broadcast_to(np.asarray(cutoff, dtype=float), (max(ids) + 1,))
    many = len(ids) > 1
    labels = distinct_labels(run_names, max(ids) + 1) if many else []
    for k in ids:
        sel = runs == k
        color = f"C{k % 10}" if many else "tab:blue"
        dots = color if many else "0.25"
        ax.plot(steps[sel & burn], loss[sel & burn], "o", ms=3, mfc="none", color="0.6")
        ax.plot(steps[sel & fit], loss[sel & fit], ".", ms=4, color=dots)
        ax.plot(steps[sel & held], loss[sel & held], "x", ms=3.5, color=color if many else "tab:red")
        ok = sel & np.isfinite(fitted)
        ax.plot(steps[ok], fitted[ok], "-", lw=1.5, color=color, label=labels[k] if many else "model")
        if cuts is not None and np.isfinite(cuts[k]):
            ax.axvline(cuts[k], color=color if many else "0.4", ls="--", lw=0.9)
    # one legend entry per kind of point, whatever the number of runs
    kinds = [(".", "0.25", "full", "fitted"), ("x", "0.25" if many else "tab:red", "full", "held out (predicted)")]
    if burn.any():
        kinds.append(("o", "0.6", "none", "burn-in (not fitted, not scored)"))
    for marker, color, fill, label in kinds:
        ax.plot([], [], marker, color=color, mfc=color if fill == "full" else "none", ms=4, label=label)
    if cuts is not None:
        ax.plot([], [], "--", color="0.4", lw=0.9, label="fit cutoff")
    # the early steps of a model can be far above the data: frame the data, not the model
    shown = loss[~burn] if (~burn).any() else loss
    lo, hi = float(np.min(shown)), float(np.max(shown))
    span = (hi - lo) or abs(hi) or 1.0
    ax.set_ylim(lo - 0.1 * span, hi + 0.1 * span)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    lines = []
    if model:
        lines.append(f"model: {model}")
    for name, v in (params or {}).items():
        lines.append(f"{name} = {_fmt(v)}")
    if r2 is not None:
        lines.append(f"$R^2$ fitted = {r2:.4f}")
    if r2_holdout is not None and np.isfinite(r2_holdout):
        lines.append(f"$R^2$ held out = {r2_holdout:.4f}")
    if lines:
        ax.text(0.98, 0.97, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize="x-small",
                family="monospace", bbox={"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9})
    ax.legend(fontsize="x-small", loc="lower left")
    return ax


def plot_residuals(steps: ArrayLike, residuals: ArrayLike, *, fit_mask: ArrayLike | None = None,
                   burn_mask: ArrayLike | None = None, ax: Any = None) -> Any:
    """``loss - model`` against the step: fitted, held-out and burn-in points told apart."""
    ax = _axes(ax, (6.5, 2.5))
    steps = np.asarray(steps)
    resid = np.asarray(residuals, dtype=float)
    fit = np.ones(steps.shape, bool) if fit_mask is None else np.asarray(fit_mask, bool)
    burn = np.zeros(steps.shape, bool) if burn_mask is None else np.asarray(burn_mask, bool)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.plot(steps[fit], resid[fit], ".", ms=3, color="0.25")
    ax.plot(steps[~fit & ~burn], resid[~fit & ~burn], "x", ms=3, color="tab:red")
    ax.plot(steps[burn], resid[burn], "o", ms=3, mfc="none", color="0.6")
    finite = resid[~burn & np.isfinite(resid)]
    if finite.size:
        lim = 1.2 * float(np.quantile(np.abs(finite), 0.98)) or 1.0
        ax.set_ylim(-lim, lim)
    ax.set_xlabel("step")
    ax.set_ylabel("residual")
    return ax


def plot_prediction(steps: ArrayLike, loss: ArrayLike, *, lo: ArrayLike | None = None, hi: ArrayLike | None = None,
                    ax: Any = None, label: str = "predicted", level: float | None = None, **kwargs: Any) -> Any:
    """A predicted loss curve, with its interval ``[lo, hi]`` as a band when given."""
    ax = _axes(ax)
    steps = np.asarray(steps)
    y = np.asarray(loss, dtype=float)
    line, = ax.plot(steps, y, label=label, **{"lw": 1.5, **kwargs})
    shown = [y]
    if lo is not None and hi is not None:
        band = f"{label}: {100 * level:.0f}% interval" if level is not None else None
        lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, lw=0, label=band)
        shown += [lo, hi]
    _widen_ylim(ax, steps, shown)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    return ax


def _widen_ylim(ax: Any, steps: np.ndarray, curves: Sequence[np.ndarray]) -> None:
    """Widen (never narrow) the y-range so that ``curves`` show past their first 10% of
    steps: axes set up for a logged run (plot_fit) would otherwise clip a prediction that
    runs longer and lower.  The early transient, often far higher, is left to clip."""
    if steps.size == 0:
        return
    tail = steps >= 0.1 * np.max(steps)
    values = np.concatenate([c[tail] for c in curves])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    low, high = ax.get_ylim()
    lo_v, hi_v = float(values.min()), float(values.max())
    margin = 0.05 * ((max(high, hi_v) - min(low, lo_v)) or 1.0)
    if lo_v < low or hi_v > high:
        ax.set_ylim(min(low, lo_v - margin) if lo_v < low else low, max(high, hi_v + margin) if hi_v > high else high)


def plot_exam(T: ArrayLike, scaled: ArrayLike, *, qualified: bool | None = None, limit: float | None = None,
              ax: Any = None, title: str | None = None) -> Any:
    """The qualifying exam (Condition 2.5): ``sqrt(T)`` times the bound at
    ``eta_peak = 1/sqrt(T)`` against T, with its limit ``q1^2 + q2^2`` as a line.

    A qualified schedule levels off at the limit; an unqualified one keeps growing
    (like ln T for the constant and inverse-sqrt schedules) and has no finite limit.
    """
    ax = _axes(ax)
    color = {True: "tab:green", False: "tab:red", None: "tab:blue"}[qualified]
    ax.plot(np.asarray(T), np.asarray(scaled, dtype=float), "o-", color=color, label=r"$\sqrt{T}\,\times$ bound")
    if limit is not None and np.isfinite(limit):
        ax.axhline(limit, color="0.3", ls="--", lw=1.0, label=f"limit $q_1^2 + q_2^2$ = {_fmt(limit)}")
    ax.set_xscale("log")
    ax.set_xlabel("horizon T")
    ax.set_ylabel(r"$\sqrt{T}\,\times$ bound at $\eta_{peak}=1/\sqrt{T}$")
    verdict = {True: "qualified", False: "not qualified", None: ""}[qualified]
    heading = " - ".join(x for x in (title, verdict) if x)
    if heading:
        ax.set_title(_wrap(heading), fontsize="medium")
    ax.legend(fontsize="small")
    return ax


def plot_peak_lr(curves: Sequence[tuple[str, float, float]], *, D: float = 1.0, G: float = 1.0,
                 L_star: float = 0.0, ax: Any = None) -> Any:
    """Last-iterate bound against peak LR for several schedules, optimum marked.

    ``curves`` holds ``(label, a, b)`` with ``a, b`` the coefficients of
    :func:`cdfast.bound_terms` for the unit-peak shape, so the bound at peak ``eta`` is
    ``L_* + D^2 a / eta + G^2 b eta`` (eq. 2.4; minimum at ``(D/G) sqrt(a/b)``).
    """
    ax = _axes(ax)
    for label, a, b in curves:
        opt = (D / G) * np.sqrt(a / b)
        eta = opt * np.logspace(-1.5, 1.5, 200)
        line, = ax.plot(eta, L_star + D * D * a / eta + G * G * b * eta, label=label)
        ax.plot([opt], [L_star + 2 * D * G * np.sqrt(a * b)], "o", color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("last-iterate bound, eq. (2.4)")
    ax.legend(fontsize="small")
    return ax


# ---------------------------------------------------------------------------
# figures of the command line


def curve_figure(steps: ArrayLike, lr: ArrayLike, bound: ArrayLike, *, lr_steps: ArrayLike | None = None,
                 title: str | None = None) -> Any:
    """LR schedule (top) over the last-iterate bound curve of eq. (2.4) (bottom)."""
    plt = _pyplot()
    fig, (ax_lr, ax_b) = plt.subplots(2, 1, sharex=True, figsize=(7, 5.5), height_ratios=(1, 2))
    plot_schedule(lr, steps=lr_steps, ax=ax_lr, color="tab:orange")
    ax_lr.set_xlabel("")
    plot_bound_curve(steps, bound, ax=ax_b)
    if title:
        ax_lr.set_title(_wrap(title), fontsize="medium")
    fig.tight_layout()
    return fig


def fit_figure(steps: ArrayLike, loss: ArrayLike, fitted: ArrayLike, lr: ArrayLike | Sequence[ArrayLike], *,
               fit_mask: ArrayLike | None = None, burn_mask: ArrayLike | None = None,
               cutoff: float | Sequence[float] | None = None, params: Mapping[str, float] | None = None,
               r2: float | None = None, r2_holdout: float | None = None, model: str | None = None,
               run: ArrayLike | None = None, run_names: Sequence[str] | None = None,
               pred_steps: ArrayLike | None = None, predicted: ArrayLike | None = None,
               pred_lr: ArrayLike | None = None, title: str | None = None) -> Any:
    """The LR (top), logged loss against the fitted model (middle, :func:`plot_fit`) and
    the residuals (bottom).  ``lr`` is one LR sequence, or one per run; ``predicted`` is
    the fitted model under another schedule ``pred_lr`` at ``pred_steps``."""
    plt = _pyplot()
    fig, (ax_lr, ax_l, ax_r) = plt.subplots(3, 1, sharex=True, figsize=(7.5, 8), height_ratios=(1, 2.6, 1))
    lrs = list(lr) if isinstance(lr, (list, tuple)) else [lr]
    many = len(lrs) > 1
    names = distinct_labels(run_names, len(lrs)) if many else ["logged run"]
    for k, x in enumerate(lrs):
        plot_schedule(x, ax=ax_lr, color=f"C{k % 10}" if many else "tab:orange", label=names[k])
    if pred_lr is not None:
        plot_schedule(pred_lr, ax=ax_lr, color="tab:green", ls="--", label="prediction")
    if pred_lr is not None or many:
        ax_lr.legend(fontsize="x-small")
    ax_lr.set_xlabel("")
    plot_fit(steps, loss, fitted, fit_mask=fit_mask, burn_mask=burn_mask, cutoff=cutoff, params=params, r2=r2,
             r2_holdout=r2_holdout, model=model, run=run, run_names=run_names, ax=ax_l)
    ax_l.set_xlabel("")
    if predicted is not None and pred_steps is not None:
        plot_prediction(pred_steps, predicted, ax=ax_l, color="tab:green", ls="--", label="predicted, other schedule")
        ax_l.legend(fontsize="x-small", loc="lower left")
    plot_residuals(steps, np.asarray(loss, dtype=float) - np.asarray(fitted, dtype=float), fit_mask=fit_mask,
                   burn_mask=burn_mask, ax=ax_r)
    if title:
        ax_lr.set_title(_wrap(title), fontsize="medium")
    fig.tight_layout()
    return fig


def prediction_figure(steps: ArrayLike, loss: ArrayLike, fitted: ArrayLike, lr: ArrayLike,
                      predictions: Sequence[Mapping[str, Any]], *, fit_mask: ArrayLike | None = None,
                      burn_mask: ArrayLike | None = None, level: float | None = None,
                      title: str | None = None) -> Any:
    """A logged run, its fitted model, and predicted curves under other schedules.

    ``predictions`` holds dicts with ``label``, ``lr``, ``steps``, ``loss`` and optionally
    ``lo``/``hi`` (an interval at ``level``).  Top: the schedules; bottom: the losses.
    """
    plt = _pyplot()
    fig, (ax_lr, ax_l) = plt.subplots(2, 1, sharex=True, figsize=(7.5, 6.5), height_ratios=(1, 2.4))
    plot_schedule(lr, ax=ax_lr, color="0.3", label="logged run")
    steps = np.asarray(steps)
    loss = np.asarray(loss, dtype=float)
    fit = np.ones(steps.shape, bool) if fit_mask is None else np.asarray(fit_mask, bool)
    burn = np.zeros(steps.shape, bool) if burn_mask is None else np.asarray(burn_mask, bool)
    ax_l.plot(steps[~burn], loss[~burn], ".", ms=3.5, color="0.25", label="logged loss")
    if burn.any():
        ax_l.plot(steps[burn], loss[burn], "o", ms=3, mfc="none", color="0.6", label="burn-in")
    fitted = np.asarray(fitted, dtype=float)
    ok = np.isfinite(fitted)
    ax_l.plot(steps[ok & fit], fitted[ok & fit], "-", color="0.25", lw=1.2, label="fitted model")
    lows = [float(np.min(loss[~burn] if (~burn).any() else loss))]
    highs = [float(np.max(loss[~burn] if (~burn).any() else loss))]
    for k, p in enumerate(predictions):
        color = f"C{k % 10}"
        plot_schedule(p["lr"], ax=ax_lr, color=color, ls="--", label=p["label"])
        plot_prediction(p["steps"], p["loss"], lo=p.get("lo"), hi=p.get("hi"), ax=ax_l, color=color,
                        label=p["label"], level=level)
        at_tail = np.asarray(p["steps"]) >= 0.1 * np.max(p["steps"])
        for key, bucket in (("loss", lows), ("lo", lows), ("hi", highs)):  # the band too, not only the curve
            if p.get(key) is None:
                continue
            tail = np.asarray(p[key], dtype=float)[at_tail]
            if tail.size and np.isfinite(tail).any():
                finite = tail[np.isfinite(tail)]
                bucket.append(float(finite.min() if bucket is lows else finite.max()))
    lo, hi = min(lows), max(highs)
    span = (hi - lo) or 1.0
    ax_l.set_ylim(lo - 0.1 * span, hi + 0.1 * span)
    ax_lr.set_xlabel("")
    ax_lr.legend(fontsize="x-small")
    ax_l.legend(fontsize="x-small")
    if title:
        ax_lr.set_title(_wrap(title), fontsize="medium")
    fig.tight_layout()
    return fig


def plot_peak_scan(scans: Sequence[tuple[str, Mapping[str, Any]]], *, peak: float | None = None,
                   ax: Any = None) -> Any:
    """A model's predicted final loss against the peak LR, one curve per schedule.

    ``scans`` holds ``(label, scan)`` with ``scan["etas"]``, ``scan["losses"]`` (the
    scanned peak LRs and predicted final losses) and ``scan["eta"]``, ``scan["loss"]``
    (the minimum, marked); ``peak`` (the logged run's peak LR) is drawn as a dotted line.
    """
    ax = _axes(ax)
    for k, (label, scan) in enumerate(scans):
        color = f"C{k % 10}"
        ax.plot(scan["etas"], scan["losses"], "-", color=color, lw=1.2, label=label)
        if not scan.get("edge"):
            ax.plot([scan["eta"]], [scan["loss"]], "o", color=color)
    if peak is not None:
        ax.axvline(peak, color="0.5", ls=":", lw=1.0, label="run's peak LR")
    finite = np.concatenate([np.asarray(s["losses"], dtype=float) for _, s in scans] or [np.zeros(0)])
    finite = finite[np.isfinite(finite)]
    if finite.size:  # frame the minima: far from them the curves climb steeply
        low, high = float(finite.min()), float(finite.max())
        ax.set_ylim(low - 0.05 * (high - low or 1.0), min(high, low + 0.5) + 0.02)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("predicted final loss")
    ax.legend(fontsize="x-small")
    return ax


def report_figure(steps: ArrayLike, loss: ArrayLike, fitted: ArrayLike, lr: ArrayLike,
                  predictions: Sequence[Mapping[str, Any]], scans: Sequence[tuple[str, Mapping[str, Any]]],
                  bound_curves: Sequence[tuple[str, float, float]], *, fit_mask: ArrayLike | None = None,
                  burn_mask: ArrayLike | None = None, peak: float | None = None, level: float | None = None,
                  bound_T: int | None = None, title: str | None = None) -> Any:
    """The figure of ``cdfast report``: a run and its predicted curves under other
    schedules (top, as :func:`prediction_figure`), the predicted final loss against the
    peak LR (:func:`plot_peak_scan`, bottom left) and the bound of eq. (2.4) against the
    peak LR for the standard schedules (:func:`plot_peak_lr`, bottom right)."""
    plt = _pyplot()
    fig = plt.figure(figsize=(10, 9.5))
    grid = fig.add_gridspec(3, 2, height_ratios=(1, 2.2, 2))
    ax_lr = fig.add_subplot(grid[0, :])
    ax_l = fig.add_subplot(grid[1, :], sharex=ax_lr)
    ax_s = fig.add_subplot(grid[2, 0])
    ax_b = fig.add_subplot(grid[2, 1])
    steps = np.asarray(steps)
    loss = np.asarray(loss, dtype=float)
    fit = np.ones(steps.shape, bool) if fit_mask is None else np.asarray(fit_mask, bool)
    burn = np.zeros(steps.shape, bool) if burn_mask is None else np.asarray(burn_mask, bool)
    plot_schedule(lr, ax=ax_lr, color="0.3", lw=2.0, label="logged run")
    ax_l.plot(steps[~burn], loss[~burn], ".", ms=3.5, color="0.25", label="logged loss")
    if burn.any():
        ax_l.plot(steps[burn], loss[burn], "o", ms=3, mfc="none", color="0.6", label="burn-in")
    fitted = np.asarray(fitted, dtype=float)
    ok = np.isfinite(fitted) & fit
    ax_l.plot(steps[ok], fitted[ok], "-", color="0.25", lw=1.2, label="fitted model")
    for k, p in enumerate(predictions):
        color = f"C{k % 10}"
        plot_schedule(p["lr"], ax=ax_lr, color=color, ls="--", label=p["label"])
        plot_prediction(p["steps"], p["loss"], lo=p.get("lo"), hi=p.get("hi"), ax=ax_l, color=color, ls="--",
                        label=f"predicted: {p['label']}", level=level)
    shown = loss[~burn] if (~burn).any() else loss
    lo, hi = float(np.min(shown)), float(np.max(shown))
    span = (hi - lo) or 1.0
    ax_l.set_ylim(lo - 0.15 * span, hi + 0.1 * span)
    ax_lr.set_xlabel("")
    ax_lr.legend(fontsize="x-small", ncol=2)
    ax_l.legend(fontsize="x-small", ncol=2)
    plot_peak_scan(scans, peak=peak, ax=ax_s)
    ax_s.set_title("the run's model: final loss vs peak LR", fontsize="small")
    plot_peak_lr(bound_curves, ax=ax_b)
    ax_b.set_title("eq. (2.4), D = G = 1" + (f", T = {bound_T}" if bound_T else ""), fontsize="small")
    if title:
        ax_lr.set_title(_wrap(title, 90), fontsize="medium")
    fig.tight_layout()
    return fig


def exam_figure(T: ArrayLike, scaled: ArrayLike, *, qualified: bool | None = None, limit: float | None = None,
                title: str | None = None) -> Any:
    """The qualifying exam (:func:`plot_exam`) as a figure."""
    ax = plot_exam(T, scaled, qualified=qualified, limit=limit, title=title)
    ax.figure.tight_layout()
    return ax.figure


def peak_lr_figure(curves: Sequence[tuple[str, float, float]], *, D: float = 1.0, G: float = 1.0,
                   L_star: float = 0.0, title: str | None = None) -> Any:
    """Bound against peak LR (:func:`plot_peak_lr`) as a figure."""
    ax = plot_peak_lr(curves, D=D, G=G, L_star=L_star)
    if title:
        ax.set_title(_wrap(title), fontsize="medium")
    ax.figure.tight_layout()
    return ax.figure


def plan_figure(schedules: Sequence[Mapping[str, Any]], *, logged_steps: ArrayLike | None = None,
                logged_loss: ArrayLike | None = None, run_lr: ArrayLike | None = None, level: float | None = None,
                title: str | None = None) -> Any:
    """The figure of ``cdfast plan``: the planned schedules (top), their predicted loss
    curves (middle, with the logged losses of the fitted run when given) and the end of
    training enlarged, with each predicted final loss and its interval (bottom).

    ``schedules`` holds dicts with ``label``, ``lr``, ``steps``, ``loss`` (the predicted
    curve) and optionally ``final``, ``lo``, ``hi`` (the predicted loss at T and its
    interval at ``level``).  ``run_lr`` (the logged run's LRs) is drawn in grey.
    """
    plt = _pyplot()
    fig, (ax_lr, ax_l, ax_z) = plt.subplots(3, 1, figsize=(7.5, 9), height_ratios=(1.2, 2, 1.8))
    if run_lr is not None:
        plot_schedule(run_lr, ax=ax_lr, color="0.6", ls=":", label="logged run")
    if logged_steps is not None and logged_loss is not None:
        ax_l.plot(np.asarray(logged_steps), np.asarray(logged_loss, dtype=float), ".", ms=3, color="0.45",
                  label="logged loss")
    T = max(int(np.asarray(p["lr"]).shape[0]) for p in schedules) if schedules else 1
    start = 0.6 * T
    lows, highs = [], []
    for k, p in enumerate(schedules):
        color = f"C{k % 10}"
        optimal = p["label"].startswith("optimal")
        style = {"color": color, "lw": 2.0 if optimal else 1.2, "ls": "-" if optimal else "--"}
        plot_schedule(p["lr"], ax=ax_lr, label=p["label"], **style)
        steps, y = np.asarray(p["steps"]), np.asarray(p["loss"], dtype=float)
        ax_l.plot(steps, y, label=p["label"], **style)
        tail = steps >= start
        ax_z.plot(steps[tail], y[tail], label=p["label"], **style)
        if p.get("final") is not None:  # side by side just after T, so that the intervals do not overlap
            final = float(p["final"])
            x = steps[-1] + (0.015 + 0.012 * k) * (steps[-1] - start)
            lo, hi = p.get("lo"), p.get("hi")
            if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
                ax_z.errorbar([x], [final], yerr=[[final - float(lo)], [float(hi) - final]], fmt="o",
                              color=color, ms=4, capsize=3)
                lows.append(float(lo))
                highs.append(float(hi))
            else:
                ax_z.plot([x], [final], "o", color=color, ms=4)
        finite = y[tail & np.isfinite(y)]
        if finite.size:
            lows.append(float(finite.min()))
            highs.append(float(finite.max()))
    if lows:
        lo, hi = min(lows), max(highs)
        span = (hi - lo) or 1.0
        ax_z.set_ylim(lo - 0.05 * span, hi + 0.05 * span)
    shown = [np.asarray(p["loss"], dtype=float)[np.asarray(p["steps"]) >= 0.05 * T] for p in schedules]
    if logged_steps is not None and logged_loss is not None:
        inside = (np.asarray(logged_steps) >= 0.05 * T) & (np.asarray(logged_steps) <= T)
        shown.append(np.asarray(logged_loss, dtype=float)[inside])
    finite = np.concatenate(shown or [np.zeros(0)])
    finite = finite[np.isfinite(finite)]
    if finite.size:  # the first steps' losses are far above the rest: frame the part that matters
        lo, hi = float(finite.min()), float(finite.max())
        span = (hi - lo) or 1.0
        ax_l.set_ylim(lo - 0.05 * span, hi + 0.1 * span)
    for ax in (ax_lr, ax_l):
        ax.set_xlim(0, T * 1.01)
    ax_lr.set_xlabel("")
    ax_lr.legend(fontsize="x-small", ncol=2)
    ax_l.set_ylabel("predicted loss")
    ax_l.set_xlabel("")
    ax_l.legend(fontsize="x-small", ncol=2)
    ax_z.set_xlabel("step")
    ax_z.set_ylabel("predicted loss")
    ax_z.set_title("the last 40% of training" + (f"; predicted final loss with its {100 * level:g}% interval"
                                                  if level is not None else ""), fontsize="small")
    if title:
        ax_lr.set_title(_wrap(title, 80), fontsize="medium")
    fig.tight_layout()
    return fig


def plot_forecast(forecast: Any, *, steps: ArrayLike | None = None, loss: ArrayLike | None = None, ax: Any = None,
                  color: str | None = None, label: str | None = None) -> Any:
    """A :class:`cdfast.Forecast`: the losses logged up to its step (when given), the
    forecast curve from there to ``T`` with its band, and the final loss with its interval.
    A declined forecast draws the logged losses and its reason as a note."""
    ax = _axes(ax)
    if steps is not None and loss is not None:
        s, y = np.asarray(steps), np.asarray(loss, dtype=float)
        seen = s <= forecast.step
        ax.plot(s[seen], y[seen], ".", ms=3, color=color or "0.35", label="logged loss")
    if not forecast.ok:
        ax.annotate(_wrap(f"no forecast at step {forecast.step}: {forecast.reason}", 60), (0.02, 0.02),
                    xycoords="axes fraction", fontsize="x-small", va="bottom")
        return ax
    name = label or f"forecast at step {forecast.step} ({100 * forecast.fraction:.0f}%)"
    line, = ax.plot(forecast.steps, forecast.curve, lw=1.5, color=color, label=name)
    ax.fill_between(forecast.steps, forecast.curve_low, forecast.curve_high, color=line.get_color(), alpha=0.15, lw=0)
    ax.errorbar([forecast.T], [forecast.loss], yerr=[[forecast.loss - forecast.low], [forecast.high - forecast.loss]],
                fmt="o", ms=4, capsize=3, color=line.get_color())
    ax.axvline(forecast.step, color=line.get_color(), lw=0.6, ls=":")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    return ax


def forecast_figure(forecasts: Sequence[Any], steps: ArrayLike, loss: ArrayLike, *, title: str | None = None) -> Any:
    """How a forecast improves as the run goes: every logged loss, and each forecast (as
    of its own step) with its band and final interval, in one panel; the y-range frames the
    losses after the early transient."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    s, y = np.asarray(steps), np.asarray(loss, dtype=float)
    ax.plot(s, y, ".", ms=2.5, color="0.6", label="logged loss (whole run)")
    shown = [y[s >= 0.1 * s.max()]]
    for k, f in enumerate(forecasts):
        plot_forecast(f, ax=ax, color=f"C{k % 10}")
        if f.ok:
            shown += [f.curve_low, f.curve_high]
    finite = np.concatenate([np.asarray(v, dtype=float) for v in shown])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        span = (hi - lo) or 1.0
        ax.set_ylim(lo - 0.05 * span, hi + 0.05 * span)
    ax.legend(fontsize="x-small")
    if title:
        ax.set_title(_wrap(title, 80), fontsize="medium")
    fig.tight_layout()
    return fig
