"""Lightning ``CSVLogger`` output, ``metrics.csv`` (``format="lightning-csv"``).

Columns are sorted by name and include ``step`` and ``epoch``; rows are sparse: a train
row (``train_loss``, ...), a row per ``LearningRateMonitor`` call (``lr-<Optimizer>``,
one per param group as ``lr-<Optimizer>/pg<k>``) and validation rows each fill only
their own cells.

Indexing (checked against a real run, Lightning 2.6; ``step`` is the number of
optimizer steps done *before* the current batch, ``trainer.global_step``):

* a training-step metric logged at ``n`` (``train_loss``) is computed on ``w_n``;
* ``lr-*`` at ``n`` is the LR of update ``n + 1``: ``eta_{n+1} = lr[n]``;
* validation at ``n`` runs after update ``n + 1``: ``val_loss`` at ``n`` is on ``w_{n+1}``;
* a gradient norm logged from ``on_before_optimizer_step`` at ``n`` is ``G_{n+1}``.

The horizon ``T`` is the last step + 1 unless ``hparams.yaml`` beside the file sets
``max_steps``.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from ._log import GRAD_NAMES, RawLog, find_name, lr_column


def looks_like_lightning(header: list[str], table: dict[str, np.ndarray], name: str) -> bool:
    cols = set(header)
    if not {"step", "epoch"} <= cols:
        return False
    if any(c.startswith("lr-") for c in cols) or name == "metrics.csv":
        return True
    metrics = [c for c in header if c not in ("step", "epoch")]
    sparse = any(np.isnan(table[c]).any() for c in metrics if c in table)
    return sparse


def _hparams(folder: pathlib.Path) -> dict[str, Any]:
    p = folder / "hparams.yaml"
    if not p.is_file():
        return {}
    out: dict[str, Any] = {}
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith((" ", "\t", "-")) and value.strip():
            v = value.strip()
            try:
                out[key.strip()] = int(v)
            except ValueError:
                try:
                    out[key.strip()] = float(v)
                except ValueError:
                    out[key.strip()] = v
    return out


def lightning_raw(table: dict[str, np.ndarray], path: pathlib.Path, *, step: str | None) -> RawLog:
    if step not in (None, "step"):
        raise ValueError(f"{path}: Lightning's metrics.csv is indexed by 'step'; step={step!r} does not apply")
    if "step" not in table:
        raise ValueError(f"{path}: no 'step' column (not a Lightning metrics.csv)")
    steps = np.asarray(table["step"], dtype=np.float64)
    series = {c: (steps, np.asarray(v, dtype=np.float64)) for c, v in table.items() if c not in ("step", "epoch")}
    config = _hparams(path.parent)
    T = config.get("max_steps")
    return RawLog(format="lightning-csv", name=path.parent.name or path.stem, series=series, trainer="lightning",
                  config=config, meta={"path": str(path)}, T=int(T) if isinstance(T, int) and T > 0 else None,
                  lr_name=lr_column(list(series)), grad_name=find_name(list(series), GRAD_NAMES))
