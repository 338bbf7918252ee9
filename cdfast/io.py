"""Loading training logs: plain CSV/NumPy columns and Weights & Biases JSON exports.

Indexing (MATH.md section 1): a loss logged at iteration ``t`` is the loss of ``w_t``,
the weights after ``t`` updates, so it depends on ``eta_1 .. eta_t`` only.  The fitting
code evaluates the bound at exactly those 1-based steps (``at=steps``); a loss logged at
``t = 0`` (before training) has no bound and is dropped by :func:`curve_from_columns`
and :meth:`WandbRun.curve`.

W&B runs of the llm-baselines trainer (``../shared/data/llm124m``): the trainer steps its
scheduler after every update, so the ``train_lr`` logged at iteration ``t`` is the LR of
the *next* update, ``eta_{t+1} = lr[t]``.  :func:`lr_from_config` rebuilds
``lr[0 .. T-1]`` from the config; the LR logged at ``t = T`` (0 for WSD runs) is never used
by an update, so the rebuilt sequence ends at a positive LR and eq. (2.4) is finite at
every logged step.  :meth:`WandbRun.lr_mismatch` compares the rebuilt sequence with the
logged ``train_lr``.
"""

from __future__ import annotations

import json
import math
import pathlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import schedules
from ._validate import as_vector

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

__all__ = ["WandbRun", "read_wandb_json", "lr_from_config", "read_csv", "curve_from_columns"]


# ---------------------------------------------------------------------------
# Plain columns


def read_csv(path: str | pathlib.Path, delimiter: str = ",") -> dict[str, FloatArray]:
    """Read a CSV file with a header row into ``{column: float64 array}``.

    Empty cells become NaN.  Use :func:`curve_from_columns` on the ``step, lr, loss``
    columns to get a fit-ready curve.
    """
    data = np.genfromtxt(path, delimiter=delimiter, names=True, dtype=np.float64, encoding="utf-8")
    if data.dtype.names is None:
        raise ValueError(f"{path}: no header row found; the first line must name the columns")
    return {name: np.atleast_1d(np.asarray(data[name], dtype=np.float64)) for name in data.dtype.names}


def curve_from_columns(step: ArrayLike, lr: ArrayLike, loss: ArrayLike) -> tuple[FloatArray, IntArray, FloatArray]:
    """Turn per-step log columns into ``(lr_sequence, steps, loss)`` for fitting.

    Row ``i`` says: update number ``step[i]`` (1-based) used learning rate ``lr[i]``
    (= eta_{step}), and the weights after it had loss ``loss[i]`` (NaN = not logged).
    Every step ``1 .. T`` must appear with a finite LR; rows may come in any order but
    not twice.  Rows with ``step == 0`` (the initial loss) and NaN losses are dropped.

    Returns
    -------
    lr_sequence : ndarray, shape (T,)   eta_1 .. eta_T
    steps : ndarray of int              1-based steps with a logged loss, increasing
    loss : ndarray                      the losses at ``steps``
    """
    s = as_vector(step, "step")
    x = as_vector(lr, "lr")
    y = as_vector(loss, "loss")
    if not (s.shape == x.shape == y.shape):
        raise ValueError(f"step, lr and loss must have equal lengths, got {s.shape[0]}, {x.shape[0]}, {y.shape[0]}")
    if np.any(s != np.round(s)) or np.any(s < 0):
        i = int(np.argmax((s != np.round(s)) | (s < 0)))
        raise ValueError(f"step[{i}] = {s[i]!r} is not a non-negative integer iteration")
    keep = s > 0
    s, x, y = s[keep].astype(np.int64), x[keep], y[keep]
    order = np.argsort(s, kind="stable")
    s, x, y = s[order], x[order], y[order]
    T = int(s[-1])
    if s.shape[0] != T or np.any(s != np.arange(1, T + 1)):
        dup = np.flatnonzero(np.diff(s) == 0)
        if dup.size:
            raise ValueError(f"step {s[dup[0]]} appears twice; keep one row per step")
        missing = np.setdiff1d(np.arange(1, T + 1), s)
        raise ValueError(
            f"the LR of step {missing[0]} is missing ({missing.size} of 1..{T} absent); the bound needs "
            "every learning rate eta_1..eta_T: rebuild the sequence from the schedule instead"
        )
    if not np.all(np.isfinite(x)):
        i = int(np.argmax(~np.isfinite(x)))
        raise ValueError(f"lr at step {s[i]} is {x[i]}; every step needs a finite learning rate")
    logged = np.isfinite(y)
    return x, s[logged], y[logged]


# ---------------------------------------------------------------------------
# Weights & Biases export


def lr_from_config(config: dict[str, Any]) -> FloatArray:
    """Rebuild ``eta_1 .. eta_T`` (``lr[t] = eta_{t+1}``) from an llm-baselines run config.

    Keys: ``lr`` (peak), ``iterations`` (T), ``warmup_steps`` (W), ``scheduler``
    (``"cos"``, ``"wsd"`` or ``"none"``), ``cos_final_lr`` (absolute floor of ``cos``),
    ``wsd_fract_decay`` and ``decay_type`` (``"linear"`` or ``"sqrt"``).

    * ``wsd``: linear warmup from 1% of the peak, ``0.01 + 0.99 t / W`` for ``t < W``
      (:func:`cdfast.schedules.with_warmup` with ``init=0.01``), then
      :func:`cdfast.schedules.wsd` (``decay_frac = wsd_fract_decay``), or
      :func:`cdfast.schedules.constant` when ``wsd_fract_decay == 0``.
    * ``cos``: PyTorch ``OneCycleLR`` (``div_factor=100``), i.e.
      :func:`cdfast.schedules.cosine_onecycle` with ``init=0.01`` and
      ``final = cos_final_lr / lr``.
    """
    try:
        peak = float(config["lr"])
        T = int(config["iterations"])
        W = int(config.get("warmup_steps", 0))
        kind = str(config.get("scheduler", "none"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"config lacks a usable lr/iterations entry ({exc!r}); cannot rebuild the LR sequence") from None
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError(f"config['lr'] = {peak!r} must be a positive peak learning rate")
    if kind == "cos":
        final = float(config.get("cos_final_lr", 0.0)) / peak
        shape = schedules.cosine_onecycle(T, W, init=0.01, final=max(final, 0.0))
    elif kind in ("wsd", "none"):
        frac = float(config.get("wsd_fract_decay", 0.0)) if kind == "wsd" else 0.0
        decay = str(config.get("decay_type", "linear"))
        base = schedules.wsd(T, decay_frac=frac, decay=decay) if frac > 0 else schedules.constant(T)
        shape = schedules.with_warmup(base, W, init=0.01) if W else base
    else:
        raise ValueError(f"config['scheduler'] = {kind!r} is not supported; expected 'cos', 'wsd' or 'none'")
    return peak * shape


def _dedupe(section: dict[str, list]) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
    """Keep the last value per iteration (resumed runs log some twice), sorted by iteration."""
    it = np.asarray(section.get("iter", []), dtype=np.float64)
    aligned, other = {}, {}
    if it.size == 0:
        return {"iter": it}, {k: np.asarray(v, dtype=np.float64) for k, v in section.items() if k != "iter"}
    order = np.argsort(it, kind="stable")
    last = np.r_[it[order][1:] != it[order][:-1], True]  # the last logged copy of each iteration
    idx = order[last]
    aligned["iter"] = it[idx]
    for key, values in section.items():
        if key == "iter":
            continue
        try:
            arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        except (TypeError, ValueError):
            continue  # non-numeric column (e.g. text)
        if arr.shape == it.shape:
            aligned[key] = arr[idx]
        else:
            other[key] = arr
    return aligned, other


@dataclass(frozen=True)
class WandbRun:
    """One run from a W&B JSON export: ``config``, de-duplicated ``history``, ``summary``.

    ``history[section][column]`` holds arrays sorted by ``history[section]["iter"]`` with
    one entry per iteration (the last one logged).  Columns whose length does not match
    their section's ``iter`` cannot be aligned to iterations and are kept, raw, in
    ``unaligned[section][column]``.
    """

    name: str
    config: dict[str, Any]
    history: dict[str, dict[str, FloatArray]]
    summary: dict[str, Any] = field(default_factory=dict)
    unaligned: dict[str, dict[str, FloatArray]] = field(default_factory=dict)

    @property
    def T(self) -> int:
        return int(self.config["iterations"])

    def series(self, section: str, column: str) -> tuple[IntArray, FloatArray]:
        """``(iterations, values)`` of one logged column with NaN entries dropped."""
        try:
            sec = self.history[section]
            values = sec[column]
        except KeyError:
            have = {s: sorted(c) for s, c in self.history.items()}
            raise KeyError(f"run {self.name!r} has no history[{section!r}][{column!r}]; available: {have}") from None
        ok = np.isfinite(values)
        return sec["iter"][ok].astype(np.int64), values[ok]

    def curve(self, section: str = "val", column: str = "val_loss") -> tuple[IntArray, FloatArray]:
        """Fit-ready ``(steps, loss)``: NaN dropped, only steps ``1 .. T`` (no initial loss)."""
        steps, loss = self.series(section, column)
        keep = (steps >= 1) & (steps <= self.T)
        return steps[keep], loss[keep]

    @property
    def family(self) -> str:
        """The schedule family without its peak LR and horizon, e.g. ``"cos"``,
        ``"wsd(0.8, linear)"``, ``"constant"`` (WSD with no decay): runs of one family
        differ only in ``lr`` and ``iterations`` (a cosine floor under 1% of the peak
        counts as decaying to zero)."""
        c = self.config
        kind = str(c.get("scheduler", "none"))
        if kind == "cos":  # a floor below 1% of the peak counts as decaying to ~0
            final = float(c.get("cos_final_lr", 0.0)) / float(c["lr"])
            return "cos" if final < 0.01 else f"cos(final={final:g} peak)"
        frac = float(c.get("wsd_fract_decay", 0.0)) if kind == "wsd" else 0.0
        return f"wsd({frac:g}, {c.get('decay_type', 'linear')})" if frac > 0 else "constant"

    def diverged(self, rise: float = 0.2, section: str = "val", column: str = "val_loss") -> bool:
        """Whether training failed: the last logged loss exceeds the best one by more than
        ``rise`` (relative).  A run that trains ends near its minimum (within evaluation
        noise, well under 20%); a diverged run no longer follows any bound of eq. (2.4)
        and should be left out of fits and of prediction scores."""
        _, loss = self.curve(section, column)
        if loss.size == 0:
            raise ValueError(f"run {self.name!r} logs no finite {section}/{column}; cannot tell whether it diverged")
        return bool(loss[-1] > (1.0 + rise) * loss.min())

    def lr(self) -> FloatArray:
        """``eta_1 .. eta_T`` rebuilt from the config (see :func:`lr_from_config`)."""
        return lr_from_config(self.config)

    def lr_mismatch(self) -> float:
        """Largest ``|rebuilt - logged| / peak`` over the logged ``train_lr`` at ``t < T``.

        The LR logged at iteration ``t`` is ``eta_{t+1} = lr[t]``; ``t = T`` is skipped
        (no update uses it).
        """
        it, logged = self.series("train", "train_lr")
        keep = (it >= 0) & (it < self.T)
        if not keep.any():
            raise ValueError(f"run {self.name!r} logs no train_lr below iteration T = {self.T}")
        lr = self.lr()
        return float(np.max(np.abs(lr[it[keep]] - logged[keep])) / float(self.config["lr"]))


def read_wandb_json(path: str | pathlib.Path) -> WandbRun:
    """Read a W&B run export (``{"config", "history", "summary", "name"}``).

    History sections (``val``, ``train``, ...) are de-duplicated: a resumed run logs some
    iterations twice, and the last value logged for an iteration wins; rows are sorted
    by iteration.  NaN values stay in ``history`` (columns stay aligned) and are dropped
    by :meth:`WandbRun.series` / :meth:`WandbRun.curve`.
    """
    path = pathlib.Path(path)
    with path.open(encoding="utf-8") as fh:
        raw = json.load(fh)
    if not isinstance(raw, dict) or "config" not in raw or "history" not in raw:
        raise ValueError(f"{path}: expected a JSON object with 'config' and 'history' (a W&B run export)")
    history, unaligned = {}, {}
    for name, section in raw["history"].items():
        if isinstance(section, dict) and "iter" in section:
            history[name], extra = _dedupe(section)
            if extra:
                unaligned[name] = extra
    return WandbRun(
        name=str(raw.get("name", path.stem)),
        config=dict(raw["config"]),
        history=history,
        summary=dict(raw.get("summary") or {}),
        unaligned=unaligned,
    )
