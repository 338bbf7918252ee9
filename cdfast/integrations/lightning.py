"""A Lightning ``Callback`` that forecasts the final loss while the run goes.

::

    from cdfast.integrations.lightning import ForecastCallback
    trainer = lightning.pytorch.Trainer(max_steps=10_000, callbacks=[ForecastCallback()])

Works under both of Lightning's namespaces: the class derives from ``lightning.pytorch``'s
``Callback`` and from ``pytorch_lightning``'s, whichever are installed, so either Trainer
accepts it.

At the start of training it reads the whole planned LR schedule from the Trainer's
scheduler (``cdfast.schedules.from_torch`` on a copy; ``T = max_steps``, else
``estimated_stepping_batches``; the scheduler must be stepped every update,
``interval="step"``; without a scheduler the optimizer's constant LR); at each logging step
(``log_every_n_steps``), or after each validation, it feeds the loss to a
:class:`cdfast.Forecaster` and logs ``predicted_final_loss`` and its ``_low``/``_high``
bounds with ``LightningModule.log``, so every logger and later callback receives them.

Indexing (``cdfast.io``'s table, docs/io.md): Lightning logs at ``step = n``, the number of
updates done before the batch; the training loss at ``n`` is on ``w_n``, a validation at
``n`` follows update ``n + 1`` and is on ``w_{n+1}``.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from ._common import EXTRA, LiveForecast, TargetWarning, paper_step
from ..io import EVAL_LOSS_NAMES, TRAIN_LOSS_NAMES, is_eval_name


def _bases() -> tuple[type, ...]:
    bases = []
    for mod in ("lightning.pytorch", "pytorch_lightning"):
        try:
            bases.append(importlib.import_module(mod).Callback)
        except ImportError:
            pass
    if not bases:
        raise ImportError(f"cdfast.integrations.lightning needs Lightning (lightning.pytorch or pytorch_lightning); "
                          f"install it with {EXTRA}")
    return tuple(bases)


__all__ = ["ForecastCallback", "TargetWarning"]


def _scalar(value: Any) -> float | None:
    """A loss as a float, from a float or a one-element tensor; None for anything else."""
    if value is None or isinstance(value, bool):
        return None
    if hasattr(value, "numel"):
        if value.numel() != 1:
            return None
        return float(value.detach().cpu().item())
    if isinstance(value, (int, float, np.floating, np.integer)):
        return float(value)
    return None


class ForecastCallback(*_bases()):  # type: ignore[misc]
    """Forecast the final loss of a Lightning run at its logging steps or validations.

    Parameters
    ----------
    loss : {"auto", "train", "eval"}
        Which loss to forecast: the training loss (the loss ``training_step`` returns, or
        the logged metric ``key``), or the validation loss (``key``, else the first of
        ``val_loss``, ``eval_loss``, ``val/loss``, ... in ``trainer.callback_metrics``).
        ``"auto"``: ``eval`` when ``key`` names a validation loss, else ``train``.
    key : str, optional
        The name of the logged loss in ``trainer.callback_metrics``.
    every : int
        Forecast at every ``every``-th loss fed (every logging step, or every validation).
    level : float
        Interval level, 0.9 for a 90% interval.
    target : float, optional
        The loss the run must reach: a :class:`TargetWarning` when a forecast's whole
        interval lies above it.
    stop_above_target : bool
        Stop training (``trainer.should_stop``) when ``patience`` forecasts in a row lie
        wholly above ``target``.
    patience : int
    lr : array_like, optional
        The whole planned LR sequence ``eta_1 .. eta_T``, instead of reading it from the
        scheduler.
    group : int
        The optimizer param group whose LR is read (0: the first).
    name : str
        Logged names: ``name``, ``name + "_low"``, ``name + "_high"``.
    prog_bar : bool
        Also show ``name`` in the progress bar.

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
                 lr: Any = None, group: int = 0, name: str = "predicted_final_loss", prog_bar: bool = False):
        super().__init__()
        self._live = LiveForecast(loss=loss, key=key, every=every, level=level, target=target,
                                  stop_above_target=stop_above_target, patience=patience, lr=lr, group=group,
                                  name=name)
        if not isinstance(prog_bar, bool):
            raise TypeError(f"prog_bar must be True or False, got {prog_bar!r}")
        self.prog_bar = prog_bar
        self._restored: list[tuple[int, float]] = []
        self._restored_lr: np.ndarray | None = None
        self._stepped = -1

    @property
    def forecast(self) -> Any:
        return self._live.forecast

    @property
    def forecasts(self) -> list[Any]:
        return self._live.forecasts

    @property
    def lr(self) -> Any:
        return self._live.lr

    # -- set-up ---------------------------------------------------------------------------------
    def _kind(self) -> str:
        live = self._live
        if live.loss != "auto":
            return live.loss
        return "eval" if live.key is not None and is_eval_name(live.key) else "train"

    @staticmethod
    def _horizon(trainer: Any) -> tuple[Any, str]:
        """T (max_steps, else estimated_stepping_batches) and the name to give it in errors."""
        if trainer.max_steps is not None and trainer.max_steps > 0:
            return trainer.max_steps, "max_steps"
        return trainer.estimated_stepping_batches, "max_steps (unset; estimated_stepping_batches)"

    def _planned(self, trainer: Any, done: int) -> dict[str, Any]:
        """Scheduler, T and its name for LiveForecast.start."""
        T, T_name = self._horizon(trainer)
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        configs = [c for c in trainer.lr_scheduler_configs
                   if optimizer is None or getattr(c.scheduler, "optimizer", None) is optimizer]
        if not configs:
            lr = None
            if optimizer is not None and self._live.group >= len(optimizer.param_groups):
                raise ValueError(f"group = {self._live.group} but the optimizer has {len(optimizer.param_groups)} "
                                 "param group(s); pass group= in range")
            if optimizer is not None and isinstance(T, (int, float)) and np.isfinite(T) and T >= 1:
                # no scheduler: the optimizer's LR is constant
                lr = np.full(int(T), float(optimizer.param_groups[self._live.group]["lr"]))
            return dict(scheduler=None, T=T, T_name=T_name, lr=lr)
        cfg = configs[0]
        if self._live.user_lr is None and (cfg.interval != "step" or cfg.frequency != 1):
            raise ValueError(f"ForecastCallback: the LR scheduler {type(cfg.scheduler).__name__} is stepped with "
                             f"interval={cfg.interval!r}, frequency={cfg.frequency}; the forecast needs the LR of "
                             "every update: return it from configure_optimizers with interval='step', "
                             "frequency=1, or pass lr=, the whole planned LR sequence")
        return dict(scheduler=cfg.scheduler, T=T, T_name=T_name)

    def on_train_start(self, trainer, pl_module):
        done = int(trainer.global_step)
        kind = self._kind()
        restored = self._restored_lr
        if done and restored is not None and self._live.user_lr is None and self._horizon(trainer)[0] == restored.size:
            # resumed from a checkpoint that holds this callback's state: the schedule read at the start
            planned = dict(scheduler=None, T=restored.size, T_name="max_steps", lr=restored)
        else:
            planned = self._planned(trainer, done)
        self._live.start(kind=kind, done=done, where="ForecastCallback", **planned)
        self._stepped = done
        for step, loss in self._restored:
            if step <= done + (1 if kind == "eval" else 0):
                self._live.feed(step, loss)
        self._restored, self._restored_lr = [], None

    def state_dict(self) -> dict[str, Any]:
        """The planned schedule and the losses fed so far: a resumed run forecasts as if never stopped."""
        lr = self._live.lr
        return {"history": [list(p) for p in self._live.history], "lr": None if lr is None else lr.tolist()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = [(int(s), float(v)) for s, v in state_dict.get("history", [])]
        lr = state_dict.get("lr")
        self._restored_lr = None if lr is None else np.asarray(lr, dtype=np.float64)

    # -- events ---------------------------------------------------------------------------------
    def _log(self, pl_module: Any, metrics: dict[str, float]) -> None:
        for i, (n, v) in enumerate(metrics.items()):
            pl_module.log(n, v, prog_bar=self.prog_bar and i == 0)

    def _after(self, trainer: Any, pl_module: Any, step: int, value: float | None) -> None:
        if value is None:
            return
        metrics = self._live.observe(step, value)
        if metrics:
            self._log(pl_module, metrics)
        elif self._live.forecast is not None and any(f.ok for f in self._live.forecasts):
            # Lightning reports a metric logged from a hook at every later logging step until the
            # epoch ends: a declined forecast must not show the last one again as if it were new.
            # NaN marks "no forecast at this step" (plotted as a gap by the loggers)
            self._log(pl_module, dict.fromkeys(self._live.names, float("nan")))
        if self._live.should_stop:
            trainer.should_stop = True

    def _train_loss(self, trainer: Any, pl_module: Any, outputs: Any) -> float | None:
        key = self._live.key
        if key is not None:
            return _scalar(trainer.callback_metrics.get(key))
        loss = None
        if isinstance(outputs, dict) and "loss" in outputs:
            loss = _scalar(outputs["loss"])
        elif outputs is not None and hasattr(outputs, "numel"):
            loss = _scalar(outputs)
        if loss is not None:
            # automatic optimization hands on the loss divided by accumulate_grad_batches (the
            # scaling of its backward pass): undo it, so the loss is the one training_step computed
            if getattr(pl_module, "automatic_optimization", False):
                loss *= int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
            return loss
        metrics = trainer.callback_metrics
        for n in ("train_loss_step",) + TRAIN_LOSS_NAMES:
            if n in metrics:
                return _scalar(metrics[n])
        return None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        live = self._live
        if live.forecaster is None or live.kind != "train":
            return
        g = int(trainer.global_step)
        if g == self._stepped:  # accumulating gradients: no update in this batch
            return
        self._stepped = g
        if trainer.log_every_n_steps <= 0 or g % trainer.log_every_n_steps:
            return  # the same steps Lightning logs at
        # logged at n = g - 1 (updates done before this batch)
        self._after(trainer, pl_module, paper_step("lightning", "train", g - 1), self._train_loss(trainer, pl_module, outputs))

    def on_validation_epoch_end(self, trainer, pl_module):
        live = self._live
        if live.forecaster is None or live.kind != "eval" or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        key = live.key or next((n for n in EVAL_LOSS_NAMES if n in metrics), None)
        if key is None:
            return
        # logged at n = global_step - 1, on w_{n+1}
        self._after(trainer, pl_module, paper_step("lightning", "eval", trainer.global_step - 1),
                    _scalar(metrics.get(key)))
