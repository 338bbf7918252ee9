"""cdfast.integrations.hf.ForecastCallback inside a real transformers.Trainer, and its hooks alone.

The Trainer test trains a tiny GPT-2 (two layers, width 16) on CPU with a cosine schedule
with warmup, the callback built with no arguments and a TensorBoard writer from
``report_to``; it checks that finite forecasts reach the integration (the event file),
a callback placed after it and ``trainer_state``'s log history, and that the schedule and
the steps the forecaster saw are those the Trainer used and logged.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import cdfast
from cdfast import schedules

try:
    import accelerate  # noqa: F401  (the Trainer needs it)
    import torch
    import transformers
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback

    from cdfast.integrations.hf import ForecastCallback, TargetWarning
    MISSING = None
except ImportError as e:
    MISSING = f'{e.name} not installed (pip install "cdfast[integrations]")'
    TrainerCallback = object  # type: ignore[misc,assignment]  (so the helper classes below can be defined)

needs_hf = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))

KEYS = ("predicted_final_loss", "predicted_final_loss_low", "predicted_final_loss_high")
T_RUN = 100


class Recorder(TrainerCallback):
    """A user callback placed after the forecaster: what it receives in on_log."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append((state.global_step, dict(logs)))


@pytest.fixture(scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: threads only contend with each other on a shared machine
    yield
    torch.set_num_threads(n)


def _tiny_gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def _arithmetic(n, seed=0):
    """Structured tokens: arithmetic sequences mod 32 (learnable, so the loss falls)."""
    rng = np.random.default_rng(seed)
    start, stride = rng.integers(0, 32, n), rng.integers(1, 4, n)
    x = torch.tensor((start[:, None] + stride[:, None] * np.arange(16)[None]) % 32)

    class Arithmetic(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return {"input_ids": x[i], "labels": x[i]}

    return Arithmetic()


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("hf_run")
    report = ["tensorboard"]
    args = TrainingArguments(output_dir=str(out), max_steps=T_RUN, per_device_train_batch_size=8, learning_rate=3e-3,
                             lr_scheduler_type="cosine", warmup_steps=10, logging_steps=1, report_to=report,
                             use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0, dataloader_num_workers=0)
    fc, rec = ForecastCallback(), Recorder()
    trainer = transformers.Trainer(model=_tiny_gpt2(), args=args, train_dataset=_arithmetic(8 * T_RUN),
                                   callbacks=[fc, rec])
    order_after_init = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    trainer.train()
    return dict(out=out, fc=fc, rec=rec, trainer=trainer, order=order_after_init)


@needs_hf
def test_it_runs_first_so_the_integrations_see_its_keys(run):
    names = run["order"]
    assert names[0] == "ForecastCallback"
    assert names.index("TensorBoardCallback") > 0 and names.index("Recorder") > 0
    assert run["fc"].first


@needs_hf
def test_finite_forecasts_reach_a_later_callback(run):
    got = [(s, logs) for s, logs in run["rec"].logs if KEYS[0] in logs]
    assert len(got) >= 10, "the forecaster should forecast over the second half of a 100-step run logged every step"
    for s, logs in got:
        lo, mid, hi = logs[KEYS[1]], logs[KEYS[0]], logs[KEYS[2]]
        assert all(math.isfinite(v) for v in (lo, mid, hi))
        assert 0 < lo <= mid <= hi
    # every forecast logged is the callback's own, at the step it was made from (loss at s is on w_{s-1})
    ok = [f for f in run["fc"].forecasts if f.ok]
    assert [f.loss for f in ok] == [logs[KEYS[0]] for _, logs in got]
    assert [f.step for f in ok] == [s - 1 for s, _ in got]
    # declined forecasts log nothing numeric
    assert all(KEYS[0] not in logs for s, logs in run["rec"].logs if "loss" in logs and not any(
        f.ok and f.step == s - 1 for f in ok))


@needs_hf
def test_the_integration_from_report_to_records_them(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(run["out"].rglob("events.out.tfevents.*"))
    assert files, "report_to=['tensorboard'] wrote no event file"
    acc = EventAccumulator(str(files[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for key in KEYS:
        assert f"train/{key}" in tags, tags
    logged = {e.step: e.value for e in acc.Scalars(f"train/{KEYS[0]}")}
    sent = {s: logs[KEYS[0]] for s, logs in run["rec"].logs if KEYS[0] in logs}
    assert logged.keys() == sent.keys()
    np.testing.assert_allclose([logged[s] for s in sent], list(sent.values()), rtol=1e-6)  # float32 in the file


@needs_hf
def test_trainer_state_history_holds_them(run):
    hist = [r for r in run["trainer"].state.log_history if KEYS[0] in r]
    assert len(hist) == sum(KEYS[0] in logs for _, logs in run["rec"].logs)
    # and cdfast reads the saved log like any other column
    assert all(r["step"] >= 2 for r in hist)


@needs_hf
def test_schedule_and_steps_are_the_trainers(run):
    fc, trainer = run["fc"], run["trainer"]
    # the LR the Trainer logged at step s is that of update s (transformers >= 4.51)
    logged = {r["step"]: r["learning_rate"] for r in trainer.state.log_history if "learning_rate" in r}
    steps = np.array(sorted(logged))
    np.testing.assert_allclose(fc.lr[steps - 1], [logged[s] for s in steps], rtol=1e-12, atol=0)
    # warmup 10 steps from 0, then cosine to 0: transformers' formula, written out
    k = np.arange(T_RUN)
    expected = np.where(k < 10, k / 10, 0.5 * (1 + np.cos(np.pi * (k - 10) / (T_RUN - 10)))) * 3e-3
    np.testing.assert_allclose(fc.lr, expected, rtol=1e-12, atol=1e-18)
    # the forecaster saw every logged training loss at s - 1 (s = 1 is on w_0 and dropped)
    losses = {r["step"]: r["loss"] for r in trainer.state.log_history if "loss" in r}
    fed = fc._live.history
    assert [s for s, _ in fed] == [s - 1 for s in sorted(losses) if s >= 2]
    assert [v for _, v in fed] == [losses[s + 1] for s, _ in fed]


# ---------------------------------------------------------------------------------------------
# the hooks alone, on a synthetic run (no training)


def _hooks(tmp_path, T=200, sched="cosine", **options):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    state = TrainerState(max_steps=T)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    if sched == "cosine":
        scheduler = transformers.get_cosine_schedule_with_warmup(opt, 10, T)
    elif sched == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    else:
        scheduler = sched(opt)
    return ForecastCallback(**options), args, state, TrainerControl(), scheduler


def _synthetic(lr, seed=1):
    """A falling, noisy training curve (1% noise) shaped by the schedule."""
    P = np.cumsum(lr)
    rng = np.random.default_rng(seed)
    clean = 2.0 + 0.3 / np.sqrt(P / P[-1] + 0.01) + 0.2 * lr / lr.max()
    return clean * (1 + 0.01 * rng.standard_normal(lr.size))


def _play(cb, args, state, control, losses, start=1, key="loss"):
    out = []
    for s in range(start, len(losses) + 1):
        state.global_step = s
        logs = {key: float(losses[s - 1])}
        state.log_history.append({**logs, "step": s})
        control = cb.on_log(args, state, control, logs=logs) or control
        out.append(logs)
    return out, control


@needs_hf
def test_target_warning_and_early_stop(tmp_path):
    cb, args, state, control, sched = _hooks(tmp_path, target=1.0, stop_above_target=True, patience=3,
                                                  every=5)
    cb.on_train_begin(args, state, control, lr_scheduler=sched)
    losses = _synthetic(cb.lr)
    with pytest.warns(TargetWarning, match="wholly above the target 1"):
        logs, control = _play(cb, args, state, control, losses)
    ok = [f for f in cb.forecasts if f.ok]
    assert ok and all(f.low > 1.0 for f in ok)
    assert control.should_training_stop
    # a reachable target: no warning, no stop
    cb, args, state, control, sched = _hooks(tmp_path, target=10.0, stop_above_target=True, every=5)
    cb.on_train_begin(args, state, control, lr_scheduler=sched)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TargetWarning)
        logs, control = _play(cb, args, state, control, losses)
    assert not control.should_training_stop
    assert any(KEYS[0] in lg for lg in logs)


@needs_hf
def test_every_n_logging_events(tmp_path):
    cb, args, state, control, sched = _hooks(tmp_path, every=4)
    cb.on_train_begin(args, state, control, lr_scheduler=sched)
    _play(cb, args, state, control, _synthetic(cb.lr))
    fed = cb._live.history
    assert len(fed) == 199 and len(cb.forecasts) == math.ceil(199 / 4)
    assert [f.step for f in cb.forecasts] == [s for s, _ in fed][::4]


@needs_hf
def test_eval_loss_is_on_the_logged_step(tmp_path):
    cb, args, state, control, sched = _hooks(tmp_path, loss="eval", every=5)
    cb.on_train_begin(args, state, control, lr_scheduler=sched)
    losses = _synthetic(cb.lr)
    _play(cb, args, state, control, losses, key="eval_loss")
    assert cb._live.history[0] == (1, losses[0]) and cb._live.history[-1][0] == 200
    assert cb.forecast.ok


@needs_hf
def test_divergence_logs_no_number(tmp_path):
    cb, args, state, control, sched = _hooks(tmp_path)
    cb.on_train_begin(args, state, control, lr_scheduler=sched)
    losses = _synthetic(cb.lr)
    losses[120:] = np.nan
    logs, _ = _play(cb, args, state, control, losses)
    assert any(KEYS[0] in lg for lg in logs[:120])
    assert all(KEYS[0] not in lg for lg in logs[121:])
    assert not cb.forecast.ok and "diverge" in cb.forecast.reason


@needs_hf
def test_resumed_run_recovers_the_whole_schedule_and_its_losses(tmp_path):
    cb, args, state, control, sched = _hooks(tmp_path)
    full = schedules.from_torch(sched, 200)
    losses = _synthetic(full)
    for s in range(1, 81):  # a run checkpointed after 80 updates
        sched.optimizer.step()
        sched.step()
        state.log_history.append({"loss": float(losses[s - 1]), "step": s})
    state.global_step = 80
    cb.on_train_begin(args, state, control, lr_scheduler=sched)
    np.testing.assert_allclose(cb.lr, full, rtol=1e-13, atol=0)
    assert [s for s, _ in cb._live.history] == list(range(1, 80))
    _play(cb, args, state, control, losses, start=81)
    assert cb.forecast.ok


@needs_hf
@pytest.mark.parametrize("done", [0, 37])
def test_a_scheduler_stepped_several_times_per_update(done):
    """accelerate's wrapper steps the scheduler once per process per update: LRs of the real loop."""
    from cdfast.integrations._common import planned_lr

    def make():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        return opt, transformers.get_cosine_schedule_with_warmup(opt, 20, 3 * 120)

    opt, sched = make()
    used = []
    for _ in range(120):  # the loop as it runs on 3 processes
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        for _ in range(3):
            sched.step()
    opt, sched = make()
    for _ in range(3 * done):
        opt.step()
        sched.step()
    lr = planned_lr(sched, 120, done=done, group=0, where="test", T_name="max_steps", stride=3)
    np.testing.assert_allclose(lr, used, rtol=1e-13, atol=0)


@needs_hf
def test_accelerate_wrapper_is_unwrapped(tmp_path):
    from accelerate.scheduler import AcceleratedScheduler
    from accelerate.state import PartialState

    from cdfast.integrations.hf import _unwrap

    cb, args, state, control, sched = _hooks(tmp_path)
    full = schedules.from_torch(sched, 200)
    wrapped = AcceleratedScheduler(sched, sched.optimizer, step_with_optimizer=True, split_batches=False)
    assert _unwrap(wrapped) == (sched, PartialState().num_processes) and _unwrap(sched) == (sched, 1)
    cb.on_train_begin(args, state, control, lr_scheduler=wrapped)
    np.testing.assert_array_equal(cb.lr, full)


@needs_hf
def test_bad_input(tmp_path):
    cb, args, state, control, sched = _hooks(tmp_path, sched="plateau")
    with pytest.raises(TypeError, match="lr_scheduler ReduceLROnPlateau cannot be stepped ahead"):
        cb.on_train_begin(args, state, control, lr_scheduler=sched)
    cb, args, state, control, sched = _hooks(tmp_path, T=0)
    with pytest.raises(ValueError, match="max_steps = 0"):
        cb.on_train_begin(args, state, control, lr_scheduler=sched)
    cb, args, state, control, sched = _hooks(tmp_path, lr=np.full(50, 1e-3))
    with pytest.raises(ValueError, match="lr has 50 values but the trainer's max_steps = 200"):
        cb.on_train_begin(args, state, control, lr_scheduler=sched)
    cb, args, state, control, sched = _hooks(tmp_path, sched=lambda o: torch.optim.lr_scheduler.StepLR(o, 10))
    state.global_step = 30
    with pytest.raises(ValueError, match="LRs of updates 1..30 cannot be recovered from a StepLR; pass lr="):
        cb.on_train_begin(args, state, control, lr_scheduler=sched)
    # a loss logged beyond the planned horizon (the schedule is shorter than the run)
    cb, args, state, control, sched = _hooks(tmp_path, T=200)
    cb.on_train_begin(args, state, control, lr_scheduler=sched)
    state.global_step = 202
    with pytest.raises(ValueError, match="step 201 but the planned schedule has only T = 200"):
        cb.on_log(args, state, control, logs={"loss": 2.0})


@needs_hf
@pytest.mark.parametrize("options, err, match", [
    (dict(loss="val"), ValueError, "loss = 'val' must be one of"),
    (dict(every=0), ValueError, "every = 0 must be >= 1"),
    (dict(level=1.5), ValueError, "level = 1.5 must lie in"),
    (dict(stop_above_target=True), ValueError, "stop_above_target=True needs target="),
    (dict(target=float("nan")), ValueError, "target = nan is not finite"),
    (dict(lr=[1e-3, float("nan")]), ValueError, r"lr\[1\] is nan"),
    (dict(key=""), TypeError, "key must be"),
])
def test_bad_options(options, err, match):
    with pytest.raises(err, match=match):
        ForecastCallback(**options)


@needs_hf
def test_moves_itself_to_the_front_once_each(tmp_path):
    """Moving during the handler's own loop calls every callback exactly once."""
    calls = []

    class Spy(TrainerCallback):
        def on_init_end(self, args, state, control, **kwargs):
            calls.append(type(self).__name__)

    class A(Spy):
        pass

    class B(Spy):
        pass

    fc = ForecastCallback()
    handler = CallbackHandler([DefaultFlowCallback, A(), fc, B()], None, None, None, None)
    handler.on_init_end(TrainingArguments(output_dir=str(tmp_path), report_to="none"), TrainerState(),
                        TrainerControl())
    assert [type(c).__name__ for c in handler.callbacks] == ["ForecastCallback", "DefaultFlowCallback", "A", "B"]
    assert calls == ["A", "B"] and fc.first


def test_import_cdfast_imports_no_framework_and_missing_ones_name_the_extra():
    """Runs without any framework installed: one interpreter, the frameworks hidden after the first check."""
    code = (
        "import sys, cdfast, cdfast.integrations\n"
        "bad = [m for m in ('torch', 'transformers', 'lightning', 'pytorch_lightning') if m in sys.modules]\n"
        "print('imported:', bad)\n"
        "for m in ('transformers', 'lightning', 'pytorch_lightning'): sys.modules[m] = None\n"
        "for mod in ('hf', 'lightning'):\n"
        "    try:\n"
        "        __import__('cdfast.integrations.' + mod)\n"
        "    except ImportError as e:\n"
        "        print(mod, 'refused:', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "imported: []", r.stdout
    extra = 'pip install "cdfast[integrations]"'
    assert lines[1].startswith("hf refused: cdfast.integrations.hf needs transformers") and extra in lines[1]
    assert lines[2].startswith("lightning refused: cdfast.integrations.lightning needs Lightning") and extra in lines[2]
