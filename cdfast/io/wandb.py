"""Weights & Biases logs: run exports, ``run.history()`` dumps and the web page's CSV.

Three layouts:

* **Run export** (``format="wandb-json"``; e.g. the runs of fabian-sp/lr-scheduling and
  ``cdfast.data.SAMPLE_RUN``): a JSON object
  ``{"name", "config", "summary", "history": {section: {"iter": [...], column: [...]}}}``
  written for the llm-baselines trainer (epfml/schedules-and-scaling).  Read by
  :func:`read_wandb_json` into a :class:`WandbRun`.
* **History rows** (``format="wandb-history"``): ``run.history()`` dumped as a list of row
  dicts, as JSON Lines, or as ``{"history": [rows], "config": {...}}``.  Rows are sparse
  (each ``wandb.log`` call fills its own keys).  The step column is the trainer's step
  metric when present (``train/global_step`` for the Hugging Face Trainer,
  ``trainer/global_step`` for Lightning, ``iter`` for llm-baselines), else ``_step``.
* **Web CSV** (``format="wandb-csv"``): a chart's "Export CSV": column ``Step`` and
  ``"<run> - <metric>"`` (plus ``__MIN``/``__MAX`` envelopes, which are ignored).

Indexing of the llm-baselines trainer (its ``train`` loop: update, ``scheduler.step()``,
``iter += 1``, log; evaluation at the top of the loop, before the next update), verified
on the 178 runs of fabian-sp/lr-scheduling (folder ``data/``):

* ``train_lr`` at iteration ``t`` is the scheduler's value after ``t`` steps, the LR of
  the *next* update: ``eta_{t+1} = lr[t]``.  The value at ``t = T`` is used by no update.
* ``val_loss`` at ``t`` is measured on ``w_t``; ``train_loss`` at ``t`` is the loss of the
  batch of update ``t``, computed on ``w_{t-1}``; ``grad_norm`` at ``t`` is ``G_t``.
* A resumed run logs some iterations twice: the last value wins.  A run branched from
  another's checkpoint (``resume_from = .../<parent>/ckpts/<N>``) logs from ``N`` on and
  used the parent's LR before ``N``; ``<parent>.json`` next to the file is read for it
  when present.

Other trainers' W&B logs follow their trainer's convention (see :mod:`cdfast.io`).
"""

from __future__ import annotations

import json
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from numpy.typing import NDArray

from .. import _files
from . import _lr
from ._log import GRAD_NAMES, STEP_NAMES, RawLog, find_name, lr_column

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

__all__ = ["WandbRun", "read_wandb_json", "lr_from_config"]

lr_from_config = _lr.lr_from_config


# ---------------------------------------------------------------------------
# llm-baselines run export


def _dedupe(section: dict[str, list]) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
    """Keep the last value per iteration (resumed runs log some twice), sorted by iteration."""
    it = np.asarray(section.get("iter", []), dtype=np.float64)
    aligned, other = {}, {}
    if it.size == 0:
        return {"iter": it}, {k: _floats(v) for k, v in section.items() if k != "iter" and _floats(v) is not None}
    order = np.argsort(it, kind="stable")
    last = np.r_[it[order][1:] != it[order][:-1], True]  # the last logged copy of each iteration
    idx = order[last]
    aligned["iter"] = it[idx]
    for key, values in section.items():
        if key == "iter":
            continue
        arr = _floats(values)
        if arr is None:
            continue  # non-numeric column (e.g. text)
        if arr.shape == it.shape:
            aligned[key] = arr[idx]
        else:
            other[key] = arr
    return aligned, other


def _floats(values: Any) -> FloatArray | None:
    try:
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class WandbRun:
    """One run from a W&B JSON export: ``config``, de-duplicated ``history``, ``summary``.

    ``history[section][column]`` holds arrays sorted by ``history[section]["iter"]`` with
    one entry per iteration (the last one logged).  Columns whose length does not match
    their section's ``iter`` cannot be aligned to iterations and are kept, raw, in
    ``unaligned[section][column]``.  ``path`` is the file it was read from (used to find
    the parent run of a branched run).
    """

    name: str
    config: dict[str, Any]
    history: dict[str, dict[str, FloatArray]]
    summary: dict[str, Any] = field(default_factory=dict)
    unaligned: dict[str, dict[str, FloatArray]] = field(default_factory=dict)
    path: pathlib.Path | None = None

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
        counts as decaying to zero; a floor missing from the config is read off the
        resolved LR sequence)."""
        c = self.config
        kind = str(c.get("scheduler", "none"))
        if kind == "cos":  # a floor below 1% of the peak counts as decaying to ~0
            floor = _lr._floor_given(c)
            final = (floor if floor is not None else float(self.lr()[-1])) / float(c["lr"])
            return "cos" if final < 0.01 else f"cos(final={final:.3g} peak)"
        frac = float(c.get("wsd_fract_decay") or 0.0) if kind == "wsd" else 0.0
        if kind not in ("wsd", "none"):
            return kind
        return f"wsd({frac:g}, {c.get('decay_type') or 'linear'})" if frac > 0 else "constant"

    def diverged(self, rise: float = 0.2, section: str = "val", column: str = "val_loss") -> bool:
        """Whether training failed: the last logged loss exceeds the best one by more than
        ``rise`` (relative).  A run that trains ends near its minimum (within evaluation
        noise, well under 20%); a diverged run no longer follows any bound of eq. (2.4)
        and should be left out of fits and of prediction scores."""
        _, loss = self.curve(section, column)
        if loss.size == 0:
            raise ValueError(f"run {self.name!r} logs no finite {section}/{column}; cannot tell whether it diverged")
        return bool(loss[-1] > (1.0 + rise) * loss.min())

    @property
    def branch_step(self) -> int:
        """The step N this run was branched at from another run's checkpoint (0 if none)."""
        return _branch_step(self.config, self.history)

    def logged_lr(self) -> tuple[IntArray, FloatArray]:
        """``(t, train_lr)``: the LR logged at iteration ``t`` is ``lr[t] = eta_{t+1}``."""
        if "train" in self.history and "train_lr" in self.history["train"]:
            return self.series("train", "train_lr")
        return np.zeros(0, dtype=np.int64), np.zeros(0)

    def lr(self, *, rtol: float = _lr.LR_RTOL) -> FloatArray:
        """``eta_1 .. eta_T`` as the run used them (see :meth:`lr_with_source`)."""
        return self.lr_with_source(rtol=rtol)[0]

    def lr_with_source(self, *, rtol: float = _lr.LR_RTOL) -> tuple[FloatArray, str, dict[str, Any]]:
        """``(lr, source, details)``: the config's schedule (:func:`lr_from_config`, a
        missing cosine floor inferred from the logged LR) checked against every logged
        ``train_lr``; or, for schedulers without a known formula, the logged LR filled
        linearly.  Raises ValueError naming the run, step and values when the config
        contradicts the log."""
        idx, values = self.logged_lr()
        N = self.branch_step
        parent_lr = parent_name = None
        if N:
            parent = self.parent_path()
            if parent is not None:
                parent_lr = read_wandb_json(parent).lr(rtol=rtol)
                parent_name = parent.name
        return _lr.resolve_from_config(self.config, idx, values, name=self.name, branch_step=N,
                                       parent_lr=parent_lr, parent_name=parent_name, rtol=rtol)

    def parent_path(self) -> pathlib.Path | None:
        """``<parent>.json`` next to this run's file, for ``resume_from = .../<parent>/ckpts/<N>``."""
        resume = self.config.get("resume_from")
        if not resume or self.path is None:
            return None
        parts = pathlib.PurePosixPath(str(resume)).parts
        if "ckpts" not in parts:
            return None
        k = len(parts) - 1 - parts[::-1].index("ckpts")
        if k == 0:
            return None
        candidate = self.path.parent / f"{parts[k - 1]}.json"
        return candidate if candidate.is_file() and candidate.resolve() != self.path.resolve() else None

    def lr_mismatch(self) -> float:
        """Largest ``|resolved - logged| / peak`` over the logged ``train_lr`` at ``t < T``.

        The LR logged at iteration ``t`` is ``eta_{t+1} = lr[t]``; ``t = T`` is skipped
        (no update uses it).
        """
        it, logged = self.series("train", "train_lr")
        keep = (it >= 0) & (it < self.T)
        if not keep.any():
            raise ValueError(f"run {self.name!r} logs no train_lr below iteration T = {self.T}")
        lr = self.lr()
        return float(np.max(np.abs(lr[it[keep]] - logged[keep])) / float(self.config["lr"]))

    def _raw(self) -> RawLog:
        series: dict[str, tuple[FloatArray, FloatArray]] = {}
        for section, cols in self.history.items():
            for col, values in cols.items():
                if col == "iter":
                    continue
                key = col if col not in series else f"{section}/{col}"
                series[key] = (cols["iter"], values)
        meta = {"summary": self.summary, "path": str(self.path) if self.path else None,
                "unaligned": {s: sorted(c) for s, c in self.unaligned.items()}}
        return RawLog(format="wandb-json", name=self.name, series=series, trainer="llm-baselines",
                      config=self.config, meta=meta, T=self.T,
                      lr_resolver=lambda i, v: self.lr_with_source(),
                      lr_name="train_lr" if "train_lr" in series else None,
                      grad_name="grad_norm" if "grad_norm" in series else None)


def _branch_step(config: dict[str, Any], history: dict[str, dict[str, FloatArray]]) -> int:
    resume = config.get("resume_from")
    if not resume:
        return 0
    m = re.search(r"ckpts/(\d+)/?$", str(resume))
    if m:
        return int(m.group(1))
    starts = [float(np.min(sec["iter"])) for sec in history.values() if sec.get("iter") is not None and sec["iter"].size]
    return int(min(starts)) if starts else 0


def read_wandb_json(path: str | pathlib.Path) -> WandbRun:
    """Read a W&B run export (``{"config", "history", "summary", "name"}``).

    History sections (``val``, ``train``, ...) are de-duplicated: a resumed run logs some
    iterations twice, and the last value logged for an iteration wins; rows are sorted
    by iteration.  NaN values stay in ``history`` (columns stay aligned) and are dropped
    by :meth:`WandbRun.series` / :meth:`WandbRun.curve`.
    """
    path = pathlib.Path(path)
    _files.check_input(path, "W&B export")
    try:
        with path.open(encoding="utf-8") as fh:
            raw = json.load(fh)
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (arrays or objects nested too deeply)") from None
    return _run_from_json(raw, path)


def _run_from_json(raw: Any, path: pathlib.Path) -> WandbRun:
    if not isinstance(raw, dict) or "config" not in raw or not isinstance(raw.get("history"), dict):
        raise ValueError(f"{path}: expected a JSON object with 'config' and 'history' (a W&B run export)")
    history, unaligned = {}, {}
    for name, section in raw["history"].items():
        if isinstance(section, dict) and "iter" in section:
            history[name], extra = _dedupe(section)
            if extra:
                unaligned[name] = extra
    return WandbRun(
        name=str(raw.get("name") or path.stem),
        config=dict(raw["config"] or {}),
        history=history,
        summary=dict(raw.get("summary") or {}),
        unaligned=unaligned,
        path=path,
    )


# ---------------------------------------------------------------------------
# Trainer detection (for logs that do not say which trainer wrote them)


def _version_tuple(text: Any) -> tuple[int, ...]:
    nums = re.findall(r"\d+", str(text))[:2]
    return tuple(int(n) for n in nums)


def guess_trainer(columns: Sequence[str], config: dict[str, Any] | None = None) -> str:
    """``"llm-baselines"``, ``"hf"`` / ``"hf<4.51"``, ``"lightning"`` or ``"generic"``, from
    the config keys and column names each trainer writes."""
    config = config or {}
    low = {c.lower() for c in columns}
    if {"scheduler", "iterations", "warmup_steps"} <= set(config):
        return "llm-baselines"
    hf_cols = {"train/global_step", "train/learning_rate", "eval/loss", "learning_rate", "eval_loss"}
    if "transformers_version" in config or low & hf_cols:
        v = config.get("transformers_version")
        if v is not None and _version_tuple(v) < (4, 51):
            return "hf<4.51"
        return "hf"
    if "trainer/global_step" in low or any(c.startswith("lr-") for c in low) or "hp_metric" in low:
        return "lightning"
    return "generic"


def columns_to_raw(fmt: str, name: str, table: dict[str, FloatArray], *, step: str | None, config: dict[str, Any],
                   trainer: str | None = None, meta: dict[str, Any] | None = None, where: str = "log") -> RawLog:
    """A sparse table (one row per log call, NaN where a column was not logged) as a RawLog."""
    cols = list(table)
    if step is not None:
        if step not in table:
            raise ValueError(f"{where} has no step column {step!r}; available columns: {sorted(cols)}")
        step_name = step
    else:
        step_name = find_name(cols, STEP_NAMES) or find_name(cols, ("Step",))
        if step_name is None:
            raise ValueError(f"{where} has no step column (looked for {', '.join(STEP_NAMES)}); "
                             f"pass step=NAME (available columns: {sorted(cols)})")
    steps = np.asarray(table[step_name], dtype=np.float64)
    skip = {step_name, "_step", "_runtime", "_timestamp", "epoch", "train/epoch", "trainer/global_step",
            "train/global_step", "global_step", "iter", "Step", "step"}
    series = {c: (steps, np.asarray(v, dtype=np.float64)) for c, v in table.items() if c not in skip}
    if trainer is None:
        trainer = guess_trainer(cols, config)
    meta = dict(meta or {})
    meta["step_column"] = step_name
    raw = RawLog(format=fmt, name=name, series=series, trainer=trainer, config=config, meta=meta,
                 lr_name=lr_column(list(series)), grad_name=find_name(list(series), GRAD_NAMES))
    T = _horizon(config, trainer)
    if T is not None:
        raw.T = T
    if trainer == "llm-baselines" and raw.lr_name is not None:
        cfg = config

        def resolve(i: IntArray, v: FloatArray) -> tuple[FloatArray, str, dict[str, Any]]:
            return _lr.resolve_from_config(cfg, i, v, name=name, branch_step=_branch_step(cfg, {}))

        raw.lr_resolver = resolve
    return raw


def _horizon(config: dict[str, Any], trainer: str) -> int | None:
    for key in ("iterations", "max_steps", "total_steps", "num_training_steps"):
        v = config.get(key)
        try:
            v = int(v)
        except (TypeError, ValueError):
            continue
        if v > 0:
            return v
    return None


def rows_to_table(rows: Sequence[Any], where: str,
                  explicit_nan: dict[str, np.ndarray] | None = None) -> dict[str, FloatArray]:
    """Sparse rows (dicts) -> ``{column: float64 array}``, NaN where a row lacks a key.

    ``explicit_nan``, when given, receives ``{column: bool mask}`` of the rows that hold
    a NaN value (not a missing key): a logged NaN loss is a diverged run.
    """
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{where}: expected a non-empty list of row objects (W&B run.history())")
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    table = {}
    for k in keys:
        col = np.full(len(rows), np.nan)
        nan_here = np.zeros(len(rows), dtype=bool)
        numeric = False
        for i, r in enumerate(rows):
            v = r.get(k)
            if isinstance(v, bool) or v is None:
                continue
            if isinstance(v, (int, float)):
                col[i] = float(v)
                nan_here[i] = v != v
                numeric = True
            elif isinstance(v, str):
                try:
                    col[i] = float(v)
                    numeric = True
                except ValueError:
                    pass
        if numeric:
            table[k] = col
            if explicit_nan is not None and nan_here.any():
                explicit_nan[k] = nan_here
    return table


def history_rows_raw(obj: Any, path: pathlib.Path, *, step: str | None) -> RawLog:
    """``run.history()`` rows: a list, JSON Lines, or ``{"history": rows, "config": ...}``."""
    config: dict[str, Any] = {}
    name = path.stem
    if isinstance(obj, dict):
        config = dict(obj.get("config") or {})
        name = str(obj.get("name") or name)
        rows = obj.get("history")
    else:
        rows = obj
    config = {k: (v.get("value") if isinstance(v, dict) and set(v) <= {"value", "desc"} else v)
              for k, v in config.items()}  # W&B's config.yaml style {"key": {"value": ...}}
    explicit: dict[str, np.ndarray] = {}
    table = rows_to_table(rows, str(path), explicit)
    raw = columns_to_raw("wandb-history", name, table, step=step, config=config, where=str(path),
                         meta={"path": str(path)})
    raw.explicit_nan = explicit
    return raw


# ---------------------------------------------------------------------------
# The web page's CSV export


def wandb_csv_raw(table: dict[str, FloatArray], path: pathlib.Path, *, step: str | None,
                  loss: str | None) -> RawLog:
    """``Step, "<run> - <metric>", ...``: metrics of one run (the ``__MIN``/``__MAX``
    envelopes are ignored).  With several runs, name the column: ``loss="<run> - <metric>"``."""
    step_name = step or "Step"
    if step_name not in table:
        raise ValueError(f"{path}: no {step_name!r} column in this W&B CSV; available columns: {sorted(table)}")
    runs: dict[str, dict[str, FloatArray]] = {}
    for col, values in table.items():
        if col == step_name or col.endswith(("__MIN", "__MAX")) or " - " not in col:
            continue
        run, metric = col.rsplit(" - ", 1)
        runs.setdefault(run, {})[metric] = values
    if not runs:
        raise ValueError(f"{path}: no '<run> - <metric>' columns; not a W&B chart export")
    if len(runs) > 1:
        if loss is None or " - " not in loss:
            full = sorted(f"{r} - {m}" for r, ms in runs.items() for m in ms)
            raise ValueError(f"{path} holds {len(runs)} runs ({sorted(runs)}); choose one with "
                             f"loss='<run> - <metric>' (available columns: {full})")
        chosen = loss.rsplit(" - ", 1)[0]
        if chosen not in runs:
            raise ValueError(f"{path} has no run {chosen!r}; runs: {sorted(runs)}")
    else:
        chosen = next(iter(runs))
    cols = dict(runs[chosen])
    cols["Step"] = table[step_name]
    return columns_to_raw("wandb-csv", chosen, cols, step="Step", config={}, where=str(path),
                          meta={"path": str(path), "runs": sorted(runs)})


def llm_baselines_export(obj: Any) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("history"), dict)
            and any(isinstance(s, dict) and "iter" in s for s in obj["history"].values()))


def export_raw(obj: Any, path: pathlib.Path) -> RawLog:
    run = _run_from_json(obj, path)
    raw = run._raw()
    if not {"scheduler", "iterations"} <= set(run.config):
        raw.trainer = guess_trainer(list(raw.series), run.config)
        if raw.trainer == "llm-baselines":
            raw.trainer = "generic"
        raw.lr_resolver = None
        raw.T = None
    return raw

