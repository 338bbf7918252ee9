"""A real training run shipped with cdfast, for examples, tests and ``cdfast report``.

:data:`SAMPLE_RUN` is the W&B export of a 124M-parameter Llama-style model trained on
SlimPajama with AdamW, cosine schedule (peak LR 0.002, 300 warmup steps, 25 000 steps),
from Schaipp, Hägele et al. 2025 (repository fabian-sp/lr-scheduling, folder ``data/``,
MIT licence; see ``README.md`` and ``LICENSE`` in this folder).  It is the original file
reduced to the columns the fit needs; :func:`cdfast.io.read_log` reads it like any export:

>>> import cdfast
>>> log = cdfast.io.read_log(cdfast.data.SAMPLE_RUN)
>>> log.T, log.lr_source
(25000, 'config')
"""

from __future__ import annotations

import pathlib

__all__ = ["SAMPLE_RUN", "sample_run"]

#: Path of the packaged run (a W&B run export; format "wandb-json").
SAMPLE_RUN = pathlib.Path(__file__).resolve().parent / "llm124m_cosine_lr0.002_T25000.json"


def sample_run(**kwargs):
    """The packaged run as a :class:`cdfast.io.TrainingLog` (``kwargs`` go to :func:`cdfast.io.read_log`)."""
    from ..io import read_log

    return read_log(SAMPLE_RUN, **kwargs)
