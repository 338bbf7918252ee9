"""Overhead of the training callbacks (cdfast.integrations): time per logging event, share of a step.

    python bench/bench_callbacks.py            # prints the tables (about a minute on one core)
    python bench/bench_callbacks.py --quick    # fewer steps

Three measurements, all as ratios measured in the same process (the machine is shared):

1. **Inside a real transformers.Trainer**: a tiny GPT-2 (4 layers, width 64, sequences of
   64 tokens, batch 8) on one CPU thread, cosine schedule with warmup, the callback built
   with no arguments, the loss logged at *every* step (the worst case: a forecast per
   step).  The callback's ``on_log`` is timed around the call, a training step from
   ``on_step_begin`` to ``on_step_end``.
2. **Inside a real Lightning Trainer**: the same for ``on_train_batch_end`` on a small MLP
   (whose steps are far cheaper than any real model's, so its share is an upper bound).
3. **A long run**: the HF callback's ``on_log`` on a 25 000-step cosine schedule with the
   loss logged every 50 steps (synthetic noisy losses; no training), against the step
   time measured in 1: the share of training time the callback would take in such a run.

No timing is asserted: the numbers are printed.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings

import numpy as np


def _stats(ms):
    ms = np.asarray(ms)
    return dict(n=ms.size, median=float(np.median(ms)), p90=float(np.percentile(ms, 90)), max=float(ms.max()),
                total=float(ms.sum()))


def hf_trainer(steps: int) -> dict:
    import torch
    import transformers
    from transformers import TrainerCallback

    from cdfast.integrations.hf import ForecastCallback

    class Timed(ForecastCallback):
        def __init__(self):
            super().__init__()
            self.ms = []

        def on_log(self, *a, **k):
            t = time.perf_counter()
            out = super().on_log(*a, **k)
            self.ms.append(1e3 * (time.perf_counter() - t))
            return out

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ms, self.t = [], None

        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.ms.append(1e3 * (time.perf_counter() - self.t))

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=128, n_positions=64, n_embd=64, n_layer=4, n_head=4,
                                  bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg)
    rng = np.random.default_rng(0)
    n = 8 * steps
    start, stride = rng.integers(0, 128, n), rng.integers(1, 5, n)
    x = torch.tensor((start[:, None] + stride[:, None] * np.arange(64)[None]) % 128)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return {"input_ids": x[i], "labels": x[i]}

    out = tempfile.mkdtemp()
    args = transformers.TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=8,
                                          learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=steps // 20,
                                          logging_steps=1, report_to="none", use_cpu=True, save_strategy="no",
                                          disable_tqdm=True, seed=0, dataloader_num_workers=0)
    fc, clock = Timed(), StepClock()
    trainer = transformers.Trainer(model=model, args=args, train_dataset=DS(), callbacks=[fc, clock])
    t = time.perf_counter()
    trainer.train()
    wall = 1e3 * (time.perf_counter() - t)
    return dict(event=_stats(fc.ms), step=_stats(clock.ms), wall=wall,
                forecasts=sum(f.ok for f in fc.forecasts), events=len(fc.ms))


def lightning_trainer(steps: int) -> dict:
    import torch
    import lightning.pytorch as L

    from cdfast.integrations.lightning import ForecastCallback

    class Timed(ForecastCallback):
        def __init__(self):
            super().__init__()
            self.ms = []

        def on_train_batch_end(self, *a, **k):
            t = time.perf_counter()
            super().on_train_batch_end(*a, **k)
            self.ms.append(1e3 * (time.perf_counter() - t))

    class StepClock(L.Callback):
        def __init__(self):
            self.ms, self.t = [], None

        def on_train_batch_start(self, *a, **k):
            self.t = time.perf_counter()

        def on_train_batch_end(self, *a, **k):
            self.ms.append(1e3 * (time.perf_counter() - self.t))

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.Tanh(), torch.nn.Linear(256, 256),
                                           torch.nn.Tanh(), torch.nn.Linear(256, 1))

        def training_step(self, batch, i):
            xb, yb = batch
            loss = torch.nn.functional.mse_loss(self.net(xb), yb)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.05)
            return {"optimizer": opt, "lr_scheduler": {
                "scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps), "interval": "step"}}

    torch.manual_seed(0)
    X = torch.randn(64 * steps, 32)
    Y = (X @ torch.randn(32, 1)).tanh() + 0.1 * torch.randn(64 * steps, 1)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=64, shuffle=True)
    fc, clock = Timed(), StepClock()
    trainer = L.Trainer(max_steps=steps, logger=False, callbacks=[clock, fc], log_every_n_steps=1,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        accelerator="cpu")
    trainer.fit(Net(), dl)
    # clock.on_train_batch_end runs before fc's: its time is the step without the callback
    return dict(event=_stats(fc.ms), step=_stats(clock.ms), forecasts=sum(f.ok for f in fc.forecasts),
                events=len(fc.ms))


def long_run(T: int = 25_000, every: int = 50) -> dict:
    """The HF callback's on_log over a long run, without training (synthetic noisy losses)."""
    import torch
    import transformers
    from transformers import TrainerControl, TrainerState

    from cdfast.integrations.hf import ForecastCallback

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = transformers.get_cosine_schedule_with_warmup(opt, 300, T)
    args = transformers.TrainingArguments(output_dir=tempfile.mkdtemp(), report_to="none", use_cpu=True)
    state, control = TrainerState(max_steps=T), TrainerControl()
    cb = ForecastCallback()
    t = time.perf_counter()
    cb.on_train_begin(args, state, control, lr_scheduler=sched)
    begin = 1e3 * (time.perf_counter() - t)
    lr = cb.lr
    P = np.cumsum(lr)
    rng = np.random.default_rng(0)
    ms = []
    for s in range(every, T + 1, every):
        loss = (2.6 + 0.4 / np.sqrt(P[s - 1] / P[-1] + 0.01) + 60 * lr[s - 1]) * (1 + 0.02 * rng.standard_normal())
        state.global_step = s
        logs = {"loss": float(loss)}
        state.log_history.append({**logs, "step": s})
        t = time.perf_counter()
        cb.on_log(args, state, control, logs=logs)
        ms.append(1e3 * (time.perf_counter() - t))
    return dict(event=_stats(ms), begin=begin, forecasts=sum(f.ok for f in cb.forecasts), events=len(ms))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer training steps")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    transformers_logging = logging.getLogger("transformers")
    transformers_logging.setLevel(logging.ERROR)
    steps = 150 if a.quick else 300

    hf = hf_trainer(steps)
    pl = lightning_trainer(steps)
    lr = long_run()

    def row(name, r, step_ms, log_every):
        e = r["event"]
        share = e["median"] / (log_every * step_ms)
        print(f"| {name} | {r['events']} | {r['forecasts']} | {e['median']:.2f} | {e['p90']:.2f} | {e['max']:.1f} | "
              f"{step_ms:.1f} | {log_every} | {share:.1%} |")

    print("Callback overhead (one CPU thread; ms; share = median event / (steps per log x median step))\n")
    print("| where | logging events | forecasts | event median ms | p90 | max | step median ms | steps per log "
          "| share of training |")
    print("|---|---|---|---|---|---|---|---|---|")
    hf_step = hf["step"]["median"]
    row(f"HF Trainer, tiny GPT-2, {steps} steps", hf, hf_step, 1)
    row(f"Lightning, MLP, {steps} steps", pl, pl["step"]["median"], 1)
    row("HF callback, 25k-step run (steps of the GPT-2 above)", lr, hf_step, 50)
    print()
    print(f"HF run: callback total {hf['event']['total']:.0f} ms of {hf['wall']:.0f} ms of training "
          f"({hf['event']['total'] / hf['wall']:.1%}), logging every step")
    print(f"At the frameworks' default logging intervals: HF Trainer (logging_steps=500) "
          f"{hf['event']['median'] / (500 * hf_step):.2%} of training, Lightning (log_every_n_steps=50) "
          f"{pl['event']['median'] / (50 * pl['step']['median']):.2%} (median event / (interval x median step))")
    print(f"25k-step run: reading the schedule at on_train_begin {lr['begin']:.0f} ms (once); all "
          f"{lr['events']} logging events {lr['event']['total']:.0f} ms in total")


def test_bench_callbacks_quick():
    """The benchmark runs (no timing asserted): `python -m pytest bench/bench_callbacks.py`."""
    import pytest

    pytest.importorskip("transformers")
    pytest.importorskip("lightning")
    main(["--quick"])


if __name__ == "__main__":
    main()
