"""A Hugging Face ``transformers.TrainerCallback`` that forecasts the final loss while the run goes.

::

    from cdfast.integrations.hf import ForecastCallback
    trainer = Trainer(model, args, train_dataset=..., callbacks=[ForecastCallback()])

At the start of training it reads the whole planned LR schedule from the Trainer's own
scheduler (``cdfast.schedules.from_torch`` on a copy, ``T = state.max_steps``); at each
logging event it feeds the logged loss to a :class:`cdfast.Forecaster` and adds
``predicted_final_loss`` and its ``_low``/``_high`` bounds to the logs, so every
integration of ``report_to``, the console and ``trainer_state.json`` record them.

The Trainer runs its own callbacks and the ``report_to`` integrations before the user's,
and every callback's ``on_log`` receives the same ``logs`` dict: this callback moves itself
to the front of the Trainer's callback list (at ``on_init_end`` and again at
``on_train_begin``), so the integrations see the keys it adds.

Indexing (``cdfast.io``'s table, docs/io.md): ``loss`` logged at ``global_step = s`` is the
mean batch loss since the previous log, the latest batch on ``w_{s-1}``; ``eval_loss`` at
``s`` is on ``w_s``.
"""

from __future__ import annotations

import numbers
import sys
from typing import Any

from ._common import LiveForecast, TargetWarning, paper_step, require

transformers = require("transformers", "cdfast.integrations.hf")
from transformers.trainer_callback import CallbackHandler, TrainerCallback  # noqa: E402

__all__ = ["ForecastCallback", "TargetWarning"]

TRAIN_KEY = "loss"
EVAL_KEY = "eval_loss"


def _handler_of(callback: Any) -> Any:
    """The ``CallbackHandler`` whose ``call_event`` is calling ``callback`` right now, or None.

    The handler is not passed to callbacks; the frames above this hook are its ``call_event``.
    """
    frame = sys._getframe(2)
    for _ in range(8):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, CallbackHandler) and any(cb is callback for cb in owner.callbacks):
            return owner
        frame = frame.f_back
    return None


def _move_to_front(callback: Any) -> bool:
    """Put ``callback`` first in its handler's list; True when it is (or already was) first.

    ``list.pop(i); insert(0, ...)`` leaves every index after ``i`` unchanged, so the handler's
    loop over the list, which is running now, calls each callback once, in the new order.
    """
    handler = _handler_of(callback)
    if handler is None:
        return False
    cbs = handler.callbacks
    i = next(k for k, cb in enumerate(cbs) if cb is callback)
    if i:
        cbs.insert(0, cbs.pop(i))
    return True


def _unwrap(scheduler: Any) -> tuple[Any, int]:
    """The torch scheduler inside accelerate's ``AcceleratedScheduler`` and how often it steps it per update.

    The Trainer hands accelerate the scheduler under some distributed set-ups; the wrapper then
    steps it once per process per update unless batches are split (accelerate's scheduler.py).
    """
    inner = getattr(scheduler, "scheduler", None)
    if inner is None or type(scheduler).__name__ != "AcceleratedScheduler":
        return scheduler, 1
    stride = 1
    if getattr(scheduler, "step_with_optimizer", True) and not getattr(scheduler, "split_batches", False):
        from accelerate.state import PartialState

        stride = int(PartialState().num_processes)
    return inner, stride


class ForecastCallback(TrainerCallback):
    """Forecast the final loss of a ``transformers.Trainer`` run at its logging events.

    Parameters
    ----------
    loss : {"auto", "train", "eval"}
        Which logged loss to forecast: the training ``loss`` (noisy; forecast = the final
        logged training loss, the mean over the last logging window) or ``eval_loss``.
        ``"auto"``: ``eval`` when the Trainer evaluates during training
        (``eval_strategy != "no"``), else ``train``.
    key : str, optional
        The logged name of that loss, if not ``"loss"`` / ``"eval_loss"``.
    every : int
        Forecast at every ``every``-th logged loss (every loss is fed to the forecaster).
    level : float
        Interval level, 0.9 for a 90% interval.
    target : float, optional
        The loss the run must reach: a :class:`TargetWarning` when a forecast's whole
        interval lies above it.
    stop_above_target : bool
        Stop training (``control.should_training_stop``) when ``patience`` forecasts in a
        row lie wholly above ``target``.
    patience : int
    lr : array_like, optional
        The whole planned LR sequence ``eta_1 .. eta_T`` (``state.max_steps`` values),
        instead of reading it from the Trainer's scheduler.
    group : int
        The optimizer param group whose LR is read (0: the first).
    name : str
        Logged names: ``name``, ``name + "_low"``, ``name + "_high"``.

    Attributes
    ----------
    forecast : Forecast or None
        The latest forecast (also when it declined: its ``reason`` says why).
    forecasts : list of Forecast
    lr : ndarray or None
        The planned schedule read at the start of training.
    """

    def __init__(self, *, loss: str = "auto", key: str | None = None, every: int = 1, level: float = 0.9,
                 target: float | None = None, stop_above_target: bool = False, patience: int = 1,
                 lr: Any = None, group: int = 0, name: str = "predicted_final_loss"):
        self._live = LiveForecast(loss=loss, key=key, every=every, level=level, target=target,
                                  stop_above_target=stop_above_target, patience=patience, lr=lr, group=group,
                                  name=name)
        self._key: str | None = None
        self.first = False  # whether it runs before the other callbacks (set by the Trainer's events)

    @property
    def forecast(self) -> Any:
        return self._live.forecast

    @property
    def forecasts(self) -> list[Any]:
        return self._live.forecasts

    @property
    def lr(self) -> Any:
        return self._live.lr

    def on_init_end(self, args, state, control, **kwargs):
        self.first = _move_to_front(self)

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        self.first = _move_to_front(self) or self.first
        live = self._live
        kind = live.loss
        if kind == "auto":
            strategy = getattr(args, "eval_strategy", None)
            kind = "train" if strategy is None or str(getattr(strategy, "value", strategy)) == "no" else "eval"
        self._key = live.key or (TRAIN_KEY if kind == "train" else EVAL_KEY)
        done = int(state.global_step or 0)
        scheduler, stride = _unwrap(lr_scheduler)
        live.start(kind=kind, scheduler=scheduler, T=state.max_steps, done=done,
                   where="ForecastCallback", T_name="max_steps", stride=stride)
        if done:  # resumed: the log history restored with the checkpoint holds the losses so far
            for row in state.log_history:
                if self._key in row and "step" in row and row["step"] <= done:
                    live.feed(paper_step("hf", kind, row["step"]), row[self._key])

    def on_log(self, args, state, control, logs=None, **kwargs):
        live = self._live
        if live.forecaster is None or not logs or self._key not in logs:
            return None
        value = logs[self._key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return None
        metrics = live.observe(paper_step("hf", live.kind, state.global_step), value)
        if metrics:
            logs.update(metrics)
            # the Trainer appended a copy of `logs` to the history just before on_log: keep
            # trainer_state.json complete too
            if state.log_history and state.log_history[-1].get("step") == state.global_step \
                    and state.log_history[-1].get(self._key) == value:
                state.log_history[-1].update(metrics)
        if live.should_stop:
            control.should_training_stop = True
        return control
