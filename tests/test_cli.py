"""End-to-end tests of the ``cdfast`` command line.

Most tests call ``cdfast.cli.main`` in-process (fast); a few run ``python -m cdfast``
in a subprocess for the real exit status and the absence of tracebacks.  Numbers in
the outputs are checked against the literal formulas of tests/naive.py.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from cdfast import cli, schedules
from naive import average_iterate_naive, last_iterate_naive

PNG = b"\x89PNG\r\n\x1a\n"
REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cdfast: error:"), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, err)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------
# report


def test_report_matches_literal_formulas(capsys, tmp_path):
    """At T = 40 the optimal peak LR and bound agree with a numerical minimisation of
    the nested-sum eq. (2.4), and the average-iterate column with eq. (2.3)."""
    out = tmp_path / "r.json"
    code, text, err = run(capsys, "report", "--no-run", "--steps", 40, "--no-exam", "--D", 2, "--G", 0.5,
                          "--L-star", 1.5, "--repeat", 1, "--out", out)
    assert code == 0, err
    assert "schedule" in text and "last_iterate" in text
    rows = json.loads(out.read_text())
    assert [r["schedule"] for r in rows] == list(cli.DEFAULT_SCHEDULES)
    for r in rows:
        shape = schedules.make(r["schedule"], 40)
        f = lambda log_eta: last_iterate_naive(math.exp(log_eta) * shape, D=2, G=0.5, L_star=1.5)
        best = minimize_scalar(f, bracket=(-5, 2), tol=1e-12)
        assert r["last_iterate"] == pytest.approx(best.fun, rel=1e-10)
        assert r["peak_lr"] == pytest.approx(math.exp(best.x), rel=1e-4)
        assert r["average_iterate"] == pytest.approx(
            average_iterate_naive(r["peak_lr"] * shape, D=2, G=0.5, L_star=1.5), rel=1e-12)
        assert r["backend_rel_diff"] <= 1e-13
        assert r["exam"] == "n/a"


def test_report_fixed_peak_lr_csv_and_plot(capsys, tmp_path):
    out, png = tmp_path / "r.csv", tmp_path / "r.png"
    code, text, err = run(capsys, "report", "--no-run", "--schedules", "linear", "wsd:decay_frac=0.5,decay=sqrt",
                          "--steps", 30, "--peak-lr", 0.1, "--no-exam", "--repeat", 1,
                          "--out", out, "--plot", png)
    assert code == 0, err
    rows = read_csv(out)
    assert [r["schedule"] for r in rows] == ["linear", "wsd:decay_frac=0.5,decay=sqrt"]
    shapes = [schedules.linear(30), schedules.wsd(30, decay_frac=0.5, decay="sqrt")]
    for r, shape in zip(rows, shapes):
        assert float(r["peak_lr"]) == 0.1
        assert float(r["last_iterate"]) == pytest.approx(last_iterate_naive(0.1 * shape), rel=1e-12)
    assert png.read_bytes().startswith(PNG)


def test_report_exam_column(capsys):
    pytest.importorskip("cdfast.asymptotics", reason="cdfast.asymptotics (the exam) is not in this tree")
    code, text, err = run(capsys, "report", "--no-run", "--schedules", "linear", "constant", "--steps", 1000,
                          "--repeat", 1)
    assert code == 0, err
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith(("linear", "constant"))}
    assert " qualified" in lines["linear"] and "not qualified" not in lines["linear"]
    assert "not qualified" in lines["constant"]


# ---------------------------------------------------------------------------
# curve


def test_curve_schedule_matches_naive(capsys, tmp_path):
    out, png = tmp_path / "c.csv", tmp_path / "c.png"
    code, text, err = run(capsys, "curve", "--schedule", "cosine", "--steps", 25, "--peak-lr", 0.3,
                          "--warmup", 3, "--points", 0, "--D", 1.5, "--out", out, "--plot", png)
    assert code == 0, err
    rows = read_csv(out)
    lr = 0.3 * schedules.cosine(25, warmup=3)
    assert [int(r["step"]) for r in rows] == list(range(1, 26))
    np.testing.assert_allclose([float(r["lr"]) for r in rows], lr, rtol=0, atol=0)
    assert float(rows[0]["bound"]) == math.inf  # eta_1 = 0 with warmup from 0: P_1 = 0
    for r in rows[1:]:
        tau = int(r["step"])
        assert float(r["bound"]) == pytest.approx(last_iterate_naive(lr[:tau], D=1.5), rel=1e-12)
    assert png.read_bytes().startswith(PNG)


def test_curve_default_peak_is_optimal_and_points_subsample(capsys, tmp_path):
    out = tmp_path / "c.json"
    code, text, err = run(capsys, "curve", "--schedule", "linear", "--steps", 50, "--points", 7, "--out", out)
    assert code == 0, err
    rows = json.loads(out.read_text())
    assert rows[0]["step"] == 1 and rows[-1]["step"] == 50 and len(rows) == 7
    shape = schedules.linear(50)
    eta = rows[0]["lr"] / shape[0]
    final = rows[-1]["bound"]
    # the chosen peak minimises the final bound: nearby peaks do no better
    for f in (0.98, 1.02):
        assert last_iterate_naive(f * eta * shape) > final
    assert final == pytest.approx(last_iterate_naive(eta * shape), rel=1e-12)


@pytest.mark.parametrize("fmt", ["npy", "csv_header", "csv_plain", "txt"])
def test_curve_lr_file_formats(capsys, tmp_path, fmt):
    lr = np.array([0.2, 0.5, 0.4, 0.1, 0.05])
    if fmt == "npy":
        path = tmp_path / "lr.npy"
        np.save(path, lr)
    elif fmt == "csv_header":
        path = tmp_path / "lr.csv"
        path.write_text("step,learning_rate\n" + "".join(f"{i + 1},{float(v)!r}\n" for i, v in enumerate(lr)))
    elif fmt == "csv_plain":
        path = tmp_path / "lr.csv"
        path.write_text("".join(f"{float(v)!r}\n" for v in lr))
    else:
        path = tmp_path / "lr.txt"
        path.write_text("# my schedule\n" + "".join(f"{float(v)!r}\n" for v in lr) + "\n")
    out = tmp_path / "c.csv"
    code, text, err = run(capsys, "curve", "--lr-file", path, "--out", out)
    assert code == 0, err
    bounds = [float(r["bound"]) for r in read_csv(out)]
    expected = [last_iterate_naive(lr[:t]) for t in range(1, 6)]
    np.testing.assert_allclose(bounds, expected, rtol=1e-12)


# ---------------------------------------------------------------------------
# bench


def test_bench(capsys):
    code, text, err = run(capsys, "bench", "--steps", "100,1e3", "--repeat", 1)
    assert code == 0, err
    assert "largest relative difference between backends" in text
    worst = float(text.strip().splitlines()[-1].split(":")[-1])
    assert worst <= 1e-13


# ---------------------------------------------------------------------------
# bad input: one line on stderr, status 2, nothing written


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


BAD_CURVE = [
    (["--schedule", "nosuch", "--steps", 10], "unknown schedule"),
    (["--schedule", "linear", "--steps", "ten"], "not a number"),
    (["--schedule", "linear", "--steps", 0], "whole number >= 1"),
    (["--schedule", "linear", "--steps", 10, "--peak-lr", "-1"], "must be > 0"),
    (["--schedule", "linear", "--steps", 10, "--peak-lr", "nan"], "not a finite number"),
    (["--schedule", "linear"], "needs --steps"),
    (["--schedule", "wsd:decay_frac=2", "--steps", 10], "decay_frac"),
    (["--schedule", "wsd:bogus=1", "--steps", 10], "bogus"),
    (["--schedule", "linear", "--steps", 10, "--warmup", 11], "warmup"),
    (["--steps", 10], "give a schedule"),
    (["--lr-file", "missing.npy"], "does not exist"),
]


@pytest.mark.parametrize("argv,needle", BAD_CURVE)
def test_curve_bad_arguments(capsys, tmp_path, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "curve", *argv, "--out", "c.csv")
    assert_usage_error(code, err, needle)
    assert os.listdir(tmp_path) == []


BAD_LR_FILES = [
    ("nan.txt", "0.1\nnan\n0.2\n", "lr[1] is nan"),
    ("neg.csv", "lr\n0.1\n-0.2\n0.3\n", "lr[1] = -0.2 is negative"),
    ("zero.txt", "0.1\n0.2\n0\n", "final learning rate) is 0"),
    ("word.txt", "0.1\nabc\n", "'abc' is not a number"),
    ("two.csv", "1,2\n3,4\n", "2 columns"),
    ("empty.txt", "\n\n", "is empty"),
    ("cols.csv", "a,b\n1,2\n", "no column named"),
]


@pytest.mark.parametrize("name,text,needle", BAD_LR_FILES)
def test_curve_bad_lr_files(capsys, tmp_path, name, text, needle):
    path = _write(tmp_path, name, text)
    out = tmp_path / "c.csv"
    code, _, err = run(capsys, "curve", "--lr-file", path, "--out", out)
    assert_usage_error(code, err, needle)
    assert not out.exists()


def test_bad_npy_and_binary_files(capsys, tmp_path):
    bad = tmp_path / "lr.npy"
    bad.write_bytes(b"not numpy at all")
    code, _, err = run(capsys, "curve", "--lr-file", bad, "--out", tmp_path / "c.csv")
    assert_usage_error(code, err, ".npy")
    binary = tmp_path / "lr.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    code, _, err = run(capsys, "curve", "--lr-file", binary, "--out", tmp_path / "c.csv")
    assert_usage_error(code, err, "not a text file")


def test_bad_output_paths(capsys, tmp_path):
    code, _, err = run(capsys, "curve", "--schedule", "linear", "--steps", 5, "--out", tmp_path / "no" / "c.csv")
    assert_usage_error(code, err, "does not exist")
    code, _, err = run(capsys, "curve", "--schedule", "linear", "--steps", 5, "--out", tmp_path / "c.txt")
    assert_usage_error(code, err, "must end in .csv or .json")
    code, _, err = run(capsys, "report", "--no-run", "--steps", 5, "--plot", tmp_path / "r.pdf")
    assert_usage_error(code, err, ".png")
    assert os.listdir(tmp_path) == []


def test_report_bad_input(capsys):
    code, _, err = run(capsys, "report", "--schedules", "linear", "warp")
    assert_usage_error(code, err, "unknown schedule 'warp'")
    code, _, err = run(capsys, "report", "--steps", "1e6.5")
    assert_usage_error(code, err, "not a number")
    code, _, err = run(capsys, "report", "--no-run", "--D", 0, "--steps", 10)
    assert_usage_error(code, err, "--peak-lr")
    code, _, err = run(capsys, "nosuchcommand")
    assert_usage_error(code, err, "invalid choice")


def test_missing_matplotlib_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    out = tmp_path / "c.csv"
    code, _, err = run(capsys, "curve", "--schedule", "linear", "--steps", 5, "--out", out,
                       "--plot", tmp_path / "c.png")
    assert_usage_error(code, err, 'pip install "cdfast[plot]"')
    assert os.listdir(tmp_path) == []


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "t.csv"

    def write(fh):
        fh.write("step,lr\n1,0.5\n")
        raise OSError("disk full")

    with pytest.raises(OSError):
        cli.atomic_write(str(target), write)
    assert os.listdir(tmp_path) == []
    target.write_text("old\n")
    with pytest.raises(OSError):
        cli.atomic_write(str(target), write)
    assert target.read_text() == "old\n"  # the previous file survives intact
    assert os.listdir(tmp_path) == ["t.csv"]


def test_help_and_no_command(capsys):
    assert cli.main(["--help"]) == 0
    assert "report" in capsys.readouterr().out
    assert cli.main([]) == 2


def test_schedule_spec_parsing():
    assert cli.parse_schedule("wsd:decay_frac=0.25,decay=sqrt") == ("wsd", {"decay_frac": 0.25, "decay": "sqrt"})
    assert cli.parse_schedule("inverse-sqrt") == ("inverse_sqrt", {})
    with pytest.raises(cli.CliError, match="key=value"):
        cli.parse_schedule("wsd:decay_frac")


# ---------------------------------------------------------------------------
# real processes: exit status, stderr, no traceback


def _python_m(*argv, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "cdfast", *map(str, argv)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


def test_subprocess_bad_input_exit_status(tmp_path):
    p = _python_m("curve", "--schedule", "linear", "--steps", "abc", "--out", "c.csv", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("cdfast: error:") and len(p.stderr.strip().splitlines()) == 1
    assert "Traceback" not in p.stderr
    (tmp_path / "lr.txt").write_text("0.1\n0.0\n")
    p = _python_m("curve", "--lr-file", "lr.txt", "--out", "c.csv", cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "final learning rate" in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["lr.txt"]


def test_subprocess_report_runs(tmp_path):
    p = _python_m("report", "--no-run", "--steps", 1000, "--no-exam", "--repeat", 1, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for name in cli.DEFAULT_SCHEDULES:
        assert name in p.stdout
    assert p.stderr == "" or "not available" in p.stderr  # no progress line when stderr is a pipe


# ---------------------------------------------------------------------------
# exam


def test_exam_named_and_file(capsys, tmp_path):
    pytest.importorskip("cdfast.asymptotics", reason="cdfast.asymptotics (the exam) is not in this tree")
    import cdfast

    png = tmp_path / "e.png"
    code, text, err = run(capsys, "exam", "linear", "--max-steps", "1e5", "--no-integral", "--plot", png)
    assert code == 0, err
    assert "linear: QUALIFIED" in text
    row = next(line.split() for line in text.splitlines() if line.startswith("1000 "))
    assert float(row[1]) == pytest.approx(math.sqrt(1000) * cdfast.last_iterate_bound(schedules.linear(1000) / math.sqrt(1000)),
                                          rel=1e-3)  # printed to 4 digits
    assert png.read_bytes().startswith(PNG)
    code, text, err = run(capsys, "exam", "constant", "--max-steps", "1e5")
    assert code == cli.EXIT_NOT_QUALIFIED == 1, err  # not qualified: status 1, for scripts
    assert "NOT QUALIFIED" in text and err == ""
    lr = _write(tmp_path, "lr.txt", "".join(f"{v!r}\n" for v in (1.0, 0.8, 0.5, 0.2, 0.1)))
    code, text, err = run(capsys, "exam", "--lr-file", lr, "--max-steps", "1e5")
    assert code == 1, err
    assert "NOT QUALIFIED" in text and "does not decay to 0" in text


def test_exam_bad_input(capsys, tmp_path):
    pytest.importorskip("cdfast.asymptotics", reason="cdfast.asymptotics (the exam) is not in this tree")
    code, _, err = run(capsys, "exam", "warp")
    assert_usage_error(code, err, "unknown schedule")
    code, _, err = run(capsys, "exam")
    assert_usage_error(code, err, "give either")
    zero = _write(tmp_path, "z.txt", "1\n0.5\n0\n")
    code, _, err = run(capsys, "exam", "--lr-file", zero)
    assert_usage_error(code, err, "final learning rate")
    code, _, err = run(capsys, "exam", "linear", "--max-steps", 100)
    assert_usage_error(code, err, "--max-steps")


# ---------------------------------------------------------------------------
# fit


def _synthetic_log(tmp_path, L=1.3, D2=0.4, G2=0.2, T=120, every=6):
    """A loss log that follows eq. (2.4) exactly (nested-sum formula) for known constants."""
    lr = 0.2 * schedules.linear(T)
    steps = np.arange(every, T + 1, every)
    loss = [last_iterate_naive(lr[:t], D=math.sqrt(D2), G=math.sqrt(G2), L_star=L) for t in steps]
    (tmp_path / "loss.csv").write_text("step,loss\n" + "".join(f"{s},{v!r}\n" for s, v in zip(steps, loss)))
    np.save(tmp_path / "lr.npy", lr)
    return lr, steps, np.array(loss)


def _constants(text):
    """The ``name = value`` pairs of the ``model ...:`` line."""
    line = next(x for x in text.splitlines() if x.startswith("model "))
    return {k.strip(): float(v) for k, v in (kv.split(" = ") for kv in line.split(": ", 1)[1].split("   "))}


def test_fit_recovers_constants(capsys, tmp_path):
    lr, steps, loss = _synthetic_log(tmp_path)
    out, png = tmp_path / "f.csv", tmp_path / "f.png"
    code, text, err = run(capsys, "fit", "--loss-file", tmp_path / "loss.csv", "--lr-file", tmp_path / "lr.npy",
                          "--model", "bound", "--out", out, "--plot", png, "--predict", "cosine")
    assert code == 0, err
    consts = _constants(text)
    assert consts["L_inf"] == pytest.approx(1.3, rel=1e-5)
    assert consts["D_sq"] == pytest.approx(0.4, rel=1e-5)
    assert consts["G_sq"] == pytest.approx(0.2, rel=1e-5)
    rows = read_csv(out)
    np.testing.assert_allclose([float(r["fitted"]) for r in rows], loss, rtol=1e-8)
    assert sum(int(r["used_for_fit"]) for r in rows) == int((steps <= 60).sum())
    expected = last_iterate_naive(0.2 * schedules.cosine(120), D=math.sqrt(0.4), G=math.sqrt(0.2), L_star=1.3)
    pred = float(text.split("predicted final loss under cosine")[1].split(") = ")[1].split()[0])
    assert pred == pytest.approx(expected, rel=1e-5)
    assert png.read_bytes().startswith(PNG)


def test_fit_with_schedule_spec(capsys, tmp_path):
    _synthetic_log(tmp_path)
    code, text, err = run(capsys, "fit", "--loss-file", tmp_path / "loss.csv", "--schedule", "linear",
                          "--steps", 120, "--peak-lr", 0.2, "--fit-frac", 1, "--model", "bound")
    assert code == 0, err
    assert _constants(text)["L_inf"] == pytest.approx(1.3, rel=1e-6)


def test_fit_bad_input(capsys, tmp_path):
    _synthetic_log(tmp_path)
    lrf = str(tmp_path / "lr.npy")
    nan = _write(tmp_path, "nan.csv", "step,loss\n1,3.0\n2,nan\n3,2.5\n")
    code, _, err = run(capsys, "fit", "--loss-file", nan, "--lr-file", lrf)
    assert_usage_error(code, err, "row 2", "loss is nan")
    unsorted = _write(tmp_path, "u.csv", "step,loss\n2,3.0\n1,2.9\n")
    code, _, err = run(capsys, "fit", "--loss-file", unsorted, "--lr-file", lrf)
    assert_usage_error(code, err, "strictly increasing")
    nocol = _write(tmp_path, "n.csv", "time,value\n1,3.0\n")
    code, _, err = run(capsys, "fit", "--loss-file", nocol, "--lr-file", lrf)
    assert_usage_error(code, err, "'step' and 'loss'")
    code, _, err = run(capsys, "fit", "--loss-file", tmp_path / "loss.csv", "--schedule", "linear", "--steps", 120)
    assert_usage_error(code, err, "--peak-lr")
    code, _, err = run(capsys, "fit", "--loss-file", tmp_path / "loss.csv", "--schedule", "linear", "--steps", 50,
                       "--peak-lr", 0.1)
    assert_usage_error(code, err, "only 50 steps")
    code, _, err = run(capsys, "fit", "--lr-file", lrf)
    assert_usage_error(code, err, "--loss-file")
    bad_json = _write(tmp_path, "run.json", "{not json")
    code, _, err = run(capsys, "fit", "--wandb", bad_json)
    assert_usage_error(code, err, "run.json")


def test_fit_wandb_export(capsys):
    """The W&B export shipped with cdfast, fitted with the paper's form (and --wandb, the older spelling)."""
    from cdfast.data import SAMPLE_RUN

    code, text, err = run(capsys, "fit", "--wandb", SAMPLE_RUN, "--model", "bound", "--burn-in", 2000)
    assert code == 0, err
    r2 = float(text.split("R^2 (fitted points) = ")[1].split()[0])
    assert r2 > 0.95
