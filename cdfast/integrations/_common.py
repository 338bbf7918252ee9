"""What both training callbacks share, free of any framework: options, the planned LR, the forecaster.

A callback module (``hf.py``, ``lightning.py``) only translates its framework's events into
calls on :class:`LiveForecast` -- "the run will make ``T`` updates with these LRs", "the
trainer logged this loss at its step ``s``" -- and :class:`LiveForecast`'s answers (the
metrics to log, whether to stop) into the framework's own logging and control flow.

Indexing: a trainer's logged step ``s`` is mapped to the paper's step (the ``t`` of the
weights ``w_t`` the loss was measured on) by the same table :func:`cdfast.io.read_log` uses
(``cdfast.io.CONVENTIONS``), so a live forecast and a forecast from the saved log of
the same run see the same points.
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from .._validate import as_vector, check_int, check_scalar, check_values
from ..io import CONVENTIONS

logger = logging.getLogger("cdfast.integrations")

EXTRA = 'pip install "cdfast[integrations]"'
LOSS_CHOICES = ("auto", "train", "eval")


class TargetWarning(UserWarning):
    """The forecast's whole interval lies above the target loss."""


def require(module: str, what: str) -> Any:
    """Import ``module`` or raise an ImportError that names the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{what} needs {module.split('.')[0]} ({e}); install it with {EXTRA}") from None


def paper_step(trainer: str, kind: Literal["train", "eval"], logged_step: int) -> int:
    """The step ``t`` of the weights ``w_t`` a loss logged at the trainer's step ``logged_step`` was measured on."""
    conv = CONVENTIONS[trainer]
    return int(logged_step) + (conv.train_loss if kind == "train" else conv.eval_loss)


def rewound_lr(scheduler: Any, n: int, group: int, stride: int = 1) -> NDArray[np.float64] | None:
    """``eta_1 .. eta_n`` of a scheduler that has already been stepped ``n`` times, or None if unknown.

    Known in closed form for ``LambdaLR`` (every schedule of ``transformers`` is one):
    update ``k + 1`` used ``base_lr * lr_lambda(k)`` (``lr_lambda(stride * k)`` when the
    scheduler is stepped ``stride`` times per update).
    """
    import torch

    if type(scheduler) is torch.optim.lr_scheduler.LambdaLR:
        base = float(scheduler.base_lrs[group])
        fn = scheduler.lr_lambdas[group]
        return np.array([base * float(fn(stride * k)) for k in range(n)], dtype=np.float64)
    return None


def planned_lr(scheduler: Any, T: Any, *, done: int, group: int, where: str, T_name: str,
               stride: int = 1) -> NDArray[np.float64]:
    """The whole planned ``eta_1 .. eta_T`` from a torch scheduler that has been stepped ``done`` times.

    ``T_name`` names the trainer setting that gave ``T`` (``max_steps``) for the error messages;
    ``stride``: how many times the scheduler is stepped per optimizer update (1 but for a
    wrapper such as accelerate's on several processes).
    """
    from .. import schedules

    if T is None or isinstance(T, bool) or not isinstance(T, numbers.Real) or not math.isfinite(T) or T < 1:
        raise ValueError(f"{T_name} = {T!r}: the forecast needs the run's total number of optimizer updates; "
                         f"set {T_name} to a positive integer (or pass lr=, the whole planned LR sequence)")
    T = check_int(T, T_name, 1)
    if done >= T:
        raise ValueError(f"{where}: the run has already done {done} of its {T_name} = {T} updates; nothing is "
                         "left to forecast")
    if scheduler is None:
        raise ValueError(f"{where}: no lr_scheduler; pass lr=, the whole planned LR sequence")
    try:
        rest = schedules.from_torch(scheduler, stride * (T - done - 1) + 1, group=group)[::stride]
    except TypeError as e:
        raise TypeError(f"{where}: lr_scheduler {type(scheduler).__name__} cannot be stepped ahead ({e}); "
                        "pass lr=, the whole planned LR sequence, or use a step-driven scheduler") from None
    except ValueError as e:
        raise ValueError(f"{where}: lr_scheduler {type(scheduler).__name__}: {e}") from None
    if done == 0:
        return rest
    head = rewound_lr(scheduler, done, group, stride)
    if head is None:
        raise ValueError(f"{where}: the run resumes after {done} updates and the LRs of updates 1..{done} cannot "
                         f"be recovered from a {type(scheduler).__name__}; pass lr=, the whole planned LR "
                         f"sequence ({T} values)")
    return np.concatenate([head, rest])


def check_user_lr(lr: Any) -> NDArray[np.float64] | None:
    if lr is None:
        return None
    arr = as_vector(lr, "lr")
    check_values(arr, "lr")
    return arr


class LiveForecast:
    """The framework-free state of a forecasting callback.

    Options are validated here, once, for both callbacks (the argument names are the
    callbacks' own).
    """

    def __init__(self, *, loss: str = "auto", key: str | None = None, every: int = 1, level: float = 0.9,
                 target: float | None = None, stop_above_target: bool = False, patience: int = 1,
                 lr: Any = None, group: int = 0, name: str = "predicted_final_loss"):
        if loss not in LOSS_CHOICES:
            raise ValueError(f"loss = {loss!r} must be one of {LOSS_CHOICES} (which logged loss to forecast)")
        if key is not None and (not isinstance(key, str) or not key):
            raise TypeError(f"key must be the name of a logged loss (a non-empty str), got {key!r}")
        self.loss = loss
        self.key = key
        self.every = check_int(every, "every", 1)
        level = check_scalar(level, "level")
        if not 0.0 < level < 1.0:
            raise ValueError(f"level = {level} must lie in (0, 1), e.g. 0.9 for a 90% interval")
        self.level = level
        self.target = None if target is None else check_scalar(target, "target", nonneg=False)
        if not isinstance(stop_above_target, bool):
            raise TypeError(f"stop_above_target must be True or False, got {stop_above_target!r}")
        if stop_above_target and self.target is None:
            raise ValueError("stop_above_target=True needs target=, the loss the run must reach")
        self.stop_above_target = stop_above_target
        self.patience = check_int(patience, "patience", 1)
        self.user_lr = check_user_lr(lr)
        self.group = check_int(group, "group", 0)
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str (the logged metric's name), got {name!r}")
        self.names = (name, f"{name}_low", f"{name}_high")
        self.forecaster: Any = None
        self.kind: Literal["train", "eval"] | None = None
        self.lr: NDArray[np.float64] | None = None
        self.forecast: Any = None  # the latest Forecast
        self.forecasts: list[Any] = []
        self.last_step = 0
        self.history: list[tuple[int, float]] = []  # (step, loss) fed to the forecaster
        self.n_events = 0
        self.n_above = 0
        self._last_reason: str | None = None
        self._warned_above = False

    # -- set-up, at the start of training --------------------------------------------------------
    def start(self, *, kind: Literal["train", "eval"], scheduler: Any, T: Any, done: int, where: str,
              T_name: str, lr: NDArray[np.float64] | None = None, stride: int = 1) -> None:
        """Build the forecaster on the planned LR: ``lr=`` of the callback, else ``lr`` (the trainer's
        constant LR), else the scheduler's."""
        from ..forecasting import Forecaster

        if self.user_lr is not None or lr is not None:
            lr = self.user_lr if self.user_lr is not None else lr
            if T is not None and isinstance(T, numbers.Real) and math.isfinite(T) and T >= 1 and int(T) != lr.size:
                raise ValueError(f"lr has {lr.size} values but the trainer's {T_name} = {int(T)}; pass the whole "
                                 f"planned LR sequence, one value per optimizer update ({int(T)} values)")
        else:
            lr = planned_lr(scheduler, T, done=done, group=self.group, where=where, T_name=T_name, stride=stride)
        assert lr is not None
        self.kind = kind
        self.lr = lr
        self.forecaster = Forecaster(lr, level=self.level, noisy=(kind == "train"))
        self.forecast, self.forecasts, self.last_step, self.n_events, self.history = None, [], 0, 0, []
        self.n_above, self._last_reason, self._warned_above = 0, None, False

    @property
    def T(self) -> int:
        return 0 if self.lr is None else int(self.lr.size)

    # -- one logged loss ------------------------------------------------------------------------
    def feed(self, step: int, loss: float) -> None:
        """Give the forecaster the loss of ``w_step`` (no forecast). Steps <= 0 or already seen are skipped."""
        if self.forecaster is None or step < 1 or step <= self.last_step:
            return
        if step > self.T:
            raise ValueError(f"a loss was logged at step {step} but the planned schedule has only T = {self.T} "
                             "updates; the trainer's max_steps (or lr=) must cover the whole run")
        loss = float(loss)
        if math.isfinite(loss) and loss <= 0:
            # the forecaster's models need positive losses; a loss that is not one (a custom
            # objective) is left out, once said
            if self._last_reason != "nonpositive":
                logger.warning("cdfast: loss %r at step %d is not positive; it is not forecast", loss, step)
                self._last_reason = "nonpositive"
            return
        self.forecaster.update(step, loss)
        self.last_step = step
        self.history.append((step, loss))

    def observe(self, step: int, loss: float) -> dict[str, float]:
        """Feed one logged loss; every ``every``-th one, forecast. Returns the metrics to log (maybe empty)."""
        if self.forecaster is None or step < 1 or step <= self.last_step:
            return {}
        self.feed(step, loss)
        self.n_events += 1
        if (self.n_events - 1) % self.every:
            return {}
        fc = self.forecaster.forecast()
        self.forecast = fc
        self.forecasts.append(fc)
        values = (fc.loss, fc.low, fc.high)
        if not fc.ok or any(v is None or not math.isfinite(v) for v in values):
            reason = fc.reason or "the forecaster returned no finite interval"
            if reason != self._last_reason:
                logger.info("cdfast: no loss forecast at step %d of %d: %s", step, self.T, reason)
                self._last_reason = reason
            self.n_above = 0
            return {}
        self._last_reason = None
        self._check_target(fc)
        return {n: float(v) for n, v in zip(self.names, values)}

    def _check_target(self, fc: Any) -> None:
        if self.target is None:
            return
        if fc.low > self.target:
            self.n_above += 1
            if not self._warned_above:
                warnings.warn(f"cdfast: at step {fc.step} of {fc.T} the final loss is forecast at {fc.loss:.4g} "
                              f"[{fc.low:.4g}, {fc.high:.4g}] ({fc.level:.0%} interval), wholly above the target "
                              f"{self.target:.4g}", TargetWarning, stacklevel=2)
                self._warned_above = True
        else:
            self.n_above = 0
            self._warned_above = False

    @property
    def should_stop(self) -> bool:
        """True when early stopping is on and the last ``patience`` forecasts all lay wholly above the target."""
        return self.stop_above_target and self.n_above >= self.patience
