"""The command line never hurts the user.

Every bad input ends with one line on stderr and exit status 2 (never a traceback) and
leaves the user's files as they were (bytes and modification times); an output that
names an input is refused before any work, also through symbolic and hard links; sizes
are checked before allocating; a closed stdout ends quietly and still writes the files;
SIGTERM leaves no temporary files.  Real pipes and signals are tested in subprocesses.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import cdfast
from cdfast import _files, _memory, cli, schedules
from cdfast.data import SAMPLE_RUN
from naive import last_iterate_naive

REPO = pathlib.Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cdfast: error:"), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, err)


def snapshot(folder: pathlib.Path) -> dict:
    """Every entry of ``folder`` (recursively): its bytes and modification time, or its
    link target for a symbolic link."""
    snap = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        if p.is_symlink():
            snap[str(p.relative_to(folder))] = ("link", os.readlink(p))
        elif p.is_file():
            snap[str(p.relative_to(folder))] = (p.read_bytes(), st.st_mtime_ns, st.st_ino)
        else:
            snap[str(p.relative_to(folder))] = ("dir",)
    return snap


def python_m(*argv, cwd, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    return subprocess.run([sys.executable, "-m", "cdfast", *map(str, argv)], cwd=cwd, env=env, text=True,
                          timeout=120, **kwargs)


# ---------------------------------------------------------------------------
# user files: an output that names an input is refused before any work


def _inputs(tmp_path):
    """A W&B export, a loss CSV with its LRs, an LR file, a generic CSV log."""
    (tmp_path / "run.json").write_bytes(SAMPLE_RUN.read_bytes())
    lr = 0.2 * schedules.linear(40)
    steps = np.arange(4, 41, 4)
    (tmp_path / "loss.csv").write_text("step,loss\n" + "".join(
        f"{s},{float(last_iterate_naive(lr[:s], L_star=1.0))!r}\n" for s in steps))
    np.save(tmp_path / "lr.npy", lr)
    (tmp_path / "lr.csv").write_text("lr\n" + "".join(f"{float(v)!r}\n" for v in lr))
    (tmp_path / "log.csv").write_text("step,lr,loss\n" + "".join(
        f"{s},{float(lr[s - 1])!r},{float(last_iterate_naive(lr[:s], L_star=1.0))!r}\n" for s in range(1, 41)))


CLASHES = [
    ("fit", "--wandb", "run.json", "--out", "{0}"),
    ("fit", "run.json", "--out", "{0}"),
    ("fit", "--loss-file", "loss.csv", "--lr-file", "lr.npy", "--out", "{0}"),
    ("fit", "--loss-file", "loss.csv", "--lr-file", "lr.npy", "--plot", "{0}"),
    ("curve", "--lr-file", "lr.csv", "--out", "{0}"),
    ("predict", "log.csv", "--schedule", "cosine", "--steps", "50", "--out", "{0}"),
    ("report", "log.csv", "--no-exam", "--out", "{0}"),
]
TARGETS = {  # the input each command line above would overwrite
    0: "run.json", 1: "run.json", 2: "loss.csv", 3: "lr.npy", 4: "lr.csv", 5: "log.csv", 6: "log.csv"}


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link", "dotted path"])
@pytest.mark.parametrize("k", range(len(CLASHES)))
def test_output_naming_an_input_is_refused(capsys, tmp_path, monkeypatch, k, how):
    monkeypatch.chdir(tmp_path)
    _inputs(tmp_path)
    target = TARGETS[k]
    if how == "same path":
        out = target
    elif how == "symlink":
        out = "alias" + pathlib.Path(target).suffix
        os.symlink(target, out)
    elif how == "hard link":
        out = "twin" + pathlib.Path(target).suffix
        os.link(target, out)
    else:  # another spelling of the input's path
        out = os.path.join("sub", "..", target)
        os.mkdir("sub")
    before = snapshot(tmp_path)
    code, text, err = run(capsys, *(a.format(out) for a in CLASHES[k]))
    assert_usage_error(code, err, "writing it would replace your data")
    assert text == ""  # refused before any work
    assert snapshot(tmp_path) == before


def test_log_file_inside_an_input_folder_is_refused(capsys, tmp_path):
    folder = tmp_path / "lightning_logs"
    folder.mkdir()
    src = REPO / "tests" / "data" / "logs" / "lightning_run" / "metrics.csv"
    (folder / "metrics.csv").write_bytes(src.read_bytes())
    before = snapshot(tmp_path)
    code, _, err = run(capsys, "fit", folder, "--fit-frac", 1, "--out", folder / "metrics.csv")
    assert_usage_error(code, err, "is the input")
    assert snapshot(tmp_path) == before


def test_two_outputs_naming_one_file_are_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink("c.csv", "c.png")
    code, _, err = run(capsys, "curve", "--schedule", "linear", "--steps", 10, "--out", "c.csv", "--plot", "c.png")
    assert_usage_error(code, err, "name the same file")
    assert sorted(os.listdir(tmp_path)) == ["c.png"]


# ---------------------------------------------------------------------------
# the bad inputs of the request, each: one line, status 2, files untouched


def _bad_inputs(tmp_path):
    _inputs(tmp_path)
    np.save(tmp_path / "lr16.npy", (0.001 * schedules.linear(40_000)).astype(np.float16))
    (tmp_path / "folder.npy").mkdir()
    branched = json.loads(SAMPLE_RUN.read_text())
    branched["name"] = "cooldown"
    branched["config"]["resume_from"] = "/ckpt/parent/ckpts/20000"
    for section in ("val", "train"):
        sec = branched["history"][section]
        keep = [i for i, s in enumerate(sec["iter"]) if s >= 20000]
        for key in sec:
            sec[key] = [sec[key][i] for i in keep]
    (tmp_path / "branched.json").write_text(json.dumps(branched))


BAD = [
    (("curve", "--lr-file", "lr16.npy", "--out", "c.csv"), ("float16", "float32")),
    (("curve", "--lr-file", "folder.npy", "--out", "c.csv"), ("is a directory",)),
    (("fit", "--loss-file", "loss.csv", "--lr-file", "folder.npy"), ("is a directory",)),
    (("fit", "--loss-file", "loss.csv", "--lr-file", "lr.npy", "--fit-frac", 2), ("(0, 1]",)),
    (("fit", "--loss-file", "loss.csv", "--lr-file", "lr.npy", "--fit-frac", 0), ("(0, 1]",)),
    (("fit", "branched.json"), ("from step 20000 on", "branched at step 20000", "--fit-frac")),
    (("fit", "run.json", "--loss", "nosuch"), ("no column 'nosuch'", "val_loss")),
    (("fit", "run.json", "--model", "nosuch"), ("unknown model",)),
    (("fit", "missing.json"), ("does not exist",)),
    (("fit", "run.json", "--grad-norm"), ("no gradient norms",)),
    (("fit", "run.json", "run.json", "--lr-file", "lr.npy"), ("several logs",)),
    (("predict", "run.json", "--steps", 100), ("--schedule",)),
    (("predict", "run.json", "--schedule", "cosine"), ("--steps",)),
    (("predict", "run.json", "--schedule", "cosine", "--steps", 200), ("warmup",)),
    (("predict", "run.json", "--schedule", "cosine", "--steps", 1000, "--level", 1.5), ("(0, 1)",)),
    (("report", "missing.json"), ("does not exist",)),
    (("report", "run.json", "--run-schedules", "warp"), ("unknown schedule",)),
    (("compare",), ("PATH",)),
    (("exam", "linear", "--max-steps", "1e13"), ("needs about", "available")),
    (("curve", "--schedule", "cosine", "--steps", "1e12", "--out", "big.csv"), ("needs about", "TB", "available")),
]


@pytest.mark.parametrize("argv,needles", BAD, ids=[" ".join(map(str, a[:3])) for a, _ in BAD])
def test_bad_input_one_line_status_2_files_untouched(capsys, tmp_path, monkeypatch, argv, needles):
    monkeypatch.chdir(tmp_path)
    _bad_inputs(tmp_path)
    before = snapshot(tmp_path)
    code, _, err = run(capsys, *argv)
    assert_usage_error(code, err, *needles)
    assert snapshot(tmp_path) == before


def test_library_lr_and_loss_files_name_a_directory(tmp_path):
    from cdfast.io import read_loss_file, read_lr_file

    with pytest.raises(ValueError, match="is a directory; give a file"):
        read_lr_file(str(tmp_path))
    with pytest.raises(ValueError, match="is a directory; give a file"):
        read_loss_file(str(tmp_path))


def test_fit_help_promises_no_default_peak_lr(capsys):
    assert cli.main(["fit", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "bound-optimal" not in text
    assert "--peak-lr X peak LR of --schedule: required with --schedule" in text


def test_exam_status_for_scripts(capsys):
    assert cli.main(["exam", "linear", "--max-steps", "1e5", "--no-integral"]) == 0
    assert cli.main(["exam", "inverse_sqrt", "--max-steps", "1e5", "--no-integral"]) == 1
    capsys.readouterr()
    assert cli.main(["exam", "--help"]) == 0
    assert "1 not qualified" in " ".join(capsys.readouterr().out.split())


# ---------------------------------------------------------------------------
# sizes before allocating


def test_sizes_are_checked_before_allocating(capsys, tmp_path, monkeypatch):
    """With 1 GB available, 10^8 steps (3 float64 arrays: 2.4 GB) is refused with the
    numbers, before anything is allocated or written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_memory, "available_bytes", lambda: 10**9)
    code, _, err = run(capsys, "curve", "--schedule", "cosine", "--steps", "1e8", "--out", "c.csv")
    need = 3 * 8 * 10**8
    assert_usage_error(code, err, f"--steps 100000000 needs about {need / 1e9:.3g} GB", "(3 arrays of 800 MB)",
                       "only 1 GB is available", "choose a smaller --steps")
    assert os.listdir(tmp_path) == []
    for argv in (("report", "--no-run", "--steps", "1e8"), ("predict", SAMPLE_RUN, "--schedule", "cosine",
                                                            "--steps", "1e8")):
        code, _, err = run(capsys, *argv)
        assert_usage_error(code, err, "needs about", "only 1 GB is available")
    # the library: one clear ValueError instead of a MemoryError
    with pytest.raises(ValueError, match=r"T = 200000000: .* needs about 1.6 GB of memory, but only 1 GB"):
        schedules.cosine(2 * 10**8)
    with pytest.raises(ValueError, match="choose a smaller T"):
        cdfast.asymptotic_constants("linear", T=2 * 10**8)


def test_library_refuses_a_horizon_beyond_memory():
    with pytest.raises(ValueError, match="needs about 8 TB"):
        cdfast.asymptotic_constants("linear", T=10**12)


def test_memory_formatting_and_unknown_memory(monkeypatch):
    assert _memory.format_bytes(8e12) == "8 TB"
    assert _memory.format_bytes(2.4e9) == "2.4 GB"
    assert _memory.format_bytes(512) == "512 B"
    monkeypatch.setattr(_memory, "available_bytes", lambda: None)
    _memory.check_fits(10**15, what="x")  # unknown memory: nothing is refused


# ---------------------------------------------------------------------------
# a closed stdout; SIGTERM (real processes)


def test_closed_stdout_ends_quietly_and_writes_the_plot(tmp_path):
    """stdout is a pipe whose reader has already gone: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        p = python_m("exam", "constant", "--max-steps", "1e5", "--no-integral", "--plot", "x.png", cwd=tmp_path,
                     stdout=write_end)
    finally:
        os.close(write_end)
    assert p.returncode == 1, p.stderr  # the exam's verdict (not qualified), not an error
    assert p.stderr == ""
    assert (tmp_path / "x.png").read_bytes().startswith(PNG)


def test_head_of_a_pipeline(tmp_path):
    """`cdfast ... | head -1` as a user types it."""
    cmd = (f"{sys.executable} -m cdfast curve --schedule cosine --steps 20000 --points 0 --out c.csv "
           f"--plot c.png | head -1")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run(["sh", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0
    assert p.stderr == ""
    assert len(p.stdout.splitlines()) == 1
    rows = (tmp_path / "c.csv").read_text().splitlines()
    assert len(rows) == 20001
    assert (tmp_path / "c.png").read_bytes().startswith(PNG)


def test_sigterm_leaves_no_temporary_files(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "cdfast", "curve", "--schedule", "cosine", "--steps", "3e5",
                             "--points", "0", "--out", "big.json"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    try:
        while not any(n.startswith(_files.TEMP_PREFIX) for n in os.listdir(tmp_path)):
            assert proc.poll() is None, "the run ended before its output was being written"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.strip() == "cdfast: terminated"
    assert os.listdir(tmp_path) == []


def test_sigterm_handler_removes_registered_temporaries(tmp_path):
    """In-process: the handler deletes what atomic_write has not finished."""
    seen = []

    def write(fh):
        fh.write("partial")
        seen.extend(os.listdir(tmp_path))
        cli._on_sigterm(signal.SIGTERM, None)

    with pytest.raises(cli._Terminated):
        _files.atomic_write(tmp_path / "out.csv", write)
    assert len(seen) == 1 and seen[0].startswith(_files.TEMP_PREFIX)
    assert os.listdir(tmp_path) == []
    assert not _files._temporaries


def test_main_restores_stdout_and_signal_handler(capsys):
    before_handler = signal.getsignal(signal.SIGTERM)
    before_stdout = sys.stdout
    assert cli.main(["curve", "--schedule", "nosuch", "--steps", 3, "--out", "x.csv"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before_handler
    assert sys.stdout is before_stdout
