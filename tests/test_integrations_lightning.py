"""cdfast.integrations.lightning.ForecastCallback inside real Lightning Trainers.

A small regression network trained on CPU with a per-step ``CosineAnnealingLR`` and a
``CSVLogger``, the callback built with no arguments: finite forecasts reach the logger's
``metrics.csv`` and a callback placed after it, the schedule is the scheduler's, the
forecaster sees the logged losses at the steps ``cdfast.io`` reads them at.  Run under
both namespaces (``lightning.pytorch`` and ``pytorch_lightning``) when installed.
"""

from __future__ import annotations

import csv
import importlib
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason='torch not installed (pip install "cdfast[integrations]")')

NAMESPACES = []
for _ns in ("lightning.pytorch", "pytorch_lightning"):
    try:
        importlib.import_module(_ns)
        NAMESPACES.append(_ns)
    except ImportError:
        pass
if not NAMESPACES:
    pytest.skip('Lightning not installed (pip install "cdfast[integrations]")', allow_module_level=True)

import cdfast  # noqa: E402
from cdfast.integrations.lightning import ForecastCallback, TargetWarning  # noqa: E402

KEYS = ("predicted_final_loss", "predicted_final_loss_low", "predicted_final_loss_high")
T_RUN = 150
PEAK = 0.05


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only contend with each other on a shared machine
    yield
    torch.set_num_threads(n)


def _module(L, sched="cosine", log_train=True):
    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

        def training_step(self, batch, i):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            if log_train:
                self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, i):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=PEAK)
            if sched == "cosine":
                s = {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T_RUN), "interval": "step"}
            elif sched == "epoch":
                s = {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5), "interval": "epoch"}
            elif sched == "plateau":
                s = {"scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt), "monitor": "train_loss",
                     "interval": "step"}
            else:
                return opt
            return {"optimizer": opt, "lr_scheduler": s}

    return Net()


def _data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(4096, 8, generator=g)
    Y = (X @ torch.randn(8, 1, generator=g)).tanh() + 0.1 * torch.randn(4096, 1, generator=g)
    ds = torch.utils.data.TensorDataset(X, Y)
    train = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, generator=g)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X[:256], Y[:256]), batch_size=256)
    return train, val


def _recorder(L):
    class Recorder(L.Callback):
        """A callback placed after the forecaster: what it finds in callback_metrics."""

        def __init__(self):
            self.seen = []

        def _look(self, trainer):
            m = trainer.callback_metrics
            if KEYS[0] in m:
                self.seen.append((trainer.global_step, tuple(float(m[k]) for k in KEYS)))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self._look(trainer)

        def on_validation_epoch_end(self, trainer, pl_module):
            self._look(trainer)

    return Recorder()


def _fit(ns, tmp_path, fc, *, sched="cosine", val_every=None, max_steps=T_RUN, ckpt_path=None, extra=(), **kw):
    L = importlib.import_module(ns)
    CSVLogger = importlib.import_module(ns + ".loggers").CSVLogger
    rec = _recorder(L)
    train, val = _data()
    trainer = L.Trainer(max_steps=max_steps, logger=CSVLogger(str(tmp_path)), callbacks=[fc, rec, *extra],
                        log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, accelerator="cpu", num_sanity_val_steps=0,
                        val_check_interval=val_every, limit_val_batches=1 if val_every else 0, **kw)
    trainer.fit(_module(L, sched), train, val if val_every else None, ckpt_path=ckpt_path)
    rows = list(csv.DictReader(open(trainer.logger.log_dir + "/metrics.csv")))
    return trainer, rec, rows


def _column(rows, name):
    return {int(r["step"]): float(r[name]) for r in rows if r.get(name)}


@pytest.fixture(scope="module", params=NAMESPACES[:1])
def train_run(request, tmp_path_factory):
    fc = ForecastCallback()
    trainer, rec, rows = _fit(request.param, tmp_path_factory.mktemp("pl_train"), fc)
    return fc, trainer, rec, rows


def test_finite_forecasts_reach_the_logger_and_a_later_callback(train_run):
    fc, trainer, rec, rows = train_run
    ok = [f for f in fc.forecasts if f.ok]
    assert len(ok) >= 10
    logged = {s: v for s, v in _column(rows, KEYS[0]).items() if math.isfinite(v)}
    assert len(logged) == len(ok)  # a step without a forecast never repeats an earlier one
    for f in ok:  # the forecast from the loss of w_n is logged at Lightning's step n
        assert all(math.isfinite(v) for v in (f.low, f.loss, f.high)) and 0 < f.low <= f.loss <= f.high
        assert logged[f.step] == pytest.approx(f.loss, rel=1e-6)  # float32 tensors in the file
        assert _column(rows, KEYS[1])[f.step] == pytest.approx(f.low, rel=1e-6)
        assert _column(rows, KEYS[2])[f.step] == pytest.approx(f.high, rel=1e-6)
    # the later callback received each new forecast in the same batch (global_step = n + 1)
    fresh = {s: v for s, v in rec.seen}
    for f in ok:
        np.testing.assert_allclose(fresh[f.step + 1], (f.loss, f.low, f.high), rtol=1e-6)


def test_schedule_and_steps_are_the_trainers(train_run):
    fc, trainer, rec, rows = train_run
    k = np.arange(T_RUN)
    np.testing.assert_allclose(fc.lr, PEAK * 0.5 * (1 + np.cos(np.pi * k / T_RUN)), rtol=1e-9, atol=1e-15)
    # the forecaster saw train_loss logged at n as the loss of w_n (step 0, before training, dropped)
    train = _column(rows, "train_loss")
    fed = dict(fc._live.history)
    assert sorted(fed) == sorted(s for s in train if s >= 1)
    np.testing.assert_allclose([fed[s] for s in sorted(fed)], [train[s] for s in sorted(fed)], rtol=1e-6)
    # cdfast.io reads the CSV the same way
    log = cdfast.io.read_log(trainer.logger.log_dir + "/metrics.csv", loss="train_loss")
    assert log.steps.tolist() == sorted(fed)


@pytest.mark.parametrize("ns", NAMESPACES[::-1][:1])
def test_validation_loss_and_the_other_namespace(ns, tmp_path):
    fc = ForecastCallback(loss="eval")
    trainer, rec, rows = _fit(ns, tmp_path, fc, val_every=3)
    assert isinstance(fc, importlib.import_module(ns).Callback)
    val = _column(rows, "val_loss")
    fed = dict(fc._live.history)
    # validation logged at n follows update n + 1: the loss of w_{n+1}
    assert sorted(fed) == [s + 1 for s in sorted(val)]
    ok = [f for f in fc.forecasts if f.ok]
    assert ok and len(_column(rows, KEYS[0])) == len(ok)
    for f in ok:
        assert _column(rows, KEYS[0])[f.step - 1] == pytest.approx(f.loss, rel=1e-6)
    assert [v[0] for _, v in rec.seen][-1] == pytest.approx(ok[-1].loss, rel=1e-6)


def test_resumed_run_keeps_schedule_and_losses(tmp_path):
    ns = NAMESPACES[0]
    L = importlib.import_module(ns)

    class StopAt(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step >= 60:
                trainer.should_stop = True

    first = ForecastCallback()
    trainer, _, _ = _fit(ns, tmp_path / "a", first, extra=[StopAt()])
    ckpt = str(tmp_path / "at60.ckpt")
    trainer.save_checkpoint(ckpt)
    second = ForecastCallback()
    _fit(ns, tmp_path / "b", second, ckpt_path=ckpt)
    np.testing.assert_array_equal(second.lr, first.lr)
    fed = [s for s, _ in second._live.history]
    assert fed[:len(first._live.history)] == [s for s, _ in first._live.history]
    assert fed[-1] == T_RUN - 1 and second.forecast.ok


def test_gradient_accumulation(tmp_path):
    """Only batches that end with an update count; the loss fed is the one training_step logged."""
    fc = ForecastCallback()
    trainer, _, rows = _fit(NAMESPACES[0], tmp_path, fc, max_steps=40, accumulate_grad_batches=2)
    train = _column(rows, "train_loss")
    fed = dict(fc._live.history)
    assert sorted(fed) == sorted(s for s in train if s >= 1) and len(fed) == 39
    np.testing.assert_allclose([fed[s] for s in sorted(fed)], [train[s] for s in sorted(fed)], rtol=1e-6)


def test_target_stops_training(tmp_path):
    fc = ForecastCallback(target=1e-4, stop_above_target=True, patience=2)
    with pytest.warns(TargetWarning, match="wholly above the target 0.0001"):
        trainer, _, _ = _fit(NAMESPACES[0], tmp_path, fc)
    ok = [f for f in fc.forecasts if f.ok]
    assert len(ok) == 2 and trainer.global_step == ok[-1].step + 1 < T_RUN


def test_no_scheduler_is_a_constant_lr(tmp_path):
    fc = ForecastCallback()
    _fit(NAMESPACES[0], tmp_path, fc, sched=None, max_steps=30)
    np.testing.assert_array_equal(fc.lr, np.full(30, PEAK))


@pytest.mark.parametrize("sched, kw, err, match", [
    ("plateau", {}, TypeError, "lr_scheduler ReduceLROnPlateau cannot be stepped ahead"),
    ("epoch", {}, ValueError, "interval='epoch', frequency=1; the forecast needs the LR of every update"),
    ("cosine", dict(max_steps=-1, max_epochs=-1), ValueError, r"max_steps \(unset; estimated_stepping_batches\) = inf"),
])
def test_bad_input(tmp_path, sched, kw, err, match):
    kw.setdefault("max_steps", T_RUN)
    with pytest.raises(err, match=match):
        _fit(NAMESPACES[0], tmp_path, ForecastCallback(), sched=sched, **kw)


def test_bad_options():
    with pytest.raises(TypeError, match="prog_bar must be True or False"):
        ForecastCallback(prog_bar="yes")
    with pytest.raises(ValueError, match="every = 0 must be >= 1"):
        ForecastCallback(every=0)
