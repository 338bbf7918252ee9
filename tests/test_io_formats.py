"""cdfast.io.read_log on every supported format, written by the real writer where one exists.

Each fixture is written from known values (a loss L(s) and an LR eta_s chosen per step so
that any off-by-one shows), read back, and compared with what was written, shifted by the
documented convention of its trainer.  tests/data/logs/ holds logs written by real
trainers (transformers 5.24, Lightning 2.6.6) with the truth recorded inside their
training loops (tests/make_log_fixtures.py).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import cdfast
from cdfast.io import TrainingLog, detect_format, read_log

LOGS = pathlib.Path(__file__).resolve().parent / "data" / "logs"
T = 60


def eta(s):
    """eta_s, the LR of update s (s = 1..T): distinct at every step."""
    return 1e-3 * (1.0 + 0.5 * np.cos(np.asarray(s, dtype=float) / 7.0)) / (1.0 + np.asarray(s) / T)


def L(t):
    """A loss of w_t, distinct at every t."""
    return 3.0 + 2.0 / np.sqrt(np.asarray(t, dtype=float) + 1.0)


# ---------------------------------------------------------------------------
# real trainers


def test_hf_trainer_state_from_a_real_trainer():
    path = LOGS / "hf_run" / "trainer_state.json"
    truth = json.loads((LOGS / "hf_run" / "hf_truth.json").read_text())
    state = json.loads(path.read_text())
    log = read_log(path)
    assert log.format == "hf-trainer-state" and log.meta["trainer"] == "hf"
    assert log.loss_name == "eval_loss" and log.T == state["max_steps"] == len(truth["lr_of_update"])
    evals = [r for r in state["log_history"] if "eval_loss" in r]
    np.testing.assert_array_equal(log.steps, truth["eval_weights"])  # eval at step s is on w_s
    np.testing.assert_array_equal(log.loss, [r["eval_loss"] for r in evals])
    # learning_rate at step s is the LR update s used (transformers >= 4.51): exact at logged steps
    lr_rows = [r for r in state["log_history"] if "learning_rate" in r]
    for r in lr_rows:
        assert log.lr[r["step"] - 1] == truth["lr_of_update"][r["step"] - 1]
    assert log.lr_source == "logged (interpolated)"
    # gradient norms belong to the update of their step
    np.testing.assert_array_equal(log.grad_norm_steps, [r["step"] for r in lr_rows])
    # the train loss (window mean, last batch on w_{s-1}) sits one step back
    train = read_log(path, loss="loss")
    np.testing.assert_array_equal(train.steps, [r["step"] - 1 for r in lr_rows])
    # the folder works too
    assert read_log(LOGS / "hf_run").steps.tolist() == log.steps.tolist()


def test_hf_trainer_state_written_by_transformers(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    rows = [{"step": s, "loss": float(L(s - 1)), "learning_rate": float(eta(s)), "grad_norm": 1.0 + s, "epoch": s / T}
            for s in range(1, T + 1)]
    rows += [{"step": s, "eval_loss": float(L(s)), "epoch": s / T} for s in range(10, T + 1, 10)]
    state = transformers.TrainerState(max_steps=T, global_step=T, log_history=rows)
    state.save_to_json(str(tmp_path / "trainer_state.json"))
    log = read_log(tmp_path / "trainer_state.json")
    np.testing.assert_array_equal(log.lr, eta(np.arange(1, T + 1)))
    assert log.lr_source == "logged"


def test_lightning_metrics_csv_from_a_real_trainer():
    path = LOGS / "lightning_run" / "metrics.csv"
    truth = json.loads((LOGS / "lightning_run" / "lt_truth.json").read_text())
    log = read_log(path)
    assert log.format == "lightning-csv" and log.meta["trainer"] == "lightning"
    assert log.loss_name == "val_loss"
    np.testing.assert_array_equal(log.steps, truth["val_weights"])  # validation at n follows update n + 1
    train = read_log(LOGS / "lightning_run", loss="train_loss")
    want = sorted(truth["train_loss_weights"][repr(float(v))] for v in train.loss)
    np.testing.assert_array_equal(train.steps, want)  # a training-step metric at n is on w_n
    assert train.steps.tolist() == [1, 3, 5, 7, 9, 11]
    # lr-SGD at n is the LR of update n + 1; the horizon covers the last logged LR
    rows = [ln.split(",") for ln in path.read_text().splitlines()[1:]]
    for r in rows:
        if r[1]:
            n = int(r[2])
            assert log.lr[n] == float(r[1]) == truth["lr_of_update"][n]
    assert log.T == len(truth["lr_of_update"])


# ---------------------------------------------------------------------------
# TensorBoard


def _tb_write(writer_cls, folder, tags, every=3):
    w = writer_cls(str(folder))
    for s in range(1, T + 1):
        w.add_scalar(tags["loss"], float(L(s)), s)
        if s % every == 0 or s == 1:
            w.add_scalar(tags["lr"], float(eta(s)), s)
        w.add_scalar("grad_norm", 2.0 + s, s)
    w.close()


@pytest.mark.parametrize("writer", ["tensorboardX", "torch"])
def test_tensorboard_generic(tmp_path, writer):
    pytest.importorskip("tensorboard", reason='reading TensorBoard needs tensorboard (cdfast[io])')
    if writer == "tensorboardX":
        SummaryWriter = pytest.importorskip("tensorboardX", reason="tensorboardX not installed").SummaryWriter
    else:
        SummaryWriter = pytest.importorskip("torch.utils.tensorboard", reason="torch not installed").SummaryWriter
    _tb_write(SummaryWriter, tmp_path / "run", {"loss": "loss", "lr": "lr"})
    event_file = next((tmp_path / "run").glob("events.out.tfevents.*"))
    assert detect_format(event_file) == "tensorboard" and detect_format(tmp_path) == "tensorboard"
    for path in (tmp_path, tmp_path / "run", event_file):
        log = read_log(path)
        assert log.format == "tensorboard" and log.meta["trainer"] == "generic" and log.T == T
        np.testing.assert_array_equal(log.steps, np.arange(1, T + 1))
        np.testing.assert_allclose(log.loss, L(np.arange(1, T + 1)), rtol=1e-7)  # float32 storage
        logged = np.r_[1, np.arange(3, T + 1, 3)]
        np.testing.assert_allclose(log.lr[logged - 1], eta(logged), rtol=1e-7)  # generic: eta_s at step s
        mid = 4  # eta_5 lies between the logged eta_3 and eta_6: linear interpolation
        np.testing.assert_allclose(log.lr[mid], (log.lr[2] + 2 * log.lr[5]) / 3, rtol=1e-12)
        assert log.lr_source == "logged (interpolated)"
        np.testing.assert_allclose(log.grad_sq(), (2.0 + np.arange(1, T + 1)) ** 2, rtol=1e-6)


def test_tensorboard_hf_tags_and_resumed_run(tmp_path):
    pytest.importorskip("tensorboard", reason='reading TensorBoard needs tensorboard (cdfast[io])')
    SummaryWriter = pytest.importorskip("tensorboardX", reason="tensorboardX not installed").SummaryWriter
    w = SummaryWriter(str(tmp_path), filename_suffix=".a")
    for s in range(1, 41):  # first run, crashed after step 40; its eval at 40 is stale
        w.add_scalar("train/learning_rate", float(eta(s)), s)
        if s % 10 == 0:
            w.add_scalar("eval/loss", 99.0, s)
    w.close()
    w = SummaryWriter(str(tmp_path), filename_suffix=".b")
    for s in range(31, T + 1):  # resumed from the checkpoint at 30
        w.add_scalar("train/learning_rate", float(eta(s)), s)
        w.add_scalar("train/loss", float(L(s - 1)), s)
        if s % 10 == 0:
            w.add_scalar("eval/loss", float(L(s)), s)
    w.close()
    log = read_log(tmp_path)
    assert log.meta["trainer"] == "hf" and log.loss_name == "eval/loss"
    assert log.steps.tolist()[-3:] == [40, 50, 60] and log.loss[-3] == pytest.approx(float(L(40)), rel=1e-7)
    np.testing.assert_allclose(log.lr, eta(np.arange(1, T + 1)), rtol=1e-7)
    assert log.lr_source == "logged"


def test_tensorboard_several_runs_and_missing_package(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason='reading TensorBoard needs tensorboard (cdfast[io])')
    SummaryWriter = pytest.importorskip("tensorboardX", reason="tensorboardX not installed").SummaryWriter
    for name in ("a", "b"):
        _tb_write(SummaryWriter, tmp_path / name, {"loss": "loss", "lr": "lr"})
    with pytest.raises(ValueError, match=r"2 runs.*'a'.*'b'"):
        read_log(tmp_path)
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ImportError, match=r"cdfast\[io\]"):
        read_log(tmp_path / "a")


# ---------------------------------------------------------------------------
# Weights & Biases


def _hf_rows(version=None):
    rows = []
    for s in range(1, T + 1):
        rows.append({"_step": len(rows), "train/global_step": s, "train/loss": float(L(s - 1)),
                     "train/learning_rate": float(eta(s if version is None else s + 1)), "train/grad_norm": 1.0 + s})
        if s % 15 == 0:
            rows.append({"_step": len(rows), "train/global_step": s, "eval/loss": float(L(s))})
    config = {"transformers_version": version or "4.57.1", "max_steps": T}
    return rows, config


def test_wandb_history_rows_hf(tmp_path):
    rows, config = _hf_rows()
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"config": config, "history": rows}))
    assert detect_format(path) == "wandb-history"
    log = read_log(path)
    assert log.meta["trainer"] == "hf" and log.meta["step_column"] == "train/global_step"
    assert log.steps.tolist() == [15, 30, 45, 60] and log.T == T
    np.testing.assert_array_equal(log.lr, eta(np.arange(1, T + 1)))
    np.testing.assert_array_equal(log.grad_norm_steps, np.arange(1, T + 1))
    train = read_log(path, loss="train/loss")  # on w_{s-1}: step 0 dropped
    np.testing.assert_array_equal(train.steps, np.arange(1, T))
    np.testing.assert_array_equal(train.loss, L(np.arange(1, T)))
    # W&B's own row counter is not the trainer's step: it runs past the horizon
    with pytest.raises(ValueError, match="logged at step 63 but the horizon is T = 60"):
        read_log(path, step="_step")


def test_wandb_history_rows_hf_before_4_51_and_json_lines(tmp_path):
    rows, config = _hf_rows(version="4.50.3")  # logged the next update's LR
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(dict(r, **({"config": None} if False else {}))) for r in rows))
    log = read_log(path)  # no config in JSON Lines: the generic/HF column names decide
    assert log.meta["trainer"] == "hf"
    path2 = tmp_path / "h.json"
    path2.write_text(json.dumps({"config": config, "history": rows}))
    log2 = read_log(path2)
    assert log2.meta["trainer"] == "hf<4.51"
    np.testing.assert_array_equal(log2.lr[1:], eta(np.arange(2, T + 1)))


def test_wandb_history_rows_lightning(tmp_path):
    rows = []
    for n in range(0, T):
        rows.append({"trainer/global_step": n, "lr-AdamW": float(eta(n + 1)), "_step": n})
        rows.append({"trainer/global_step": n, "train_loss": float(L(n)), "epoch": 0})
        if (n + 1) % 20 == 0:
            rows.append({"trainer/global_step": n, "val_loss": float(L(n + 1)), "epoch": 0})
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    log = read_log(path)
    assert log.meta["trainer"] == "lightning" and log.T == T
    assert log.steps.tolist() == [20, 40, 60]
    np.testing.assert_array_equal(log.loss, L(np.array([20, 40, 60])))
    np.testing.assert_array_equal(log.lr, eta(np.arange(1, T + 1)))


def test_wandb_web_csv(tmp_path):
    path = tmp_path / "chart.csv"
    lines = ['"Step","run-a - val/loss","run-a - val/loss__MIN","run-a - val/loss__MAX"']
    lines += [f"{s},{float(L(s))!r},{float(L(s)) - 1},{float(L(s)) + 1}" for s in range(0, T + 1, 10)]
    path.write_text("\n".join(lines) + "\n")
    assert detect_format(path) == "table"
    log = read_log(path)
    assert log.format == "wandb-csv" and log.name == "run-a" and log.columns == ("val/loss",)
    np.testing.assert_array_equal(log.steps, np.arange(10, T + 1, 10))
    assert log.lr is None and log.lr_source is None
    lines = ['Step,run-a - val/loss,run-b - val/loss'] + [f"{s},{float(L(s))},{float(L(s)) + 1}" for s in range(1, 5)]
    path.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"2 runs.*run-b - val/loss"):
        read_log(path)
    log = read_log(path, loss="run-b - val/loss")
    assert log.name == "run-b" and log.loss[0] == pytest.approx(float(L(1)) + 1)


def test_llm_baselines_export(tmp_path):
    """The layout of ../shared/data: train_lr at iter t is lr[t]; train loss at t is on w_{t-1}."""
    Tc, W = 400, 20
    cfg = dict(lr=1e-3, iterations=Tc, warmup_steps=W, scheduler="wsd", wsd_fract_decay=0.25, decay_type="linear")
    t = np.arange(Tc + 1)
    sched = np.where(t < W, t / W + (1 - t / W) / 100, np.where(t < 300, 1.0, np.maximum(Tc - t, 0) / 100)) * 1e-3
    it = list(range(10, Tc + 1, 10))
    hist = {"train": {"iter": it, "train_lr": [float(sched[i]) for i in it], "train_loss": [float(L(i - 1)) for i in it]},
            "val": {"iter": [0, 100, 200, 300, 100], "val_loss": [9.0, 1.0, float(L(200)), float(L(300)), float(L(100))]}}
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"name": "toy", "config": cfg, "summary": {}, "history": hist}))
    log = read_log(path)
    assert log.format == "wandb-json" and log.lr_source == "config" and log.T == Tc
    assert log.steps.tolist() == [100, 200, 300]  # step 0 dropped, the re-logged 100 wins
    np.testing.assert_array_equal(log.loss, L(np.array([100, 200, 300])))
    np.testing.assert_allclose(log.lr, sched[:Tc], rtol=1e-14)
    assert log.meta["lr"]["check"]["checked"] == len(it) - 1  # the LR logged at t = T is used by no update
    train = read_log(path, loss="train_loss")
    np.testing.assert_array_equal(train.steps, np.array(it) - 1)


# ---------------------------------------------------------------------------
# Tables


def _generic_rows(every_lr=4):
    rows = []
    for s in range(0, T + 1):
        rows.append({"step": s, "loss": float(L(s)), "lr": float(eta(s)) if s and s % every_lr == 0 else None,
                     "note": "x"})
    return rows


def _write_csv(path, rows):
    cols = list(rows[0])
    lines = [",".join(cols)]
    for r in rows:
        lines.append(",".join("" if r[c] is None else (repr(r[c]) if isinstance(r[c], float) else str(r[c]))
                              for c in cols))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("engine", ["pandas", "stdlib"])
def test_generic_csv(tmp_path, monkeypatch, engine):
    if engine == "stdlib":
        monkeypatch.setattr("cdfast.io.table._csv_pandas", lambda path, explicit_nan=None: None)
    else:
        pytest.importorskip("pandas")
    path = tmp_path / "log.csv"
    _write_csv(path, _generic_rows())
    log = read_log(path)
    assert log.format == "csv" and log.meta["trainer"] == "generic" and log.loss_name == "loss"
    np.testing.assert_array_equal(log.steps, np.arange(1, T + 1))  # step 0 dropped
    np.testing.assert_array_equal(log.loss, L(np.arange(1, T + 1)))
    knots = np.arange(4, T + 1, 4)
    np.testing.assert_array_equal(log.lr[knots - 1], eta(knots))  # eta_s at step s
    assert (log.lr[:3] == log.lr[3]).all()  # before the first logged LR: held
    assert "note" not in log.columns


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    s = np.arange(1, T + 1)
    pq.write_table(pa.table({"iter": s, "val_loss": L(s), "learning_rate": eta(s)}), tmp_path / "log.parquet")
    assert detect_format(tmp_path / "log.parquet") == "parquet"
    log = read_log(tmp_path / "log.parquet")
    assert log.format == "parquet" and log.lr_source == "logged"
    np.testing.assert_array_equal(log.lr, eta(s))
    np.testing.assert_array_equal(log.loss, L(s))


def test_lightning_synthetic_sparse_csv_by_content(tmp_path):
    path = tmp_path / "anything.csv"  # not called metrics.csv: content decides
    lines = ["epoch,lr-Adam,step,train_loss,val_loss"]
    for n in range(T):
        lines.append(f",{float(eta(n + 1))!r},{n},,")
        lines.append(f"0,,{n},{float(L(n))!r},")
    lines.append(f"0,,{T - 1},,{float(L(T))!r}")
    path.write_text("\n".join(lines) + "\n")
    log = read_log(path)
    assert log.format == "lightning-csv" and log.steps.tolist() == [T]
    np.testing.assert_array_equal(log.lr, eta(np.arange(1, T + 1)))
    assert log.lr_source == "logged"


# ---------------------------------------------------------------------------
# Choices, overrides, errors


def test_loss_choice_order_and_errors(tmp_path):
    path = tmp_path / "log.csv"
    _write_csv(path, [{"step": s, "train_loss": 2.0, "val_loss": 1.0, "eval_c4/loss": 3.0} for s in range(1, 5)])
    assert read_log(path).loss_name == "val_loss"
    assert read_log(path, loss="train_loss").loss[0] == 2.0
    with pytest.raises(ValueError, match=r"no column 'nope'; available columns: \['eval_c4/loss', 'train_loss', 'val_loss'\]"):
        read_log(path, loss="nope")
    _write_csv(path, [{"step": s, "eval_c4/loss": 3.0, "eval_wiki/loss": 4.0} for s in range(1, 5)])
    with pytest.raises(ValueError, match=r"ambiguous \(\['eval_c4/loss', 'eval_wiki/loss'\]\).*loss=NAME"):
        read_log(path)
    _write_csv(path, [{"step": s, "acc": 0.5} for s in range(1, 5)])
    with pytest.raises(ValueError, match=r"no loss column.*\['acc'\]"):
        read_log(path)
    _write_csv(path, [{"time": s, "loss": 0.5} for s in range(1, 5)])
    with pytest.raises(ValueError, match="no step column"):
        read_log(path)
    assert read_log(path, step="time").steps.tolist() == [1, 2, 3, 4]


def test_lr_override(tmp_path):
    path = tmp_path / "log.csv"
    _write_csv(path, _generic_rows())
    lr = eta(np.arange(1, T + 11))
    log = read_log(path, lr=lr)
    assert log.lr_source == "user" and log.T == T + 10
    np.testing.assert_array_equal(log.lr, lr)
    with pytest.raises(ValueError, match=r"step 60 but the horizon is T = 30 \(the length of lr=\)"):
        read_log(path, lr=lr[:30])
    with pytest.raises(ValueError, match=r"lr\[2\] is nan"):
        read_log(path, lr=[1.0, 1.0, np.nan] + [1.0] * 60)
    with pytest.raises(ValueError, match="no LR column 'eta'"):
        read_log(path, lr="eta")
    assert read_log(path, lr="lr").lr_source == "logged (interpolated)"


def test_grad_sq_fill_rules():
    log = TrainingLog(steps=np.array([5]), loss=np.array([1.0]), lr=np.ones(10), grad_norm=np.array([1.0, 3.0]),
                      grad_norm_steps=np.array([3, 7]), name="x", format="csv", T=10, lr_source="user",
                      loss_name="loss")
    # G_j^2 interpolated linearly between updates 3 (1) and 7 (9), held outside
    np.testing.assert_array_equal(log.grad_sq(), [1, 1, 1, 3, 5, 7, 9, 9, 9, 9])
    np.testing.assert_array_equal(log.grad_sq("previous"), [1, 1, 1, 1, 1, 1, 9, 9, 9, 9])
    a, b = cdfast.bound_curve_terms(log.lr, at=[10], grad_sq=log.grad_sq())
    assert np.isfinite(b).all()
    with pytest.raises(ValueError, match="fill"):
        log.grad_sq("cubic")
    no_grad = TrainingLog(steps=np.array([1]), loss=np.array([1.0]), lr=None, grad_norm=None, grad_norm_steps=None,
                          name="y", format="csv", T=1, lr_source=None, loss_name="loss", columns=("loss",))
    with pytest.raises(ValueError, match="no gradient norms"):
        no_grad.grad_sq()
    with pytest.raises(ValueError, match="lr=ARRAY"):
        no_grad.curve()


def test_training_log_is_immutable(tmp_path):
    path = tmp_path / "log.csv"
    _write_csv(path, _generic_rows())
    log = read_log(path)
    with pytest.raises(ValueError):
        log.loss[0] = 0.0
    with pytest.raises(AttributeError):
        log.T = 3
    assert "TrainingLog(name='log'" in repr(log)


def test_detection_content_first(tmp_path):
    state = (LOGS / "hf_run" / "trainer_state.json").read_text()
    odd = tmp_path / "state.txt"
    odd.write_text(state)
    assert detect_format(odd) == "hf-trainer-state"
    assert read_log(odd).loss_name == "eval_loss"
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="unknown layout"):
        read_log(bad)
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x00\x01\x02" * 10)
    with pytest.raises(ValueError, match="binary"):
        read_log(binary)
    with pytest.raises(FileNotFoundError):
        read_log(tmp_path / "missing.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no training log"):
        read_log(tmp_path / "empty")


def test_wandb_history_rows_llm_baselines_with_config(tmp_path):
    """run.history() of the llm-baselines trainer: iter, lr (the next update's), val/loss; the
    config's schedule is rebuilt and checked against the logged lr."""
    Tc, W = 300, 10
    cfg = dict(lr=1e-3, iterations=Tc, warmup_steps=W, scheduler="wsd", wsd_fract_decay=0.5, decay_type="linear")
    lam = lambda t: (t / W + (1 - t / W) / 100 if t < W else min(1.0, (Tc - t) / 150)) * 1e-3  # noqa: E731
    rows = [{"iter": t, "lr": lam(t), "train/loss": float(L(t - 1))} for t in range(5, Tc + 1, 5)]
    rows += [{"iter": t, "val/loss": float(L(t))} for t in range(0, Tc, 50)]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"config": cfg, "history": rows}))
    log = read_log(path)
    assert log.meta["trainer"] == "llm-baselines" and log.lr_source == "config" and log.T == Tc
    assert log.loss_name == "val/loss" and log.steps.tolist() == [50, 100, 150, 200, 250]
    np.testing.assert_allclose(log.lr, [lam(t) for t in range(Tc)], rtol=1e-13)
    bad = [dict(r, lr=2 * r["lr"]) if "lr" in r else r for r in rows]
    path.write_text(json.dumps({"config": cfg, "history": bad}))
    with pytest.raises(ValueError, match="differs from the logged LR at step 5"):
        read_log(path)
