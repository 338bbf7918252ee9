"""What a new user hit in the docs, each fixed and held: exam with --lr-file and a name,
the synopses list the required options, predict starts where the LR does, values and
intervals print with the same precision, the report counts the warmup as the run was
configured, one background compile at a time, figures widen to show the prediction."""

from __future__ import annotations

import csv
import math
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import cdfast
from cdfast import _format, cli, reporting, schedules

REPO = pathlib.Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------
# exam NAME --lr-file F


def test_exam_takes_a_name_for_a_shape_from_a_file(capsys, tmp_path):
    """docs/cli.md: `cdfast exam my_shape --lr-file lr.npy && ...`."""
    linear = tmp_path / "lr.npy"
    np.save(linear, schedules.linear(200))
    code, text, err = run(capsys, "exam", "my_shape", "--lr-file", linear, "--max-steps", "1e5")
    assert err == "" and code in (0, 1)
    verdict = re.search(r"for my_shape: (QUALIFIED|NOT QUALIFIED)", text).group(1)
    assert code == (0 if verdict == "QUALIFIED" else 1)
    flat = tmp_path / "flat.txt"
    flat.write_text("1\n1\n1\n1\n")  # constant: not qualified, status 1 for scripts
    code, text, err = run(capsys, "exam", "my_flat", "--lr-file", flat, "--max-steps", "1e5")
    assert code == 1 and err == ""
    assert "for my_flat: NOT QUALIFIED" in text
    code, text, _ = run(capsys, "exam", "--lr-file", flat, "--max-steps", "1e5")  # no name: the file's
    assert "for flat.txt: NOT QUALIFIED" in text


def test_exam_name_with_lr_file_is_the_same_exam(capsys, tmp_path):
    shape = tmp_path / "s.txt"
    shape.write_text("".join(f"{v!r}\n" for v in schedules.cosine(50, final=0.01)))
    _, named, _ = run(capsys, "exam", "mine", "--lr-file", shape, "--max-steps", "1e5")
    _, plain, _ = run(capsys, "exam", "--lr-file", shape, "--max-steps", "1e5")
    assert named.replace("mine", "s.txt") == plain


# ---------------------------------------------------------------------------
# synopses


def _synopses() -> dict[str, str]:
    text = (REPO / "docs" / "cli.md").read_text()
    block = text[text.index("```\ncdfast report") + 4:]
    block = block[:block.index("```")]
    return {line.split()[1]: line for line in block.splitlines() if line.startswith("cdfast ")}


def test_every_synopsis_lists_the_required_options():
    """`cdfast curve`'s synopsis lacked --out, which argparse requires."""
    synopses = _synopses()
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert sorted(synopses) == sorted(sub.choices)
    for name, p in sub.choices.items():
        required = [a.option_strings[0] for a in p._actions if a.required and a.option_strings]
        for option in required:
            assert re.search(rf"{re.escape(option)}\b", synopses[name]), (name, option, synopses[name])
        usage = p.format_usage()
        for option in required:
            assert option in usage


# ---------------------------------------------------------------------------
# predict: the curve starts at the first step with a positive LR


def _warmup_log(tmp_path, T=120, warmup=10):
    """A CSV log whose schedule warms up from 0, and whose loss follows eq. (2.4)."""
    lr = 0.1 * schedules.linear(T, warmup=warmup)
    assert lr[0] == 0.0
    steps = np.arange(12, T + 1, 6)
    loss = cdfast.bound_curve(lr, 0.6, 0.4, 1.3, at=steps)
    path = tmp_path / "run.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "lr", "loss"])
        w.writerows([int(t), repr(float(lr[t - 1])), repr(float(loss[k]))] for k, t in enumerate(steps))
    return path, lr


def test_predict_starts_where_the_learning_rate_does(capsys, tmp_path):
    """The predicted table and CSV began with `1, 0.0, inf`: at step 1 of a warmup from 0
    the model is infinite.  They start at the first step with a positive LR."""
    path, lr = _warmup_log(tmp_path)
    out = tmp_path / "p.csv"
    code, text, err = run(capsys, "predict", path, "--schedule", "cosine", "--steps", 240, "--warmup", 10,
                          "--model", "bound", "--points", 50, "--out", out)
    assert code == 0, err
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    first = int(rows[0]["step"])
    assert float(rows[0]["lr"]) > 0 and all(float(r["lr"]) > 0 for r in rows)
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    # the predicted schedule warms up from 0: its LR is 0 at step 1 only
    assert first == int(np.argmax(schedules.cosine(240, warmup=10) > 0)) + 1 == 2
    assert int(rows[-1]["step"]) == 240
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:3] == ["step", "lr", "loss"])
    # the printed table starts at the first fitted step (before it lies the early transient), the CSV at `first`
    fitted_from = int(re.search(r"fitted from step (\d+)", text).group(1))
    shown = int(lines[head + 1].split()[0])
    assert shown == min(int(r["step"]) for r in rows if int(r["step"]) >= fitted_from) > first
    assert "inf" not in lines[head + 1] and "--out and --plot hold the whole curve" in text


def test_curve_points_from_a_start():
    assert reporting.curve_points(10, 0, start=3).tolist() == list(range(3, 11))
    pts = reporting.curve_points(1000, 5, start=2)
    assert pts[0] == 2 and pts[-1] == 1000 and len(pts) == 5
    assert reporting.curve_points(1000, 5).tolist() == reporting.curve_points(1000, 5, start=1).tolist()


# ---------------------------------------------------------------------------
# numbers side by side keep their precision


@pytest.mark.parametrize("value, lo, hi, text", [
    (3.0, 2.984, 3.0, "3.000 [2.984, 3.000]"),
    (2.992, 2.984, 3.0, "2.992 [2.984, 3.000]"),
    (2.939, 2.905, 2.95, "2.939 [2.905, 2.950]"),
    (0.0036, 0.0031, 0.004, "0.003600 [0.003100, 0.004000]"),
])
def test_a_value_and_its_interval_show_the_same_digits(value, lo, hi, text):
    """`3 [2.984, 3]` read as if the model were less precise at 3 than at 2.984."""
    assert _format.with_interval(value, (np.array([lo]), np.array([hi]))) == text


def test_six_digit_intervals_keep_their_zeros():
    got = _format.with_interval(2.93922, (np.array([2.9061]), np.array([2.96158])), digits=6)
    assert got == "2.93922 [2.90610, 2.96158]"
    assert _format.with_interval(3.0, None) == "3.000"


def test_plain_table_cells_are_unchanged():
    assert _format.fmt(3.0) == "3" and _format.fmt(2.0) == "2" and _format.fmt(0.00025488) == "2.549e-04"
    assert _format.fmt(float("nan")) == "-"


# ---------------------------------------------------------------------------
# the report counts the warmup as the run was configured


def test_configured_warmup_of_the_sample_run():
    """The packaged run is configured with 300 warmup steps (OneCycleLR: the LR reaches its
    peak on the 300th step); the report said 299."""
    log = cdfast.io.read_log(cdfast.data.SAMPLE_RUN)
    assert log.config["warmup_steps"] == 300
    assert reporting.warmup_of(log.lr) == 299  # steps below the peak: cdfast.schedules' warmup
    assert reporting.configured_warmup(log.lr, log.config) == 300
    # the re-planned schedules (warmup_of) reach the peak on the same step as the run
    shape = schedules.cosine(log.T, warmup=reporting.warmup_of(log.lr))
    assert int(np.argmax(shape)) == int(np.argmax(log.lr)) == 299


def test_configured_warmup_without_a_config_or_with_another_count():
    lr = schedules.cosine(1000, warmup=300)  # Hugging Face's ramp: 300 steps below the peak
    assert reporting.configured_warmup(lr, None) == 300
    assert reporting.configured_warmup(lr, {"warmup_steps": 300}) == 300
    assert reporting.configured_warmup(lr, {"warmup_steps": 50}) == 300  # contradicts the LRs: not used
    assert reporting.configured_warmup(schedules.cosine(1000), {"warmup_steps": 1}) == 0


def test_report_prints_the_configured_warmup():
    rep = reporting.report_run(None, model="bound", schedules=["cosine"], steps=[25_000], boot=0)
    assert (rep.warmup, rep.warmup_steps) == (299, 300)
    text = rep.summary()
    assert "warmup 300 steps" in text and "(warmup 300 steps kept)" in text and "299" not in text


# ---------------------------------------------------------------------------
# one background compile at a time


class _FakePopen:
    calls: list = []

    def __init__(self, argv, **kwargs):
        _FakePopen.calls.append((argv, kwargs.get("env", {})))
        self.pid = os.getpid()  # a live process


def test_one_background_compile_at_a_time(tmp_path, monkeypatch):
    """`cdfast report` run twice while Numba compiles started a second compile."""
    from cdfast._kernels import _warmup

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "warmup.lock"
    monkeypatch.setattr(_warmup, "_lock_path", lambda: str(lock))
    monkeypatch.setattr(_warmup.subprocess, "Popen", _FakePopen)
    monkeypatch.delenv("CDFAST_NUMBA_WARMUP", raising=False)
    monkeypatch.delenv("CDFAST_NUMBA_CACHE", raising=False)
    _FakePopen.calls = []
    assert _warmup.start_background() is True
    assert len(_FakePopen.calls) == 1 and lock.read_text() == str(os.getpid())
    assert _FakePopen.calls[0][1][_warmup.LOCK_ENV] == str(lock)
    assert _warmup.start_background() is True  # compiling: nothing new started
    assert len(_FakePopen.calls) == 1
    # the compile ended (its process is gone): the lock is stale and a new compile may start
    lock.write_text(ended.stdout.strip())
    assert _warmup.start_background() is True
    assert len(_FakePopen.calls) == 2 and lock.read_text() == str(os.getpid())


def test_the_compiling_process_releases_its_lock(tmp_path, monkeypatch):
    from cdfast._kernels import _warmup

    lock = tmp_path / "warmup.lock"
    lock.write_text(str(os.getpid()))
    monkeypatch.setenv(_warmup.LOCK_ENV, str(lock))
    _warmup.release_lock()
    assert not lock.exists()
    lock.write_text("1")  # another process's lock is left alone
    _warmup.release_lock()
    assert lock.exists()


def test_background_compile_can_be_turned_off(monkeypatch):
    from cdfast._kernels import _warmup

    monkeypatch.setenv("CDFAST_NUMBA_WARMUP", "0")
    assert _warmup.start_background() is False


# ---------------------------------------------------------------------------
# figures widen to show the prediction


def test_a_prediction_drawn_on_a_fit_is_not_clipped():
    """docs/walkthrough.md draws a prediction on the axes of plot_fit, whose y-range is the
    logged run's: the prediction for a longer run goes lower, and was cut off."""
    pytest.importorskip("matplotlib")
    from cdfast import plot

    plot.use_agg()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    steps = np.arange(100, 1001, 100)
    loss = 3.0 + 1.0 / np.sqrt(steps)
    plot.plot_fit(steps, loss, loss, ax=ax)
    before = ax.get_ylim()
    grid = np.arange(100, 2001, 100)
    pred = 2.9 + 1.0 / np.sqrt(grid)  # lower than anything logged
    plot.plot_prediction(grid, pred, lo=pred - 0.05, hi=pred + 0.05, ax=ax)
    low, high = ax.get_ylim()
    assert low < float((pred - 0.05)[grid >= 200].min()) and high >= before[1]
    plt.close(fig)


def test_prediction_figure_shows_the_band():
    pytest.importorskip("matplotlib")
    from cdfast import plot

    plot.use_agg()
    import matplotlib.pyplot as plt

    steps = np.arange(100, 1001, 100)
    loss = 3.0 + 1.0 / np.sqrt(steps)
    lr = np.full(1000, 0.1)
    grid = np.arange(100, 2001, 100)
    pred = 2.95 + 1.0 / np.sqrt(grid)
    fig = plot.prediction_figure(steps, loss, loss, lr, [{"label": "x", "lr": np.full(2000, 0.1), "steps": grid,
                                                          "loss": pred, "lo": pred - 0.2, "hi": pred + 0.01}])
    ax = fig.axes[1]
    assert ax.get_ylim()[0] < float((pred - 0.2)[grid >= 200].min())
    plt.close(fig)


def _exploding_log(path: pathlib.Path) -> pathlib.Path:
    """A loss that falls, then grows 10x every 500 steps without ever becoming non-finite."""
    steps = np.arange(100, 5001, 100)
    loss = 3.0 + 5.0 * steps ** -0.3
    loss = np.where(steps < 3000, loss, loss * 10.0 ** ((steps - 3000) / 500))
    path.write_text("step,loss,lr\n" + "".join(f"{s},{v:.10g},0.001\n" for s, v in zip(steps, loss)))
    return path


def test_a_fit_that_does_not_describe_the_run_predicts_and_plans_nothing(capsys, tmp_path):
    log = _exploding_log(tmp_path / "exploding.csv")
    fit = cdfast.fit_loss_curve(*cdfast.io.read_log(log).curve())
    assert fit.poor_fit is not None and "RMS" in fit.poor_fit
    code, text, err = run(capsys, "predict", log, "--schedule", "cosine", "--steps", "10000")
    assert code == 2 and "no prediction for exploding" in err and "final loss at step" not in text
    code, text, err = run(capsys, "plan", log, "--steps", "10000")
    assert code == 2 and "no plan" in err
    with pytest.raises(ValueError, match="source: no plan"):
        cdfast.plan_schedule(fit, 10_000)
    rep = reporting.report_run(log, boot=0)
    assert rep.predictions == [] and "no predictions under other schedules" in rep.summary()
    # a run the model does describe is not declined
    assert cdfast.fit_loss_curve(*cdfast.io.read_log(cdfast.data.SAMPLE_RUN).curve()).poor_fit is None
