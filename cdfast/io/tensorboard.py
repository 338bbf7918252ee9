"""TensorBoard event files (``format="tensorboard"``), read with TensorBoard's own
``EventAccumulator`` (optional: ``pip install "cdfast[io]"`` or ``pip install tensorboard``).

A path may be one event file or a folder.  A folder's event files are read together
(several files = a resumed run; a step logged twice keeps its last value); a folder
whose event files sit in several subfolders (one per run) is ambiguous and refused
with the list.  Scalars written as ``simple_value`` (``torch.utils.tensorboard``,
tensorboardX, Keras) and as scalar tensors (``tf.summary.scalar``) are both read.
TensorBoard stores scalars in float32, so logged LRs carry a relative error of ~6e-8.

Indexing follows the writer, recognised by its tags: the Hugging Face Trainer's
``train/loss``, ``train/learning_rate``, ``eval/loss`` (its convention, see
:mod:`cdfast.io.hf`), Lightning's ``lr-<Optimizer>`` and ``hp_metric`` (see
:mod:`cdfast.io.lightning`); anything else uses the generic convention: the step is the
number of updates done, the loss at ``s`` is on ``w_s`` and the LR at ``s`` is the LR of
update ``s`` (``eta_s``).
"""

from __future__ import annotations

import os
import pathlib
import struct

import numpy as np

from .. import _files
from ._log import GRAD_NAMES, RawLog, find_name, lr_column
from .wandb import guess_trainer

EXTRA = 'pip install "cdfast[io]"  (or: pip install tensorboard)'


def is_event_file(head: bytes) -> bool:
    """A TFRecord whose first record is an Event with ``file_version = "brain.Event:N"``."""
    if len(head) < 16:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 0 < length < 4096 and b"brain.Event" in head[12:12 + length]


def event_dirs(folder: pathlib.Path) -> list[pathlib.Path]:
    dirs = set()
    for root, _, files in os.walk(folder):
        if any("tfevents" in f for f in files):
            dirs.add(pathlib.Path(root))
    return sorted(dirs)


def _accumulator(path: pathlib.Path):
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise ImportError(f"reading TensorBoard event files needs the tensorboard package: {EXTRA}") from None
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def tensorboard_raw(path: pathlib.Path, *, step: str | None) -> RawLog:
    if step not in (None, "step"):
        raise ValueError(f"{path}: TensorBoard scalars are indexed by their event step; step={step!r} does not apply")
    target = path
    if path.is_dir():
        dirs = event_dirs(path)
        if not dirs:
            raise ValueError(f"{path}: no TensorBoard event files (events.out.tfevents.*) in this folder")
        if len(dirs) > 1:
            raise ValueError(f"{path} holds event files of {len(dirs)} runs: "
                             f"{[str(d.relative_to(path)) for d in dirs]}; pass one of them")
        target = dirs[0]
        for f in sorted(target.iterdir()):
            if "tfevents" in f.name:
                _files.check_input(f, "TensorBoard event file")
    acc = _accumulator(target)
    tags = acc.Tags()
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for tag in tags.get("scalars", []):
        events = acc.Scalars(tag)
        series[tag] = (np.array([e.step for e in events], dtype=np.float64),
                       np.array([e.value for e in events], dtype=np.float64))
    if tags.get("tensors"):
        from tensorboard.util import tensor_util

        for tag in tags["tensors"]:
            if tag in series:
                continue
            events = acc.Tensors(tag)
            vals = [tensor_util.make_ndarray(e.tensor_proto) for e in events]
            if not vals or any(np.ndim(v) != 0 or not np.issubdtype(np.asarray(v).dtype, np.number) for v in vals):
                continue
            series[tag] = (np.array([e.step for e in events], dtype=np.float64),
                           np.array([float(v) for v in vals], dtype=np.float64))
    if not series:
        raise ValueError(f"{path}: the TensorBoard log holds no scalar")
    trainer = guess_trainer(list(series))
    if trainer == "llm-baselines":
        trainer = "generic"
    series.pop("epoch", None)
    series.pop("train/epoch", None)
    name = (target.name if target.is_dir() else target.parent.name) or target.stem
    return RawLog(format="tensorboard", name=name, series=series, trainer=trainer, meta={"path": str(target)},
                  lr_name=lr_column(list(series)), grad_name=find_name(list(series), GRAD_NAMES))
