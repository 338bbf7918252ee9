"""Regenerate the real-trainer fixtures in tests/data/logs/ (not run by the tests).

    python tests/make_log_fixtures.py hf          # needs transformers, accelerate, torch
    python tests/make_log_fixtures.py lightning   # needs lightning, torch

Each writes the trainer's own log file and a truth file recorded inside the training
loop (the LR every update used, the weights each evaluation saw), so the tests check
cdfast.io's indexing against what the trainer did rather than against its docs.  The
committed files came from transformers 5.24 and Lightning 2.6.6.
"""

import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent / "data" / "logs"


def hf():
    os.chdir(HERE / "hf_run")
    import json, shutil, torch
    from transformers import Trainer, TrainingArguments, TrainerCallback
    import transformers
    torch.manual_seed(0)
    X = torch.randn(48, 3); Y = X @ torch.tensor([1., -2., .5]) + 0.1
    class DS(torch.utils.data.Dataset):
        def __len__(self): return 48
        def __getitem__(self, i): return {"x": X[i], "labels": Y[i]}
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__(); self.w = torch.nn.Linear(3, 1); self.updates = 0
        def forward(self, x, labels=None):
            loss = ((self.w(x).squeeze(-1) - labels) ** 2).mean()
            if not self.training:
                truth["eval_weights"].append(self.updates)
            return {"loss": loss}
    model = M()
    truth = {"transformers": transformers.__version__, "lr_of_update": [], "eval_weights": []}
    class CB(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, **kw):
            truth["lr_of_update"].append(optimizer.param_groups[0]["lr"])   # update state.global_step + 1
        def on_step_end(self, args, state, control, **kw):
            model.updates += 1
    args = TrainingArguments(output_dir="hf_out", per_device_train_batch_size=4, num_train_epochs=1, learning_rate=0.05,
        lr_scheduler_type="cosine", warmup_steps=3, logging_steps=2, eval_strategy="steps", eval_steps=3, save_steps=100,
        report_to=[], disable_tqdm=True, use_cpu=True, per_device_eval_batch_size=48, save_strategy="no")
    tr = Trainer(model=model, args=args, train_dataset=DS(), eval_dataset=DS(), callbacks=[CB()])
    tr.train()
    tr.state.save_to_json("trainer_state.json")
    json.dump(truth, open("hf_truth.json", "w"), indent=1)
    shutil.rmtree("hf_out", ignore_errors=True)


def lightning():
    os.chdir(HERE / "lightning_run")
    import json, torch, lightning as L
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.callbacks import LearningRateMonitor
    torch.manual_seed(0)
    X = torch.randn(48, 3); Y = X @ torch.tensor([1., -2., .5]) + 0.1
    truth = {"lightning": L.__version__, "lr_of_update": [], "train_loss_weights": {}, "val_weights": []}
    class M(L.LightningModule):
        def __init__(self):
            super().__init__(); self.w = torch.nn.Linear(3, 1); self.updates = 0
        def training_step(self, batch, i):
            x, y = batch
            loss = ((self.w(x).squeeze(-1) - y) ** 2).mean()
            truth["lr_of_update"].append(self.trainer.optimizers[0].param_groups[0]["lr"])
            truth["train_loss_weights"][repr(loss.item())] = self.updates
            self.log("train_loss", loss)
            return loss
        def on_train_batch_end(self, *a):
            self.updates += 1
        def validation_step(self, batch, i):
            x, y = batch
            truth["val_weights"].append(self.updates)
            self.log("val_loss", ((self.w(x).squeeze(-1) - y) ** 2).mean())
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
            return [opt], [{"scheduler": sch, "interval": "step"}]
    tl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=4)
    vl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=48)
    tr = L.Trainer(max_epochs=1, logger=CSVLogger("lt_logs", name="run"), callbacks=[LearningRateMonitor(logging_interval="step")],
                   log_every_n_steps=2, val_check_interval=3, enable_progress_bar=False, enable_checkpointing=False,
                   num_sanity_val_steps=0, enable_model_summary=False)
    tr.fit(M(), tl, vl)
    json.dump(truth, open("lt_truth.json", "w"), indent=1)

    import shutil

    shutil.copy("lt_logs/run/version_0/metrics.csv", "metrics.csv")
    shutil.rmtree("lt_logs")


if __name__ == "__main__":
    {"hf": hf, "lightning": lightning}[sys.argv[1]]()
