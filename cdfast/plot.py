"""PNG figures for the command line: schedules, bound curves, fits and the exam.

matplotlib is optional (``pip install "cdfast[plot]"``); it is imported on first use,
with the non-interactive Agg backend, so importing cdfast never needs it.  Every
``*_figure`` function returns a matplotlib Figure; :func:`save_png` writes one
atomically (a temporary file in the target directory, then ``os.replace``), so a
failed write never leaves a partial PNG behind.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any, Sequence

import numpy as np

from . import _files
from numpy.typing import ArrayLike

_INSTALL = 'plotting needs matplotlib; install it with: pip install "cdfast[plot]"'


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError(_INSTALL) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _wrap(title: str, width: int = 64) -> str:
    """Long titles (W&B run names run to 150 characters) wrap instead of overflowing."""
    return textwrap.fill(title, width, break_long_words=True, break_on_hyphens=False)


def save_png(fig: Any, path: str | os.PathLike) -> None:
    """Write ``fig`` to ``path`` as PNG atomically and close it."""
    plt = _pyplot()
    try:
        _files.atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"), "wb")
    finally:
        plt.close(fig)


def curve_figure(steps: ArrayLike, lr: ArrayLike, bound: ArrayLike, *, lr_steps: ArrayLike | None = None,
                 title: str | None = None) -> Any:
    """LR schedule (top) over the last-iterate bound curve of eq. (2.4) (bottom).

    ``lr`` is plotted against ``lr_steps`` (default 1..len(lr)); ``bound`` against
    ``steps`` (1-based iterations).
    """
    plt = _pyplot()
    lr = np.asarray(lr, dtype=float)
    lr_x = np.arange(1, lr.shape[0] + 1) if lr_steps is None else np.asarray(lr_steps)
    fig, (ax_lr, ax_b) = plt.subplots(2, 1, sharex=True, figsize=(7, 5.5), height_ratios=(1, 2))
    ax_lr.plot(lr_x, lr, color="tab:orange", lw=1.2)
    ax_lr.set_ylabel("learning rate")
    ax_b.plot(np.asarray(steps), np.asarray(bound, dtype=float), color="tab:blue", lw=1.5,
              label="last-iterate bound, eq. (2.4)")
    ax_b.set_yscale("log")
    ax_b.set_xlabel("step")
    ax_b.set_ylabel("bound")
    ax_b.legend()
    if title:
        ax_lr.set_title(_wrap(title), fontsize="medium")
    fig.tight_layout()
    return fig


def fit_figure(steps: ArrayLike, loss: ArrayLike, fitted: ArrayLike, lr: ArrayLike, *,
               fit_mask: ArrayLike | None = None, pred_steps: ArrayLike | None = None,
               predicted: ArrayLike | None = None, pred_lr: ArrayLike | None = None,
               title: str | None = None) -> Any:
    """Logged loss vs the fitted bound curve (Generalization 1), residuals, and the LR.

    ``fit_mask`` marks the points used for fitting (the rest are held out);
    ``predicted`` is the fitted bound under another schedule ``pred_lr``.
    """
    plt = _pyplot()
    steps = np.asarray(steps)
    loss = np.asarray(loss, dtype=float)
    fitted = np.asarray(fitted, dtype=float)
    mask = np.ones(steps.shape, bool) if fit_mask is None else np.asarray(fit_mask, bool)
    fig, (ax_lr, ax_l, ax_r) = plt.subplots(3, 1, sharex=True, figsize=(7, 7.5), height_ratios=(1, 2.5, 1))
    lr = np.asarray(lr, dtype=float)
    ax_lr.plot(np.arange(1, lr.shape[0] + 1), lr, color="tab:orange", lw=1.2, label="logged run")
    if pred_lr is not None:
        pl = np.asarray(pred_lr, dtype=float)
        ax_lr.plot(np.arange(1, pl.shape[0] + 1), pl, color="tab:green", lw=1.2, ls="--", label="prediction")
        ax_lr.legend(fontsize="small")
    ax_lr.set_ylabel("learning rate")
    ax_l.plot(steps[mask], loss[mask], ".", color="0.3", ms=3, label="loss (fitted)")
    if (~mask).any():
        ax_l.plot(steps[~mask], loss[~mask], ".", color="tab:red", ms=3, label="loss (not fitted)")
    ax_l.plot(steps, fitted, color="tab:blue", lw=1.5, label="fitted bound")
    if predicted is not None and pred_steps is not None:
        ax_l.plot(np.asarray(pred_steps), np.asarray(predicted, dtype=float), color="tab:green", lw=1.5,
                  ls="--", label="predicted, other schedule")
    # early steps of the bound can be far above the data: frame the data, not the model
    span = float(loss.max() - loss.min()) or 1.0
    ax_l.set_ylim(float(loss.min()) - 0.1 * span, float(loss.max()) + 0.1 * span)
    ax_l.set_ylabel("loss")
    ax_l.legend(fontsize="small")
    ax_r.axhline(0.0, color="0.6", lw=0.8)
    resid = loss - fitted
    ax_r.plot(steps, resid, ".", color="tab:purple", ms=3)
    finite = resid[np.isfinite(resid)]
    if finite.size:
        lim = 1.2 * float(np.quantile(np.abs(finite), 0.95)) or 1.0
        ax_r.set_ylim(-lim, lim)
    ax_r.set_ylabel("residual")
    ax_r.set_xlabel("step")
    if title:
        ax_lr.set_title(_wrap(title), fontsize="medium")
    fig.tight_layout()
    return fig


def exam_figure(T: ArrayLike, scaled: ArrayLike, *, qualified: bool | None = None, title: str | None = None) -> Any:
    """The qualifying exam: sqrt(T) * bound at eta_peak = 1/sqrt(T), against T.

    A qualified schedule (Condition 2.5) levels off; an unqualified one keeps growing
    (like ln T for constant and inverse-sqrt schedules).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    color = {True: "tab:green", False: "tab:red", None: "tab:blue"}[qualified]
    ax.plot(np.asarray(T), np.asarray(scaled, dtype=float), "o-", color=color)
    ax.set_xscale("log")
    ax.set_xlabel("horizon T")
    ax.set_ylabel(r"$\sqrt{T}\,\times$ bound at $\eta_{peak}=1/\sqrt{T}$")
    verdict = {True: "qualified", False: "not qualified", None: ""}[qualified]
    ax.set_title(_wrap(" - ".join(x for x in (title, verdict) if x)), fontsize="medium")
    fig.tight_layout()
    return fig


def peak_lr_figure(curves: Sequence[tuple[str, float, float]], *, D: float = 1.0, G: float = 1.0,
                   L_star: float = 0.0, title: str | None = None) -> Any:
    """Last-iterate bound against peak LR for several schedules, optimum marked.

    ``curves`` holds ``(label, a, b)`` with ``a, b`` the coefficients of
    :func:`cdfast.bound_terms` for the unit-peak shape, so the bound at peak ``eta``
    is ``L_* + D^2 a / eta + G^2 b eta`` (eq. 2.4; minimum at ``(D/G) sqrt(a/b)``).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
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
    if title:
        ax.set_title(_wrap(title), fontsize="medium")
    fig.tight_layout()
    return fig


__all__ = ["save_png", "curve_figure", "fit_figure", "exam_figure", "peak_lr_figure"]
