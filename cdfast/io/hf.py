"""Hugging Face ``trainer_state.json`` (``format="hf-trainer-state"``).

The Trainer saves its state with every checkpoint (``output_dir/checkpoint-N/``) and at
the end of training.  ``log_history`` mixes three kinds of entries, all with ``step``
(= ``global_step``, the number of optimizer updates done):

* train rows: ``loss``, ``learning_rate``, ``grad_norm``, ``epoch``;
* eval rows: ``eval_loss`` and other ``eval_*`` metrics;
* one summary row at the end (``train_runtime``, ``train_loss`` over the whole run),
  which is skipped.

Indexing (checked against a real Trainer run, transformers 5.24):

* ``eval_loss`` at step ``s`` is measured on ``w_s``.
* ``loss`` at ``s`` is the mean batch loss of the updates since the previous log; the
  last of those batches was computed on ``w_{s-1}``, which is where it is placed.
* ``grad_norm`` at ``s`` is the norm of the gradient of update ``s``: ``G_s``.
* ``learning_rate`` at ``s`` is the LR of update ``s`` (``eta_s = lr[s-1]``) since
  transformers 4.51; older versions logged the next update's (``eta_{s+1}``).  The file
  does not record the version: pass ``lr=`` to read_log for logs of older versions.
* The horizon ``T`` is ``max_steps``.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

from ._log import RawLog
from .wandb import rows_to_table

SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "total_flos")


def is_trainer_state(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("log_history"), list)


def trainer_state_raw(obj: dict[str, Any], path: pathlib.Path, *, step: str | None) -> RawLog:
    if step not in (None, "step"):
        raise ValueError(f"{path}: a trainer_state.json is indexed by 'step' (global_step); step={step!r} "
                         "does not apply")
    rows = [r for r in obj["log_history"]
            if isinstance(r, dict) and "step" in r and not any(k in r for k in SUMMARY_KEYS)]
    if not rows:
        raise ValueError(f"{path}: log_history has no logged step")
    explicit: dict[str, Any] = {}
    table = rows_to_table(rows, str(path), explicit)
    if "step" not in table:
        raise ValueError(f"{path}: log_history rows have no numeric 'step' (global_step); is it a trainer_state.json?")
    steps = table.pop("step")
    table.pop("epoch", None)
    series = {c: (steps, v) for c, v in table.items()}
    T = obj.get("max_steps") or obj.get("global_step")
    if T is not None and (isinstance(T, bool) or not isinstance(T, (int, float)) or not math.isfinite(T)
                          or T != int(T) or T < 0):
        raise ValueError(f"{path}: max_steps / global_step = {T!r} is not a whole number of steps")
    config = {k: v for k, v in obj.items() if k != "log_history" and not isinstance(v, (dict, list))}
    folder = path.parent.parent if path.parent.name.startswith("checkpoint-") else path.parent
    name = folder.name
    return RawLog(format="hf-trainer-state", name=name or path.stem, series=series, trainer="hf", config=config,
                  meta={"path": str(path)}, T=int(T) if T else None,
                  lr_name="learning_rate" if "learning_rate" in series else None,
                  grad_name="grad_norm" if "grad_norm" in series else None, explicit_nan=explicit)


def find_trainer_state(folder: pathlib.Path) -> pathlib.Path | None:
    """``folder/trainer_state.json``, else the one of the last ``checkpoint-N``."""
    direct = folder / "trainer_state.json"
    if direct.is_file():
        return direct
    best, best_n = None, -1
    for p in folder.glob("checkpoint-*/trainer_state.json"):
        try:
            n = int(p.parent.name.split("-", 1)[1])
        except ValueError:
            continue
        if n > best_n:
            best, best_n = p, n
    return best

