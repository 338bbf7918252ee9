"""`cdfast plan` and `cdfast refine` end to end: on the packaged sample run, and on a
synthetic log with gradient norms written to a temporary CSV."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil

import numpy as np
import pytest

import cdfast
from cdfast import cli
from cdfast import schedules as S
from cdfast.data import SAMPLE_RUN
from cdfast.io import read_lr_file

PNG = b"\x89PNG\r\n\x1a\n"
T_PLAN = 1500


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def table(text):
    """{schedule: (peak LR, predicted final loss)} from the printed plan."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\s+(\S+)\s+([<>]?[0-9.e+-]+)\*?\s+([0-9.e+-]+)(\s+.*)?$", line)
        if m and m.group(1) != "schedule":
            rows[m.group(1)] = (float(m.group(2).lstrip("<>")), float(m.group(3)))
    return rows


@pytest.fixture(scope="module")
def sample_plan():
    """The library's plan of the sample run (the CLI must write exactly its schedules)."""
    return cdfast.plan_schedule(SAMPLE_RUN, T_PLAN, n_boot=0)


def test_plan_the_sample_run(capsys, tmp_path, sample_plan):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    out, torch_py, png = tmp_path / "schedule.csv", tmp_path / "schedule.py", tmp_path / "plan.png"
    code, text, err = run(capsys, "plan", SAMPLE_RUN, "--steps", T_PLAN, "--boot", 20, "--out", out,
                          "--torch", torch_py, "--plot", png)
    assert code == 0, err
    rows = table(text)
    assert list(rows) == ["cosine", "wsd", "linear", "optimal"]
    assert rows["optimal"][1] <= min(v[1] for k, v in rows.items() if k != "optimal")
    assert "90% interval" in text and "warmup 299" in text
    lr = read_lr_file(str(out))
    assert np.array_equal(lr, sample_plan.optimal.lr)
    spec = importlib.util.spec_from_file_location("schedule", torch_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.T == T_PLAN and mod.PEAK_LR == lr.max()
    assert np.array_equal(np.array(mod.MULTIPLIERS), lr / lr.max())
    assert png.read_bytes().startswith(PNG)


def test_plan_writes_a_chosen_family(capsys, tmp_path, sample_plan):
    out, js = tmp_path / "cos.npy", tmp_path / "cos.json"
    code, text, err = run(capsys, "plan", SAMPLE_RUN, "--steps", T_PLAN, "--boot", 0, "--write", "cosine",
                          "--out", out, "--torch", js)
    assert code == 0, err
    # --boot 0: no interval columns and no interval line (the horizon note may still speak of intervals)
    assert "bootstrap interval" not in text and "interval of the difference" not in text and "minus best" in text
    lr = np.load(out)
    cos = sample_plan["cosine"]
    assert np.array_equal(lr, cos.lr)
    W = sample_plan.warmup  # the run's warmup, then the cosine over the rest, at the best peak LR
    assert lr == pytest.approx(cos.peak_lr * np.concatenate([np.arange(W) / W, S.cosine(T_PLAN - W)]), rel=1e-15)
    assert table(text)["cosine"][0] == pytest.approx(cos.peak_lr, rel=1e-3)
    spec = json.loads(js.read_text())
    assert spec["peak_lr"] == cos.peak_lr and np.array_equal(np.array(spec["multipliers"]), lr / lr.max())


def test_plan_other_families_and_warmup(capsys):
    code, text, err = run(capsys, "plan", SAMPLE_RUN, "--steps", 800, "--warmup", 0, "--boot", 0,
                          "--schedules", "wsd:decay_frac=0.5", "constant")
    assert code == 0, err
    rows = table(text)
    assert list(rows) == ["wsd:decay_frac=0.5", "constant", "optimal"]
    assert rows["optimal"][1] <= min(rows["wsd:decay_frac=0.5"][1], rows["constant"][1])
    assert "warmup 0" in text


def write_log_with_norms(path, T=240):
    """A generic CSV log: at step s the LR of update s, its gradient norm, the loss of w_s."""
    lr = 0.01 * S.linear(T)
    g = 1.0 + 2.0 * np.exp(-np.arange(T) / 30.0)
    rows = "".join(f"{s},{float(lr[s - 1])!r},{float(g[s - 1])!r},{3.0 + 2.0 / s ** 0.5!r}\n"
                   for s in range(1, T + 1))
    path.write_text("step,lr,grad_norm,val_loss\n" + rows)
    return lr, g


def test_refine_a_log_with_gradient_norms(capsys, tmp_path):
    log = tmp_path / "run.csv"
    lr, g = write_log_with_norms(log)
    out, js = tmp_path / "refined.csv", tmp_path / "refined.json"
    code, text, err = run(capsys, "refine", log, "--out", out, "--torch", js)
    assert code == 0, err
    for word in ("refined", "exact", "monotone", "linear", "vs exact"):
        assert word in text
    got = read_lr_file(str(out))
    assert got == pytest.approx(S.refined(g, peak_lr=float(lr.max())), rel=1e-13)
    spec = json.loads(js.read_text())
    assert spec["T"] == lr.shape[0] and np.array(spec["multipliers"]) * spec["peak_lr"] == pytest.approx(got,
                                                                                                          rel=1e-15)
    code, text, err = run(capsys, "refine", log, "--smoothing", 0.05, "--peak-lr", 0.5, "--out", out)
    assert code == 0, err
    assert read_lr_file(str(out)) == pytest.approx(S.refined(g, smoothing=0.05, peak_lr=0.5), rel=1e-13)


def test_refine_a_log_without_norms(capsys):
    code, text, err = run(capsys, "refine", SAMPLE_RUN)
    assert code == 2 and text == ""
    assert err.count("\n") == 1 and "has no gradient norms" in err


@pytest.mark.parametrize("argv, message", [
    (["--steps", 1], "T = 1 must be >= 2"),
    (["--steps", 500, "--warmup", 500], "--warmup 500 must be below --steps 500"),
    (["--steps", 500, "--out", "x.txt"], "--out 'x.txt' must end in .csv or .npy"),
    (["--steps", 500, "--torch", "x.csv"], "--torch 'x.csv' must end in .json or .py"),
    (["--steps", 500, "--write", "nope"], "--write 'nope' is not one of the planned schedules"),
    (["--steps", 500, "--schedules", "nope"], "unknown schedule 'nope'"),
    (["--steps", 500, "--peak-lr-range", "1e-2:1e-3"], "LOW must be below HIGH"),
    (["--steps", 500, "--boot", 5], "n_boot = 5 must be 0"),
    (["--steps", 500, "--model", "mpl"], "gradient"),
])
def test_plan_bad_input_is_one_line(capsys, argv, message):
    code, text, err = run(capsys, "plan", SAMPLE_RUN, *argv)
    assert code == 2, text
    assert err.startswith("cdfast: error: ") and err.count("\n") == 1 and message in err


def test_outputs_never_replace_the_input(capsys, tmp_path):
    src = tmp_path / "run.json"
    shutil.copy(SAMPLE_RUN, src)
    before = src.read_bytes()
    code, _, err = run(capsys, "plan", src, "--steps", 500, "--torch", src)
    assert code == 2 and "is the input" in err
    log = tmp_path / "norms.csv"
    write_log_with_norms(log)
    code, _, err = run(capsys, "refine", log, "--out", log)
    assert code == 2 and "is the input" in err
    assert src.read_bytes() == before and not list(tmp_path.glob(".cdfast-*"))


def test_plan_from_a_checkpoint_writes_the_run_s_own_lrs_first(capsys, tmp_path):
    out = tmp_path / "cooldown.npy"
    code, text, err = run(capsys, "plan", SAMPLE_RUN, "--steps", 3000, "--from-step", 1000, "--boot", 0, "--quiet",
                          "--out", out)
    assert code == 0, err
    assert "from step 1000" in text and ("holds the LR" in text or "cools down" in text)
    lr = np.load(out)
    run_lr = cdfast.io.read_log(SAMPLE_RUN).lr
    assert lr.shape == (3000,) and np.array_equal(lr[:1000], run_lr[:1000])
    assert (np.diff(lr[999:]) <= 0).all()
    assert np.max(np.abs(np.diff(lr))) <= max(1 / 299, 0.01) * run_lr.max() * (1 + 1e-12)


def test_plan_the_peak_stays_with_the_run_unless_extrapolating(capsys):
    code, text, err = run(capsys, "plan", SAMPLE_RUN, "--steps", T_PLAN, "--boot", 0, "--quiet")
    assert code == 0, err
    assert "trust region" in text
    for peak, _ in table(text).values():
        assert 0.0016 * (1 - 1e-3) <= peak <= 0.0025 * (1 + 1e-3)
    code, text, err = run(capsys, "plan", SAMPLE_RUN, "--steps", T_PLAN, "--boot", 0, "--quiet", "--extrapolate",
                          "--peak-lr-range", "3e-3:1e-2", "--schedules", "linear")
    assert code == 0, err
    assert "EXTRAPOLATION" in text and "*" in text


@pytest.mark.parametrize("argv, message", [
    (["--steps", 30000, "--from-step", 26000], "from_step = 26000 is beyond the log"),
    (["--steps", 500, "--from-step", 600], "from_step = 600 must be < T = 500"),
    (["--steps", 500, "--from-step", 100], "lies in the run's warmup"),
    (["--steps", 500, "--peak-lr-range", "3e-3:1e-2"], "excludes the fitted run's peak LR"),
    (["--steps", 500, "--peak-lr-range", "1e-3:1e-2"], "--extrapolate"),
    (["--steps", 500, "--not-monotone"], "--allow-steps"),
    (["--steps", 500, "--schedules", "inverse_sqrt"], "--allow-steps"),
])
def test_plan_new_options_bad_input_is_one_line(capsys, argv, message):
    code, text, err = run(capsys, "plan", SAMPLE_RUN, "--quiet", *argv)
    assert code == 2, text
    assert err.startswith("cdfast: error: ") and err.count("\n") == 1 and message in err
