"""``cdfast forecast`` and how fit treats a run read before its end."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import cdfast
from cdfast.cli import main
from cdfast.io import read_log


@pytest.fixture(scope="module")
def half_run(tmp_path_factory) -> pathlib.Path:
    """The sample run as a Hugging Face output folder read halfway (max_steps 25000, logged to 12000)."""
    log = read_log(cdfast.data.SAMPLE_RUN)
    hist = []
    for s, y in zip(log.steps, log.loss):
        if s > 12000:
            break
        hist.append({"step": int(s), "eval_loss": float(y), "epoch": 0.0})
        hist.append({"step": int(s), "loss": float(y), "learning_rate": float(log.lr[s - 1]), "epoch": 0.0})
    d = tmp_path_factory.mktemp("hf_half")
    (d / "trainer_state.json").write_text(json.dumps({"global_step": 12000, "max_steps": 25000, "logging_steps": 200,
                                                      "eval_steps": 200, "log_history": hist}))
    return d


def test_forecast_of_a_finished_log_uses_its_own_schedule(capsys):
    assert main(["forecast", str(cdfast.data.SAMPLE_RUN)]) == 0
    out = capsys.readouterr().out
    assert "forecast of the final loss at step T = 25000" in out and "99.2% of the run" in out
    assert "schedule: the log's own (config)" in out


def test_an_unfinished_log_needs_its_schedule(half_run, capsys):
    assert main(["forecast", str(half_run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "looks unfinished" in err[0] and "--schedule" in err[0]


def test_forecast_with_the_planned_schedule_writes_curve_and_figure(half_run, tmp_path, capsys):
    out_csv, png = tmp_path / "f.csv", tmp_path / "f.png"
    assert main(["forecast", str(half_run), "--schedule", "cosine", "--steps", "25000", "--out", str(out_csv),
                 "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "48.0% of the run" in out and "(90% interval)" in out
    rows = out_csv.read_text().strip().splitlines()
    assert rows[0] == "step,loss,lo,hi" and rows[-1].startswith("25000,")
    step, loss, lo, hi = (float(v) for v in rows[-1].split(","))
    assert lo < loss < hi
    # the forecast from half the run covers how the whole run really ended
    truth = read_log(cdfast.data.SAMPLE_RUN).loss[-1]
    assert lo <= truth <= hi
    assert png.stat().st_size > 10_000


def test_a_planned_schedule_that_is_not_the_runs_is_refused(half_run, capsys):
    assert main(["forecast", str(half_run), "--schedule", "cosine", "--steps", "30000"]) == 2
    err = capsys.readouterr().err
    assert "at step 12000" in err and "logged" in err


def test_a_declined_forecast_says_why_and_writes_nothing(half_run, tmp_path, capsys):
    early = tmp_path / "early"
    early.mkdir()
    state = json.loads((half_run / "trainer_state.json").read_text())
    state["log_history"] = [r for r in state["log_history"] if r["step"] <= 3000]
    (early / "trainer_state.json").write_text(json.dumps(state))
    assert main(["forecast", str(early), "--schedule", "cosine", "--steps", "25000"]) == 0
    assert "no forecast at step 3000" in capsys.readouterr().out
    out_csv = tmp_path / "no.csv"
    assert main(["forecast", str(early), "--schedule", "cosine", "--steps", "25000", "--out", str(out_csv)]) == 2
    assert not out_csv.exists()


def test_fit_of_an_unfinished_log_predicts_no_final_loss(half_run, capsys):
    assert main(["fit", str(half_run)]) == 0
    out = capsys.readouterr().out
    assert "looks unfinished" in out and "cdfast forecast" in out
    assert "at step T = 25000" not in out


@pytest.mark.parametrize("argv, match", [
    (["--steps", "25000"], "describe a --schedule"),
    (["--schedule", "cosine"], "--schedule needs --steps"),
    (["--schedule", "cosine", "--steps", "25000", "--out", "x.txt"], "--out"),
])
def test_bad_options(half_run, capsys, argv, match):
    assert main(["forecast", str(half_run), *argv]) == 2
    assert match in capsys.readouterr().err


def test_forecast_log_api_matches_the_command(half_run):
    from cdfast.forecasting import forecast_log
    log = read_log(half_run)
    lr = 0.00199992 * cdfast.schedules.cosine(25000, warmup=399)
    f = forecast_log(log, lr)
    assert f.ok and f.T == 25000 and f.step == 12000
    with pytest.raises(ValueError, match="looks unfinished"):
        forecast_log(log)
    with pytest.raises(ValueError, match="must cover the whole run"):
        forecast_log(log, lr[:5000])
    early = forecast_log(log, lr, until=6000)
    assert early.step <= 6000 and early.ok and early.low < early.loss < early.high
    truth = read_log(cdfast.data.SAMPLE_RUN).loss[-1]
    assert early.low <= truth <= early.high and f.low <= truth <= f.high
    assert np.isfinite(f.loss)
