"""The command line takes any log: fit, predict, compare and report, end to end.

Each format's fixture is written in that format's layout, with that trainer's off-by-one
conventions (docs/io.md), from losses that follow eq. (2.4) exactly for known constants
(the literal nested sums of tests/naive.py); ``cdfast fit PATH --model bound`` must give
the constants back.  TensorBoard fixtures use the real writer (tensorboardX) when it is
installed.
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
import re

import numpy as np
import pytest

import cdfast
from cdfast import cli, schedules
from cdfast.data import SAMPLE_RUN
from naive import last_iterate_naive

PNG = b"\x89PNG\r\n\x1a\n"
L_INF, D_SQ, G_SQ = 1.3, 0.4, 0.2
T = 60
EVERY = 5
DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def constants(text):
    line = next(x for x in text.splitlines() if x.startswith("model "))
    return {k.strip(): float(v) for k, v in (kv.split(" = ") for kv in line.split(": ", 1)[1].split("   "))}


def truth(lr, grad_sq=None, L=L_INF, D2=D_SQ, G2=G_SQ):
    """Eval steps and their losses from the nested-sum eq. (2.4)."""
    steps = np.arange(EVERY, lr.shape[0] + 1, EVERY)
    loss = [last_iterate_naive(lr[:s], D=math.sqrt(D2), G=math.sqrt(G2), L_star=L,
                               grad_sq=None if grad_sq is None else grad_sq[:s]) for s in steps]
    return steps, np.array(loss)


LR = 0.2 * schedules.linear(T)


def num(x) -> str:
    """A float as CSV text, round-tripping exactly (repr of a Python float)."""
    return repr(float(x))


# --- one writer per format, each in its trainer's convention ----------------------------


def write_csv(folder, lr, steps, loss):
    """Generic table: at step s (updates done) the LR of update s and the loss of w_s."""
    path = folder / "log.csv"
    at = dict(zip(steps.tolist(), loss))
    path.write_text("step,lr,val_loss\n" + "".join(
        f"{s},{num(lr[s - 1])},{num(at[s]) if s in at else ''}\n" for s in range(1, lr.shape[0] + 1)))
    return path


def write_parquet(folder, lr, steps, loss):
    pa = pytest.importorskip("pyarrow", reason="pyarrow (the 'io' extra) is not installed")
    import pyarrow.parquet as pq

    s = np.arange(1, lr.shape[0] + 1)
    y = np.full(s.shape, np.nan)
    y[steps - 1] = loss
    path = folder / "log.parquet"
    pq.write_table(pa.table({"step": s, "lr": lr, "val_loss": y}), path)
    return path


def write_hf(folder, lr, steps, loss):
    """trainer_state.json (transformers >= 4.51): learning_rate at s is eta_s, eval_loss at s is on w_s."""
    history = []
    for s in range(1, lr.shape[0] + 1):
        history.append({"epoch": s / lr.shape[0], "grad_norm": 1.0, "learning_rate": float(lr[s - 1]),
                        "loss": 9.0, "step": s})
        if s in steps:
            history.append({"epoch": s / lr.shape[0], "eval_loss": float(loss[list(steps).index(s)]),
                            "eval_runtime": 0.01, "step": s})
    history.append({"epoch": 1.0, "step": lr.shape[0], "total_flos": 1.0, "train_loss": 9.0, "train_runtime": 1.0,
                    "train_samples_per_second": 1.0})
    out = folder / "hf_output"
    out.mkdir()
    (out / "trainer_state.json").write_text(json.dumps({
        "global_step": lr.shape[0], "max_steps": lr.shape[0], "logging_steps": 1, "eval_steps": EVERY,
        "log_history": history, "epoch": 1.0, "is_world_process_zero": True}, indent=2))
    return out  # the output folder: read_log finds trainer_state.json in it


def write_lightning(folder, lr, steps, loss):
    """metrics.csv: lr-* at n is eta_{n+1}; val_loss at n is on w_{n+1} (sparse rows)."""
    out = folder / "lightning_logs" / "version_0"
    out.mkdir(parents=True)
    rows = [["epoch", "lr-SGD", "step", "train_loss", "val_loss"]]
    for n in range(lr.shape[0]):
        rows.append(["", repr(float(lr[n])), str(n), "", ""])
        if n + 1 in steps:
            rows.append(["0", "", str(n), "", repr(float(loss[list(steps).index(n + 1)]))])
    with open(out / "metrics.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return out / "metrics.csv"


def write_wandb_history(folder, lr, steps, loss):
    """run.history() rows: sparse, one wandb.log call each, generic convention."""
    rows = [{"_step": int(s), "lr": float(lr[s - 1])} for s in range(1, lr.shape[0] + 1)]
    rows += [{"_step": int(s), "val_loss": float(v)} for s, v in zip(steps, loss)]
    path = folder / "history.json"
    path.write_text(json.dumps(rows))
    return path


def write_wandb_csv(folder, lr, steps, loss):
    """A W&B chart's CSV export: Step, "<run> - <metric>" (and envelopes)."""
    at = dict(zip(steps.tolist(), loss))
    path = folder / "chart.csv"
    lines = ['"Step","myrun - lr","myrun - val_loss","myrun - val_loss__MIN"']
    for s in range(1, lr.shape[0] + 1):
        v = num(at[s]) if s in at else ""
        lines.append(f"{s},{num(lr[s - 1])},{v},{v}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_tensorboard(folder, lr, steps, loss):
    """Event files written by tensorboardX (values stored as float32)."""
    writer_cls = pytest.importorskip("tensorboardX", reason="tensorboardX is not installed").SummaryWriter
    pytest.importorskip("tensorboard", reason="reading TensorBoard needs tensorboard (the 'io' extra)")
    out = folder / "tb"
    w = writer_cls(str(out))
    for s in range(1, lr.shape[0] + 1):
        w.add_scalar("lr", float(lr[s - 1]), s)
    for s, v in zip(steps, loss):
        w.add_scalar("loss", float(v), int(s))
    w.close()
    return out


WRITERS = {"csv": write_csv, "parquet": write_parquet, "hf-trainer-state": write_hf,
           "lightning-csv": write_lightning, "wandb-history": write_wandb_history, "wandb-csv": write_wandb_csv,
           "tensorboard": write_tensorboard}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_fit_every_format_end_to_end(capsys, tmp_path, fmt):
    steps, loss = truth(LR)
    path = WRITERS[fmt](tmp_path, LR, steps, loss)
    assert cdfast.io.read_log(path).format == fmt
    out = tmp_path / "fit.csv"
    code, text, err = run(capsys, "fit", path, "--model", "bound", "--fit-frac", 1, "--out", out)
    assert code == 0, err
    rtol = 2e-3 if fmt == "tensorboard" else 1e-6  # TensorBoard stores float32
    got = constants(text)
    assert got["L_inf"] == pytest.approx(L_INF, rel=rtol)
    assert got["D_sq"] == pytest.approx(D_SQ, rel=rtol)
    assert got["G_sq"] == pytest.approx(G_SQ, rel=rtol)
    rows = list(csv.DictReader(open(out)))
    assert [int(r["step"]) for r in rows] == steps.tolist()
    np.testing.assert_allclose([float(r["fitted"]) for r in rows], loss, rtol=rtol)


def test_fit_several_runs_share_constants(capsys, tmp_path):
    """Two runs (other peak LR and schedule) generated with the same constants, fitted jointly."""
    lr2 = 0.1 * schedules.cosine(T, warmup=4)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_csv(tmp_path / "a", LR, *truth(LR))
    b = write_wandb_history(tmp_path / "b", lr2, *truth(lr2))
    out, png = tmp_path / "joint.csv", tmp_path / "joint.png"
    code, text, err = run(capsys, "fit", a, b, "--model", "bound", "--out", out, "--plot", png)
    assert code == 0, err
    assert "joint fit of 2 runs" in text
    got = constants(text)
    assert (got["L_inf"], got["D_sq"], got["G_sq"]) == pytest.approx((L_INF, D_SQ, G_SQ), rel=1e-6)
    rows = list(csv.DictReader(open(out)))
    assert {r["run"] for r in rows} == {"log", "history"}
    assert png.read_bytes().startswith(PNG)


def test_fit_with_logged_gradient_norms(capsys, tmp_path):
    """--grad-norm: the logged norms G_t enter eq. (2.4) as per-step G_t^2."""
    g = 1.0 + 0.5 * np.sin(np.arange(T) / 7.0) ** 2
    steps, loss = truth(LR, grad_sq=g**2, G2=0.3)
    path = tmp_path / "log.csv"
    at = dict(zip(steps.tolist(), loss))
    path.write_text("step,lr,grad_norm,val_loss\n" + "".join(
        f"{s},{num(LR[s - 1])},{num(g[s - 1])},{num(at[s]) if s in at else ''}\n" for s in range(1, T + 1)))
    code, text, err = run(capsys, "fit", path, "--model", "bound", "--fit-frac", 1, "--grad-norm")
    assert code == 0, err
    got = constants(text)
    assert (got["L_inf"], got["D_sq"], got["G_sq"]) == pytest.approx((L_INF, D_SQ, 0.3), rel=1e-6)
    code, text, err = run(capsys, "fit", path, "--model", "bound", "--fit-frac", 1)
    assert code == 0, err
    assert constants(text)["G_sq"] != pytest.approx(0.3, rel=1e-3)  # without the norms the fit is off


def test_log_without_learning_rates_takes_a_schedule(capsys, tmp_path):
    steps, loss = truth(LR)
    path = tmp_path / "loss_only.csv"
    path.write_text("step,loss\n" + "".join(f"{s},{num(v)}\n" for s, v in zip(steps, loss)))
    code, _, err = run(capsys, "fit", path)
    assert code == 2 and "--lr-file" in err and "--schedule" in err
    code, text, err = run(capsys, "fit", path, "--schedule", "linear", "--peak-lr", 0.2, "--steps", T,
                          "--model", "bound", "--fit-frac", 1)
    assert code == 0, err
    assert constants(text)["L_inf"] == pytest.approx(L_INF, rel=1e-6)


# --- the packaged run -------------------------------------------------------------------


def test_sample_run_is_the_original_reduced(data_dir):
    original = data_dir / "llm124m" / ("cos-zero-124m_slimpajama_llama_norm_nlayers12_nhead12_lr0.002_sched_cos_"
                                       "warmup300_decay_sqrt_0.0_iter25000_bs50x2_ws2_seed0_data_seed1337.json")
    if not original.is_file():
        pytest.skip(f"the original export is not at {original}")
    a, b = cdfast.io.read_log(SAMPLE_RUN), cdfast.io.read_log(original)
    for name in ("steps", "loss", "lr"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    small, full = json.loads(SAMPLE_RUN.read_text()), json.loads(original.read_text())
    assert small["config"] == full["config"] and small["summary"] == full["summary"]
    for section, cols in small["history"].items():
        for col, values in cols.items():
            assert values == full["history"][section][col]
    assert SAMPLE_RUN.stat().st_size < 40_000


def test_sample_run_is_packaged():
    """The run, its source note and licence are package data (pyproject.toml)."""
    import tomllib

    conf = tomllib.loads((pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "cdfast.data" in conf["tool"]["setuptools"]["packages"]
    data = conf["tool"]["setuptools"]["package-data"]["cdfast.data"]
    folder = SAMPLE_RUN.parent
    for pattern in data:
        assert list(folder.glob(pattern)), pattern
    assert "MIT License" in (folder / "LICENSE").read_text()
    assert "fabian-sp/lr-scheduling" in (folder / "README.md").read_text()


def test_predict_another_schedule_and_horizon(capsys, tmp_path):
    out, png = tmp_path / "p.csv", tmp_path / "p.png"
    code, text, err = run(capsys, "predict", SAMPLE_RUN, "--schedule", "wsd:decay_frac=0.2", "--steps", 50_000,
                          "--model", "bound", "--points", 200, "--out", out, "--plot", png)
    assert code == 0, err
    rows = list(csv.DictReader(open(out)))
    at = np.array([int(r["step"]) for r in rows])
    assert at[-1] == 50_000 and len(at) == 200
    # the run's peak LR (0.002) and warmup (the logged LR first reaches its peak at index 299)
    log = cdfast.io.read_log(SAMPLE_RUN)
    assert int(np.argmax(log.lr)) == 299
    lr = 0.002 * schedules.wsd(50_000, decay_frac=0.2, warmup=299)
    np.testing.assert_array_equal([float(r["lr"]) for r in rows], lr[at - 1])
    fit = cdfast.fit_loss_curve(*log.curve(), model="bound")
    np.testing.assert_allclose([float(r["loss"]) for r in rows], fit.predict(lr, at=at), rtol=1e-12)
    final = float(re.search(r"final loss at step 50000 = ([0-9.]+)", text).group(1))
    assert final == pytest.approx(fit.predict(lr, at=[50_000])[0], rel=1e-4)
    assert png.read_bytes().startswith(PNG)
    if hasattr(fit, "interval"):
        lo, hi = float(rows[-1]["lo"]), float(rows[-1]["hi"])
        assert lo <= float(rows[-1]["loss"]) <= hi


def test_report_fits_the_packaged_run(capsys, tmp_path):
    """The run section: the best peak LR minimises the model's final loss, the check line
    is the first-half fit's prediction of the last logged loss."""
    png = tmp_path / "r.png"
    code, text, err = run(capsys, "report", "--no-exam", "--steps", 1000, "--repeat", 1, "--model", "bound",
                          "--run-schedules", "cosine", "--run-steps", "25000", "--boot", 20, "--plot", png)
    assert code == 0, err
    log = cdfast.io.read_log(SAMPLE_RUN)
    lr, steps, loss = log.curve()
    half = cdfast.fit_loss_curve(lr, steps, loss, model="bound", fit_steps=steps <= 12_500)
    check = float(re.search(r"predicts the loss at step 24800 as ([0-9.]+)", text).group(1))
    assert check == pytest.approx(half.predict(lr, at=[24_800])[0], abs=1e-3)
    row = next(x.split() for x in text.splitlines() if x.startswith("cosine "))
    best = float(row[-2].lstrip("<>"))
    fit = cdfast.fit_loss_curve(lr, steps, loss, model="bound")
    shape = schedules.cosine(25_000, warmup=299)
    f = lambda eta: fit.predict(eta * shape, at=[25_000])[0]
    # closed form for the paper's form: L_inf + D^2 a / eta + G^2 b eta is least at sqrt(D^2 a / (G^2 b))
    a, b = cdfast.bound_terms(shape)
    assert best == pytest.approx(math.sqrt(fit.params["D_sq"] * a / (fit.params["G_sq"] * b)), rel=0.03)
    assert f(best) <= min(f(0.9 * best), f(1.1 * best))
    # the last lines: the backends' agreement and speed (and, right after installing, a note that
    # Numba is still compiling in the background), then the figure
    tail = text.rstrip().splitlines()[-3:]
    assert "bounds of the standard schedules" in text and any(x.startswith("backends:") for x in tail)
    assert png.read_bytes().startswith(PNG)


def test_report_with_no_arguments(capsys):
    """`cdfast report`: the packaged run, its predictions and best peak LRs, the bound table."""
    code, text, err = run(capsys, "report")
    assert code == 0, err
    assert "the packaged sample run" in text
    for name in ("cosine", "linear", "wsd:decay_frac=0.2", "constant"):
        assert sum(line.startswith(name + " ") for line in text.splitlines()) >= 3 + (name != "wsd:decay_frac=0.2")
    assert re.search(r"backends: .* agree to", text)


def test_compare(capsys, tmp_path):
    out = tmp_path / "board.csv"
    code, text, err = run(capsys, "compare", SAMPLE_RUN, "--models", "bound,bound-alpha", "--out", str(out))
    assert code == 0, err
    assert "best: bound-alpha" in text  # the paper's form misses the sample run's second half by ~5%
    header = out.read_text().splitlines()[0]
    assert header.startswith("model,n,final_median_pct")
    code, _, err = run(capsys, "compare", SAMPLE_RUN, "--models", "nope")
    assert code == 2 and "unknown model 'nope'" in err and len(err.strip().splitlines()) == 1
