"""``read_log``: detect a log's format from its content (then its name) and read it."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from numpy.typing import ArrayLike

from .. import _files
from . import hf, lightning, tensorboard, wandb
from ._log import TrainingLog, assemble
from .table import read_table

FORMATS = ("wandb-json", "wandb-history", "wandb-csv", "hf-trainer-state", "tensorboard", "lightning-csv", "csv",
           "parquet")


def _head(path: pathlib.Path, n: int = 4096) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def _json_or_lines(text: str) -> Any:
    try:
        return _loads(text)
    except json.JSONDecodeError as first:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) > 1:
            try:
                rows = [_loads(ln) for ln in lines]
            except json.JSONDecodeError:
                raise first from None
            if all(isinstance(r, dict) for r in rows):
                return rows
        raise


def _loads(text: str) -> Any:
    """``json.loads``, with nesting too deep for the parser (``[[[[...``) as a JSONDecodeError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("arrays or objects nested too deeply for a training log", text[:40], 0) from None


def detect_format(path: str | os.PathLike) -> str:
    """The format :func:`read_log` will read ``path`` as (one of :data:`FORMATS`).

    Content decides first: the Parquet magic, a TensorBoard record, JSON holding
    ``log_history`` (Hugging Face), ``history`` sections with ``iter`` (W&B run export) or
    row objects (W&B history), a CSV header with ``Step`` and ``"<run> - <metric>"``
    columns (W&B chart export) or ``step`` and ``epoch`` with sparse rows (Lightning).
    The name decides what content leaves open (``trainer_state.json``, ``metrics.csv``,
    ``*.tfevents.*``).  A folder is read as the Hugging Face output folder, Lightning
    log folder or TensorBoard log folder it contains.
    """
    return _detect(pathlib.Path(path))[0]


def _detect(path: pathlib.Path) -> tuple[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    _files.check_input(path, "log")
    if path.is_dir():
        state = hf.find_trainer_state(path)
        if state is not None:
            return "hf-trainer-state", state
        if (path / "metrics.csv").is_file():
            return "lightning-csv", path / "metrics.csv"
        if tensorboard.event_dirs(path):
            return "tensorboard", path
        raise ValueError(f"{path}: found no training log in this folder (looked for trainer_state.json, "
                         "checkpoint-*/trainer_state.json, metrics.csv and TensorBoard event files)")
    head = _head(path)
    if head[:4] == b"PAR1":
        return "parquet", None
    if tensorboard.is_event_file(head) or ".tfevents." in path.name:
        return "tensorboard", None
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"["):
        try:
            obj = _json_or_lines(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if hf.is_trainer_state(obj):
            return "hf-trainer-state", obj
        if wandb.llm_baselines_export(obj):
            return "wandb-json", obj
        if isinstance(obj, list) or (isinstance(obj, dict) and isinstance(obj.get("history"), list)):
            return "wandb-history", obj
        keys = sorted(obj)[:20] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: JSON of unknown layout (top level: {keys}); expected a Hugging Face "
                         "trainer_state.json (log_history), a W&B run export (config + history sections) or "
                         "W&B history rows")
    if b"\x00" in head:
        raise ValueError(f"{path}: a binary file that is neither Parquet nor a TensorBoard event file")
    return "table", None


def read_log(path: str | os.PathLike, *, loss: str | None = None, lr: ArrayLike | str | None = None,
             step: str | None = None) -> TrainingLog:
    """Read any supported training log into a :class:`TrainingLog`.

    Parameters
    ----------
    path : str or path
        A file or a folder: a W&B run export, W&B ``run.history()`` rows (JSON / JSON
        Lines) or chart CSV, a Hugging Face ``trainer_state.json`` (or its output folder),
        TensorBoard event files (or their folder; needs ``cdfast[io]``), a Lightning
        ``metrics.csv`` (or its folder), or a CSV/Parquet table with named columns.  The
        format is detected from the content first, the name second (:func:`detect_format`).
    loss : str, optional
        The loss column.  Default: a validation/eval loss when the log has one
        (``val_loss``, ``eval_loss``, ``eval/loss``, ``val/loss``, ...), else the train loss
        (``train_loss``, ``train/loss``, ``loss``, ...), else the only column whose name
        contains ``loss``.  A wrong name, or several candidates, raise ValueError listing
        the available columns.
    lr : array or str, optional
        Override the learning rates: an array ``eta_1 .. eta_T`` (its length sets T), or
        the name of an LR column (filled between logged steps like any logged LR).
    step : str, optional
        The step column of tables and W&B history rows (default: the trainer's step
        metric, e.g. ``train/global_step``, ``trainer/global_step``, ``iter``, ``step``).

    Returns
    -------
    TrainingLog
        ``steps`` (1-based, the weights each loss was measured on), ``loss``, ``lr``
        (``eta_1 .. eta_T``, with ``lr_source`` saying how it was obtained), gradient
        norms, ``T``, config and metadata.

    Notes
    -----
    Each trainer logs at a step with its own off-by-one conventions (which update a
    logged LR belongs to, which weights a train loss was computed on); :mod:`cdfast.io`
    and docs/io.md list them, and ``meta["convention"]`` states the one applied.  The LR
    resolution (config rebuild checked against every logged LR, missing cosine floors,
    branched runs, interpolation) is described in :mod:`cdfast.io._lr`.  The loss at step
    0 (before training) is dropped: eq. (2.4) starts at ``tau = 1``.

    Examples
    --------
    >>> import cdfast
    >>> log = cdfast.io.read_log("run.json")                       # doctest: +SKIP
    >>> a, b = cdfast.bound_curve_terms(log.lr, at=log.steps)      # doctest: +SKIP
    """
    p = pathlib.Path(path)
    kind, payload = _detect(p)
    if kind == "hf-trainer-state":
        if isinstance(payload, pathlib.Path):
            p = payload
            _files.check_input(p, "log")
            try:
                payload = _loads(p.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"{p}: not valid JSON ({exc})") from None
        raw = hf.trainer_state_raw(payload, p, step=step)
    elif kind == "wandb-json":
        if step not in (None, "iter"):
            raise ValueError(f"{p}: a W&B run export is indexed by 'iter'; step={step!r} does not apply")
        raw = wandb.export_raw(payload, p)
    elif kind == "wandb-history":
        raw = wandb.history_rows_raw(payload, p, step=step)
    elif kind == "tensorboard":
        raw = tensorboard.tensorboard_raw(p, step=step)
    else:
        csv_path = payload if isinstance(payload, pathlib.Path) else p
        explicit: dict = {}
        header, table = read_table(csv_path, explicit)
        if not table:
            raise ValueError(f"{csv_path}: no numeric column found (is it a table with a header row?)")
        if kind == "table" and "Step" in header and any(" - " in h for h in header):
            raw = wandb.wandb_csv_raw(table, csv_path, step=step, loss=loss)
            if loss is not None and " - " in loss:
                loss = loss.rsplit(" - ", 1)[1]
        elif kind == "lightning-csv" or lightning.looks_like_lightning(header, table, csv_path.name):
            raw = lightning.lightning_raw(table, csv_path, step=step)
        else:
            fmt = "parquet" if kind == "parquet" else "csv"
            raw = wandb.columns_to_raw(fmt, csv_path.stem, table, step=step, config={}, where=str(csv_path),
                                       meta={"path": str(csv_path)})
        # a loss written as NaN to the end of the table is a divergence (read_table); the series of these
        # readers are the table's columns, row for row
        raw.explicit_nan.update({k: m for k, m in explicit.items()
                                 if k in raw.series and raw.series[k][1].shape == m.shape})
    return assemble(raw, loss=loss, lr=lr)
