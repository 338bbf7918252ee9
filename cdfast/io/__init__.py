"""Reading training logs: one reader for any log, and the LR sequence a run really used.

``read_log(path)`` detects the format (W&B exports, history rows and chart CSVs, Hugging
Face ``trainer_state.json``, TensorBoard event files, Lightning ``metrics.csv``, CSV or
Parquet tables) and returns a :class:`TrainingLog`: the losses at the 1-based steps of
the weights they were measured on, and ``lr = eta_1 .. eta_T`` ready for
``cdfast.bound_curve_terms(log.lr, at=log.steps)``.  See docs/io.md.

Indexing (docs/math.md section 1): a loss at step ``t`` is the loss of ``w_t``, the weights
after ``t`` updates; ``lr[i] = eta_{i+1}`` is the LR of update ``i + 1``.  Trainers log
at a step ``s`` with their own off-by-one conventions, applied by the readers:

=================  ====================  =================  ======================  ==========
trainer            LR logged at ``s``    train loss at s    eval loss at ``s``      grad norm
=================  ====================  =================  ======================  ==========
llm-baselines      ``eta_{s+1}``         ``w_{s-1}``        ``w_s``                 ``G_s``
HF >= 4.51         ``eta_s``             ``w_{s-1}`` (mean) ``w_s``                 ``G_s``
HF < 4.51          ``eta_{s+1}``         ``w_{s-1}`` (mean) ``w_s``                 ``G_s``
Lightning          ``eta_{s+1}``         ``w_s``            ``w_{s+1}``             ``G_{s+1}``
generic tables     ``eta_s``             ``w_s``            ``w_s``                 ``G_s``
=================  ====================  =================  ======================  ==========

(``G_j`` is the norm of the gradient used by update ``j``, computed on ``w_{j-1}``;
"mean": the mean over the updates since the previous log.)  Losses at step 0 are
dropped; a step logged twice (resumed runs) keeps its last value.

The learning rates come from the run's config where it describes the schedule
(llm-baselines), checked against every logged LR; else from the logged LR, filled
linearly between logged steps; ``lr_source`` says which.  The legacy readers
(:func:`read_wandb_json`, :class:`WandbRun`, :func:`lr_from_config`, :func:`read_csv`,
:func:`curve_from_columns`) remain.

:func:`write_schedule` goes the other way: a schedule for a training script, one LR per
step (CSV, NumPy) or the ``torch.optim.lr_scheduler.LambdaLR`` form (JSON, Python).
"""

from ._log import CONVENTIONS, EVAL_LOSS_NAMES, TRAIN_LOSS_NAMES, LogWarning, TrainingLog, is_eval_name
from ._lr import LR_RTOL, lr_from_config
from ._read import FORMATS, detect_format, read_log
from .table import curve_from_columns, read_csv, read_loss_file, read_lr_file
from .wandb import WandbRun, read_wandb_json
from .schedule import SCHEDULE_FORMATS, lambdalr_form, write_schedule

__all__ = [
    "read_log", "detect_format", "TrainingLog", "LogWarning", "FORMATS", "CONVENTIONS", "LR_RTOL",
    "EVAL_LOSS_NAMES", "TRAIN_LOSS_NAMES", "is_eval_name",
    "WandbRun", "read_wandb_json", "lr_from_config", "read_csv", "curve_from_columns",
    "read_lr_file", "read_loss_file",
    "write_schedule", "lambdalr_form", "SCHEDULE_FORMATS",
]
