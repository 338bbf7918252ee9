"""Hostile input, one table: every public function and every command of the command line.

Each row feeds one bad thing (NaN, inf, a masked, float16 or huge array, a corrupt, deeply
nested, empty or diverged log, a named pipe, a device, a closed stdout, a signal) to one
entry point and states how it must end: a correct result, a warning that says what
happened, or one clear error naming the argument (on the command line: one line on
stderr and exit status 2).  Never a traceback, a silent NaN, a hang, or a lost or
replaced file.  docs/cli.md states these guarantees.

The library rows run in-process; the command rows call ``cdfast.cli.main`` in-process
too, except for what only a real process shows (a closed stdout, signals), which runs
in a few subprocesses started together.  Property tests (hypothesis) check the bounds'
invariants on random schedules.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import signal
import stat
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cdfast
from cdfast import cli, io, models, schedules

REPO = pathlib.Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------
# Expectations


@dataclass(frozen=True)
class Raises:
    """One clear error: this type, with every needle in its message (one line)."""

    exc: type
    needles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Warns:
    """A result, with a warning of this category whose message holds every needle; then
    ``check(result)`` must hold."""

    category: type
    needles: tuple[str, ...]
    check: Callable[[Any], bool] = lambda r: True


@dataclass(frozen=True)
class Returns:
    """A result (no warning) for which ``check(result)`` holds."""

    check: Callable[[Any], bool]


def finite(x: Any) -> bool:
    return bool(np.all(np.isfinite(np.asarray(x, dtype=np.float64))))


def raises(exc: type, *needles: str) -> Raises:
    return Raises(exc, needles)


# ---------------------------------------------------------------------------
# The files the rows read (built once)

T_LOG = 400


def _write_log(path: pathlib.Path, lr: np.ndarray, loss_at: Callable[[int], float], every: int = 10,
               first_step: int = 1) -> None:
    with open(path, "w") as fh:
        fh.write("step,loss,lr\n")
        for s in range(first_step, lr.shape[0] + 1):
            loss = loss_at(s) if s % every == 0 else ""
            fh.write(f"{s},{loss},{float(lr[s - 1])!r}\n")


class Files:
    """Paths of every hostile (and one healthy) input, in one folder."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        lr = 0.01 * schedules.cosine(T_LOG, final=0.1)
        self.good = root / "good.csv"
        _write_log(self.good, lr, lambda s: 3.0 + 1.0 / math.sqrt(s))
        self.diverged = root / "diverged.csv"  # inf from step 300 on
        _write_log(self.diverged, lr, lambda s: 3.0 + 1.0 / math.sqrt(s) if s < 300 else math.inf)
        self.zero_lr = root / "zero_lr.csv"  # a linear decay to exactly 0 at the last logged step
        lin = 0.01 * schedules.linear(T_LOG)
        lin[-1] = 0.0
        _write_log(self.zero_lr, lin, lambda s: 3.0 + 1.0 / math.sqrt(s))
        # a Hugging Face trainer_state.json whose loss is logged as NaN from step 60 (on w_59)
        hist = [{"step": k, "epoch": k / 100, "learning_rate": 1e-3 * (1 - k / 100),
                 "loss": 3.0 + 1.0 / math.sqrt(k) if k < 60 else math.nan} for k in range(10, 101, 10)]
        hist += [{"step": k, "eval_loss": 3.1} for k in (50,)]  # an eval row: no "loss" key, not a NaN
        self.hf_nan = root / "trainer_state.json"
        self.hf_nan.write_text(json.dumps({"log_history": hist, "max_steps": 100, "global_step": 100}))
        # W&B history rows whose loss overflows to inf at step 60; rows without the key are not NaN losses
        rows = [{"_step": k, "train/loss": 3.0 + 1.0 / math.sqrt(k) if k < 60 else math.inf, "lr": 1e-3}
                if k % 2 else {"_step": k, "lr": 1e-3} for k in range(1, 101)]
        self.wandb_inf = root / "history.json"
        self.wandb_inf.write_text(json.dumps(rows))
        self.extra_field = root / "extra_field.csv"  # read as it stands, pandas would shift every column
        self.extra_field.write_text("step,loss,lr\n1,10,3.0,0.1\n2,20,2.9,0.1\n")
        self.inf_lr = root / "inf_lr.csv"
        self.inf_lr.write_text("step,loss,lr\n1,3.0,inf\n2,2.9,0.1\n3,2.8,0.1\n")
        self.huge_step = root / "huge_step.csv"  # a corrupt step: T = 1e11 would need terabytes
        self.huge_step.write_text("step,loss,lr\n1,3.0,0.1\n100000000000,2.9,0.1\n")
        self.negative = root / "negative.csv"
        self.negative.write_text("step,loss,lr\n-5,3.5,0.01\n10,3.3,0.01\n20,3.2,0.01\n30,3.1,0.01\n")
        self.deep = root / "deep.json"
        self.deep.write_text("[" * 100_000)
        self.corrupt = root / "corrupt.json"
        self.corrupt.write_text('{"log_history": [{"step": 1, "loss": ')
        self.empty = root / "empty.csv"
        self.empty.write_text("")
        self.binary = root / "binary.log"
        self.binary.write_bytes(b"\x00\x01\x02garbage\x00" * 50)
        self.nan_lr = root / "nan_lr.csv"
        self.nan_lr.write_text("lr\n0.01\nnan\n0.01\n")
        self.fifo = root / "pipe.csv"
        os.mkfifo(self.fifo)
        self.out_dir = root / "out"
        self.out_dir.mkdir()
        # a copy of /dev/full: writing it fails, replacing it loses the device
        self.device = root / "full.csv"
        self.device_png = root / "full.png"
        try:
            for p in (self.device, self.device_png):
                os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
            self.have_device = True
        except (PermissionError, OSError):
            self.have_device = False

    def device_intact(self) -> bool:
        return all(stat.S_ISCHR(os.stat(p).st_mode) for p in (self.device, self.device_png))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    return Files(tmp_path_factory.mktemp("hostile"))


# ---------------------------------------------------------------------------
# Arrays

LR = 0.01 * schedules.cosine(200, final=0.1)
NAN = LR.copy()
NAN[17] = np.nan
INF = LR.copy()
INF[17] = np.inf
NEG = LR.copy()
NEG[17] = -1e-3
MASKED = np.ma.masked_array(LR.copy(), mask=np.arange(200) == 17)
MASKED.data[17] = 1e6  # the hidden value must not be read
F16 = LR.astype(np.float16)
HUGE = np.full(100, 1e300)
ZERO_END = np.r_[LR[:-1], 0.0]
STEPS = np.arange(10, 201, 10)
LOSS = 3.0 + 1.0 / np.sqrt(STEPS)


def _fit(lr=LR, steps=STEPS, loss=LOSS, **kw):
    kw.setdefault("model", "bound")
    return cdfast.fit_loss_curve(lr, steps, loss, **kw)


def _read(path_attr: str, **kw):
    return lambda f: io.read_log(getattr(f, path_attr), **kw)


# Every row: (id, thunk taking the Files, expectation).  Thunks that do not need files
# ignore their argument.
LIBRARY = [
    # --- bounds: arrays with NaN, inf, negative, masked, float16, huge, empty, wrong type
    ("last_iterate_bound-nan", lambda f: cdfast.last_iterate_bound(NAN), raises(ValueError, "lr[17] is nan")),
    ("last_iterate_bound-inf", lambda f: cdfast.last_iterate_bound(INF), raises(ValueError, "lr[17] is inf")),
    ("last_iterate_bound-negative", lambda f: cdfast.last_iterate_bound(NEG), raises(ValueError, "lr[17]", "negative")),
    ("last_iterate_bound-masked", lambda f: cdfast.last_iterate_bound(MASKED), raises(ValueError, "lr[17] is masked")),
    ("last_iterate_bound-float16", lambda f: cdfast.last_iterate_bound(F16),
     Returns(lambda r: r == cdfast.last_iterate_bound(F16.astype(np.float64)))),
    ("last_iterate_bound-huge-lr", lambda f: cdfast.last_iterate_bound(HUGE), raises(ValueError, "overflow")),
    ("last_iterate_bound-huge-D", lambda f: cdfast.last_iterate_bound(np.full(100, 0.01), D=1e300),
     raises(ValueError, "D = 1e+300", "overflow")),
    ("last_iterate_bound-huge-G", lambda f: cdfast.last_iterate_bound(np.full(100, 0.01), G=1e300),
     raises(ValueError, "G = 1e+300", "overflow")),
    ("last_iterate_bound-nan-D", lambda f: cdfast.last_iterate_bound(LR, D=np.nan), raises(ValueError, "D = nan")),
    ("last_iterate_bound-empty", lambda f: cdfast.last_iterate_bound([]), raises(ValueError, "lr is empty")),
    ("last_iterate_bound-string", lambda f: cdfast.last_iterate_bound("0.1"), raises(TypeError, "lr")),
    ("last_iterate_bound-zero-final", lambda f: cdfast.last_iterate_bound(ZERO_END),
     raises(ValueError, "final learning rate", "is 0")),
    ("last_iterate_bound-all-zero", lambda f: cdfast.last_iterate_bound(np.zeros(10)), raises(ValueError, "all zeros")),
    ("bound_curve-huge-D", lambda f: cdfast.bound_curve(LR, D=1e300), raises(ValueError, "D = 1e+300", "overflow")),
    ("bound_curve-zero-lr-step", lambda f: cdfast.bound_curve(ZERO_END),
     Returns(lambda r: np.isinf(r[-1]) and finite(r[:-1]))),  # eq. (2.4) itself is infinite there (docs/math.md)
    ("average_iterate_bound-masked", lambda f: cdfast.average_iterate_bound(MASKED), raises(ValueError, "masked")),
    ("average_iterate_bound-huge-D", lambda f: cdfast.average_iterate_bound(LR, D=1e300), raises(ValueError, "D = 1e+300")),
    ("bound_terms-nan", lambda f: cdfast.bound_terms(NAN), raises(ValueError, "lr[17] is nan")),
    ("bound_terms-grad_sq-masked", lambda f: cdfast.bound_terms(LR, grad_sq=np.ma.masked_array(np.ones(200), mask=np.arange(200) == 3)),
     raises(ValueError, "grad_sq[3] is masked")),
    ("bound_curve-nan", lambda f: cdfast.bound_curve(NAN), raises(ValueError, "lr[17] is nan")),
    ("bound_curve-at-outside", lambda f: cdfast.bound_curve(LR, at=[0, 5]), raises(ValueError, "at[0] = 0")),
    ("bound_curve-at-nan", lambda f: cdfast.bound_curve(LR, at=[1.0, np.nan]), raises(TypeError, "at[1]")),
    ("bound_curve-at-masked", lambda f: cdfast.bound_curve(LR, at=np.ma.masked_array([1, 2], mask=[0, 1])),
     raises(ValueError, "at[1] is masked")),
    ("bound_curve_terms-inf", lambda f: cdfast.bound_curve_terms(INF), raises(ValueError, "lr[17] is inf")),
    ("bound_gradient-nan", lambda f: cdfast.bound_gradient(NAN), raises(ValueError, "lr[17] is nan")),
    ("bound_gradient-masked", lambda f: cdfast.bound_gradient(MASKED), raises(ValueError, "masked")),
    ("bound_gradient-zero-final", lambda f: cdfast.bound_gradient(ZERO_END), raises(ValueError, "is 0")),
    ("average_bound_gradient-nan", lambda f: cdfast.average_bound_gradient(NAN), raises(ValueError, "lr[17] is nan")),
    # --- asymptotics, peak LRs
    ("optimal_peak_lr-nan-shape", lambda f: cdfast.optimal_peak_lr(NAN), raises(ValueError, "nan")),
    ("optimal_peak_lr-inf-D", lambda f: cdfast.optimal_peak_lr(LR, D=np.inf), raises(ValueError, "D = inf")),
    ("bound_vs_peak_lr-nan", lambda f: cdfast.bound_vs_peak_lr(LR, [0.1, np.nan]), raises(ValueError, "peak_lrs[1]")),
    ("bound_vs_peak_lr-subnormal", lambda f: cdfast.bound_vs_peak_lr(LR, [1e-320]), raises(ValueError, "overflow")),
    ("asymptotic_constants-unknown", lambda f: cdfast.asymptotic_constants("cosinus", T=100),
     raises(ValueError, "cosinus")),
    ("asymptotic_constants-T-zero", lambda f: cdfast.asymptotic_constants("linear", T=0), raises(ValueError, "T = 0")),
    ("qualifying_exam-unknown", lambda f: cdfast.qualifying_exam("cosinus"), raises(ValueError, "cosinus")),
    ("qualifying_exam-final-nan", lambda f: cdfast.qualifying_exam("cosine", final=np.nan), raises(TypeError, "final", "nan")),
    ("Q-nan", lambda f: cdfast.Q([0.1, np.nan], "linear", T=100), raises(ValueError, "eta_ref[1] = nan")),
    ("Q-subnormal", lambda f: cdfast.Q(1e-320, "linear", T=100), raises(ValueError, "overflow")),
    ("optimal_eta_ref-D-inf", lambda f: cdfast.optimal_eta_ref("linear", D=np.inf), raises(ValueError, "D = inf")),
    ("table1-T-zero", lambda f: cdfast.table1(T=0), raises(ValueError, "T = 0")),
    # --- schedules
    ("schedules.with_warmup-nan", lambda f: schedules.with_warmup(np.array([1.0, np.nan]), 1),
     raises(ValueError, "shape[1] is nan")),
    ("schedules.continuous-outside", lambda f: schedules.continuous("cosine")(np.array([-0.5, 1.5, np.nan])),
     raises(ValueError, "x[0] = -0.5", "[0, 1]")),
    ("schedules.continuous-nan", lambda f: schedules.continuous("linear")(np.array([0.5, np.nan])),
     raises(ValueError, "x[1] = nan")),
    ("schedules.refined-tiny", lambda f: schedules.refined(np.ones(5) * 1e-200),
     Returns(lambda r: np.allclose(r, schedules.refined(np.ones(5))))),
    ("schedules.refined-huge-range", lambda f: schedules.refined(np.array([1e-200, 1.0])),
     raises(ValueError, "orders of magnitude")),
    ("schedules.refined-nan", lambda f: schedules.refined(np.array([1.0, np.nan])), raises(ValueError, "grad_norms[1]")),
    ("schedules.with_warmup-complex", lambda f: schedules.with_warmup(np.ones(4, complex), 1),
     raises(TypeError, "shape must hold real numbers")),
    ("schedules.from_callable-complex", lambda f: schedules.from_callable(lambda t: 0.1 + 0j, 3),
     raises(TypeError, "fn(0)", "not a real number")),
    ("schedules.cosine-T-zero", lambda f: schedules.cosine(0), raises(ValueError, "T = 0")),
    ("schedules.cosine-T-huge", lambda f: schedules.cosine(10**13), raises(ValueError, "memory")),
    ("schedules.cosine-T-float", lambda f: schedules.cosine(10.5), raises(TypeError, "10.5")),
    ("schedules.make-unknown", lambda f: schedules.make("cosinus", 10), raises(ValueError, "cosinus")),
    ("schedules.from_callable-nan", lambda f: schedules.from_callable(lambda t: np.where(t == 3, np.nan, 0.1), 10),
     raises(ValueError, "lr[3] is nan")),
    # --- fitting
    ("fit_loss_curve-nan-loss", lambda f: _fit(loss=np.r_[LOSS[:-1], np.nan]), raises(ValueError, "loss[19]")),
    ("fit_loss_curve-inf-loss", lambda f: _fit(loss=np.r_[LOSS[:-1], np.inf]), raises(ValueError, "loss[19]", "inf")),
    ("fit_loss_curve-masked-loss", lambda f: _fit(loss=np.ma.masked_array(LOSS, mask=np.arange(20) == 4)),
     raises(ValueError, "loss[4] is masked")),
    ("fit_loss_curve-negative-step", lambda f: _fit(steps=np.r_[-10, STEPS[1:]]), raises(ValueError, "steps[0] = -10")),
    ("fit_loss_curve-huge-steps", lambda f: _fit(steps=np.r_[STEPS[:-1], 1e300]), raises(TypeError, "steps[19]")),
    ("fit_loss_curve-float16-loss", lambda f: _fit(loss=LOSS.astype(np.float16)), Returns(lambda r: finite(r.r2))),
    ("fit_loss_curve-constant-loss", lambda f: _fit(loss=np.full(20, 3.0)),
     Warns(cdfast.FitWarning, ("sits on its bound",), lambda r: r.r2 == 1.0)),
    ("fit_loss_curve-loss-1e300", lambda f: _fit(loss=1e300 * LOSS),
     Returns(lambda r: finite(r.r2) and abs(r.r2 - _fit().r2) < 1e-9)),
    ("fit_loss_curve-zero-final-lr", lambda f: _fit(lr=ZERO_END),
     Returns(lambda r: finite(r.prediction) and r.prediction[-1] == r.predict(ZERO_END, at=[199])[0])),
    ("fit_loss_curve-default-zero-final-lr", lambda f: _fit(lr=ZERO_END, model=None),
     Returns(lambda r: finite(r.prediction))),
    ("fit_loss_curve-diverged", lambda f: _fit(divergence=(210, math.inf)),
     Warns(cdfast.FitWarning, ("diverged", "step 210"), lambda r: r.diverged and "diverged" in r.summary())),
    ("fit_loss_curve-bad-divergence", lambda f: _fit(divergence="yes"), raises(TypeError, "divergence")),
    ("fit_loss_curves-mismatch", lambda f: cdfast.fit_loss_curves([LR, LR], [STEPS], [LOSS]),
     raises(ValueError, "one entry per run")),
    ("CurveFit.predict-nan", lambda f: _fit().predict(NAN), raises(ValueError, "lr[17] is nan")),
    ("CurveFit.predict-zero-final", lambda f: _fit().predict(ZERO_END),
     Returns(lambda r: finite(r) and r[-1] == r[-2])),
    ("CurveFit.interval-level", lambda f: _fit().interval(LR, level=1.5), raises(ValueError, "level = 1.5")),
    ("fit_peak_lr_law-nan", lambda f: cdfast.fit_peak_lr_law([1e-3, 2e-3, np.nan], [1000] * 3, [3.0, 2.9, 2.95]),
     raises(ValueError, "nan")),
    ("fit_peak_lr_law-subnormal", lambda f: cdfast.fit_peak_lr_law([1e-320] * 3, [1000] * 3, [3.0, 2.9, 2.95]),
     raises(ValueError, "peak_lr[0] = 1e-320", "overflows")),
    ("fit_horizon_law-two-points", lambda f: cdfast.fit_horizon_law([100, 200], [3.0, 2.9]),
     Warns(UserWarning, ("no standard", "third horizon"), lambda r: "exactly" in r.summary())),
    ("fit_horizon_law-loss-1e300", lambda f: cdfast.fit_horizon_law([100, 200, 400], [3e300, 2.9e300, 2.86e300]),
     Returns(lambda r: finite([r.L_inf, r.k, r.r2, r.L_inf_se])
             and np.isclose(r.r2, cdfast.fit_horizon_law([100, 200, 400], [3.0, 2.9, 2.86]).r2))),
    ("fit_horizon_law-nan", lambda f: cdfast.fit_horizon_law([100, 200, 400], [3.0, np.nan, 2.8]),
     raises(ValueError, "loss[1]")),
    ("fit_horizon_law_by_group-nan", lambda f: cdfast.fit_horizon_law_by_group([1, 1, 1], [100, 200, np.nan],
                                                                               [3.0, 2.9, 2.8]), raises(ValueError, "nan")),
    ("fit_chinchilla_law-nan", lambda f: cdfast.fit_chinchilla_law([1e6, np.nan, 1e7], [1e9, 1e9, 1e10], [3.0, 2.9, 2.8]),
     raises(ValueError, "nan")),
    ("ScalingLaw2D.fit-nan", lambda f: cdfast.ScalingLaw2D.fit([1e6, 1e6], [1e3, 1e4], [1e-3, np.nan], [3.0, 2.9]),
     raises(ValueError, "nan")),
    ("optimal_schedule-T-zero", lambda f: cdfast.optimal_schedule(0), raises(ValueError, "T = 0")),
    ("optimal_schedule-T-huge", lambda f: cdfast.optimal_schedule(10**13), raises(ValueError, "memory")),
    ("optimal_schedule-peak-nan", lambda f: cdfast.optimal_schedule(100, peak_lr=np.nan), raises(ValueError, "peak_lr")),
    ("sweep-T-empty", lambda f: cdfast.sweep("cosine", []), raises(ValueError, "T is empty")),
    ("sweep-T-zero", lambda f: cdfast.sweep("cosine", [0]), raises(ValueError, "0")),
    ("sweep-peak-subnormal", lambda f: cdfast.sweep("cosine", [100], peak_lr=[1e-320], exam=False),
     raises(ValueError, "overflow")),
    ("sweep-peak-nan", lambda f: cdfast.sweep("cosine", [100], peak_lr=[np.nan]), raises(ValueError, "peak_lr")),
    ("compare_models-empty", lambda f: cdfast.compare_models([]), raises(ValueError, "run")),
    ("models.Param-lo-above-hi", lambda f: models.Param("a", 2.0, 1.0), raises(ValueError, "lo = 2.0 > hi = 1.0")),
    ("models.Param-nan", lambda f: models.Param("a", np.nan, 1.0), raises(ValueError, "lo = nan")),
    ("models.Leaderboard-empty", lambda f: models.Leaderboard([], []).best, raises(ValueError, "empty")),
    ("models.get_model-unknown", lambda f: models.get_model("nope"), raises(ValueError, "nope")),
    # --- logs: corrupt, deep, empty, binary, diverged, negative steps, zero final LR, pipes, devices
    ("read_log-diverged", _read("diverged"),
     Warns(io.LogWarning, ("diverged", "step 300", "inf"),
           lambda r: r.divergence == (300, math.inf) and r.steps[-1] == 290 and finite(r.loss))),
    ("read_log-hf-nan-loss", _read("hf_nan", loss="loss"),
     Warns(io.LogWarning, ("diverged", "nan"), lambda r: r.divergence[0] == 59 and math.isnan(r.divergence[1]))),
    ("read_log-wandb-inf-loss", _read("wandb_inf"),
     Warns(io.LogWarning, ("diverged", "step 61"), lambda r: r.divergence == (61, math.inf) and r.steps[-1] == 59)),
    ("read_log-zero-final-lr", _read("zero_lr"), Returns(lambda r: r.lr[-1] == 0.0 and r.divergence is None)),
    ("read_log-good", _read("good"), Returns(lambda r: r.divergence is None and r.steps.size == T_LOG // 10)),
    ("read_log-negative-step", _read("negative"), raises(ValueError, "step -5", "negative")),
    ("read_log-extra-field", _read("extra_field"), raises(ValueError, "data row 1 has 4 fields", "3 columns")),
    ("read_log-inf-lr", _read("inf_lr"), raises(ValueError, "LR of inf at step 1")),
    ("read_log-huge-step", _read("huge_step"), raises(ValueError, "T = 100000000000", "memory")),
    ("read_log-deep-json", _read("deep"), raises(ValueError, "deep.json", "nested too deeply")),
    ("read_log-corrupt-json", _read("corrupt"), raises(ValueError, "not valid JSON")),
    ("read_log-empty", _read("empty"), raises(ValueError, "empty.csv")),
    ("read_log-binary", _read("binary"), raises(ValueError, "binary")),
    ("read_log-fifo", _read("fifo"), raises(ValueError, "named pipe")),
    ("read_log-device", lambda f: io.read_log(os.devnull), raises(ValueError, "character device")),
    ("read_log-missing", lambda f: io.read_log(f.root / "nope.csv"), raises(FileNotFoundError, "nope.csv")),
    ("read_log-empty-folder", lambda f: io.read_log(f.out_dir), raises(ValueError, "found no training log")),
    ("read_log-lr-masked", lambda f: io.read_log(f.good, lr=np.ma.masked_array(np.full(T_LOG, 0.01), mask=np.arange(T_LOG) == 2)),
     raises(ValueError, "lr[2] is masked")),
    ("detect_format-fifo", lambda f: io.detect_format(f.fifo), raises(ValueError, "named pipe")),
    ("read_csv-empty-delimiter", lambda f: io.read_csv(f.good, delimiter=""), raises(ValueError, "delimiter = ''")),
    ("read_csv-fifo", lambda f: io.read_csv(f.fifo), raises(ValueError, "named pipe")),
    ("read_wandb_json-deep", lambda f: io.read_wandb_json(f.deep), raises(ValueError, "nested too deeply")),
    ("read_lr_file-fifo", lambda f: io.read_lr_file(str(f.fifo)), raises(ValueError, "named pipe")),
    ("read_lr_file-nan", lambda f: io.read_lr_file(str(f.nan_lr)), raises(ValueError, "lr[1] is nan")),
    ("read_loss_file-fifo", lambda f: io.read_loss_file(str(f.fifo)), raises(ValueError, "named pipe")),
    ("curve_from_columns-negative", lambda f: io.curve_from_columns([-1, 1, 2], [0.1, 0.1, 0.1], [3, 2, 1]),
     raises(ValueError, "step[0] = -1.0")),
    ("lr_from_config-huge", lambda f: io.lr_from_config({"scheduler": "cos", "lr": 1e-3, "iterations": 10**12}),
     raises(ValueError, "iterations", "memory")),
    ("write_schedule-missing-folder", lambda f: io.write_schedule("/nonexistent/x.csv", LR),
     raises(FileNotFoundError, "/nonexistent/x.csv", "does not exist")),
    ("write_schedule-nan", lambda f: io.write_schedule(f.out_dir / "s.csv", NAN), raises(ValueError, "lr[17] is nan")),
    ("write_schedule-device", lambda f: io.write_schedule(f.device, LR), raises(ValueError, "character device")),
    # --- plans from hostile logs
    ("plan_schedule-diverged", lambda f: cdfast.plan_schedule(_quiet_read(f.diverged), 800, n_boot=0, model="bound"),
     Warns(cdfast.FitWarning, ("diverged",), lambda r: "diverged" in r.summary())),
    ("plan_schedule-zero-final-lr", lambda f: cdfast.plan_schedule(f.zero_lr, 800, n_boot=0, model="bound"),
     Returns(lambda r: finite([s.loss for s in r.schedules]))),
    ("plan_schedule-T-huge", lambda f: cdfast.plan_schedule(f.good, 10**13, n_boot=0, model="bound"),
     raises(ValueError, "memory")),
    ("refine_schedule-fifo", lambda f: cdfast.refine_schedule(f.fifo), raises(ValueError, "named pipe")),
    ("refine_schedule-no-norms", lambda f: cdfast.refine_schedule(f.good), raises(ValueError, "gradient norms")),
]


def _quiet_read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", io.LogWarning)
        return io.read_log(path)


def _check_row(expect: Any, thunk: Callable[[], Any]) -> None:
    if isinstance(expect, Raises):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(expect.exc) as info:
                thunk()
        msg = str(info.value)
        assert "\n" not in msg.strip(), msg
        for n in expect.needles:
            assert n in msg, (n, msg)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = thunk()
    ours = [w for w in caught if not issubclass(w.category, (DeprecationWarning, ResourceWarning))]
    if isinstance(expect, Warns):
        hits = [w for w in ours if issubclass(w.category, expect.category)
                and all(n in str(w.message) for n in expect.needles)]
        assert hits, [f"{w.category.__name__}: {w.message}" for w in ours]
    else:
        assert not ours, [f"{w.category.__name__}: {w.message}" for w in ours]
    assert expect.check(result), result


NEEDS_DEVICE = {"write_schedule-device"}


@pytest.mark.parametrize("thunk, expect", [pytest.param(t, e, id=i) for i, t, e in LIBRARY])
def test_library(files, request, thunk, expect):
    if request.node.callspec.id in NEEDS_DEVICE and not files.have_device:
        pytest.skip("cannot create a device node here (mknod needs CAP_MKNOD)")
    _check_row(expect, lambda: thunk(files))
    if files.have_device:
        assert files.device_intact()


# ---------------------------------------------------------------------------
# The command line, in-process


@dataclass(frozen=True)
class Usage:
    """Exit status 2 and one line on stderr holding every needle."""

    needles: tuple[str, ...]


@dataclass(frozen=True)
class Done:
    """Exit status 0; every needle in stdout + stderr, and none of ``absent``."""

    needles: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()


def usage(*needles: str) -> Usage:
    return Usage(needles)


def F(attr: str) -> Callable[[Files], str]:
    return lambda f: str(getattr(f, attr))


def O(name: str) -> Callable[[Files], str]:
    return lambda f: str(f.out_dir / name)


NO_INF = ("model inf", " inf ", "= inf", "nan")  # an infinite or undefined prediction printed

# (id, argv: strings and callables of Files, expectation)
COMMANDS = [
    ("report-steps-empty", ["report", "--no-run", "--steps", ""], usage("--steps")),
    ("report-steps-huge", ["report", "--no-run", "--steps", "10000000000000"], usage("memory")),
    ("report-fifo", ["report", F("fifo")], usage("named pipe")),
    ("curve-steps-empty", ["curve", "--schedule", "cosine", "--steps", "", "--out", O("c.csv")], usage("--steps")),
    ("curve-steps-nan", ["curve", "--schedule", "cosine", "--steps", "nan", "--out", O("c.csv")], usage("--steps")),
    ("curve-peak-inf", ["curve", "--schedule", "cosine", "--steps", "100", "--peak-lr", "inf", "--out", O("c.csv")], usage("--peak-lr")),
    ("curve-out-device", ["curve", "--schedule", "cosine", "--steps", "100", "--out", F("device")], usage("character device")),
    ("curve-out-missing-folder", ["curve", "--schedule", "cosine", "--steps", "100", "--out", "/nonexistent/c.csv"],
     usage("/nonexistent")),
    ("curve-lr-file-fifo", ["curve", "--lr-file", F("fifo"), "--out", O("c.csv")], usage("named pipe")),
    ("curve-lr-file-nan", ["curve", "--lr-file", F("nan_lr"), "--out", O("c.csv")], usage("lr[1] is nan")),
    ("exam-unknown", ["exam", "cosinus"], usage("cosinus")),
    ("exam-lr-file-fifo", ["exam", "--lr-file", F("fifo")], usage("named pipe")),
    ("exam-plot-device", ["exam", "constant", "--plot", F("device_png")], usage("character device")),
    ("fit-fifo", ["fit", F("fifo"), "--model", "bound"], usage("named pipe")),
    ("fit-device", ["fit", os.devnull, "--model", "bound"], usage("character device")),
    ("fit-deep-json", ["fit", F("deep"), "--model", "bound"], usage("nested too deeply")),
    ("fit-corrupt-json", ["fit", F("corrupt"), "--model", "bound"], usage("not valid JSON")),
    ("fit-empty", ["fit", F("empty"), "--model", "bound"], usage("empty.csv")),
    ("fit-binary", ["fit", F("binary"), "--model", "bound"], usage("binary")),
    ("fit-negative-step", ["fit", F("negative"), "--model", "bound"], usage("step -5")),
    ("fit-diverged", ["fit", F("diverged"), "--model", "bound"], Done(("loss is inf at step 300",))),
    ("fit-zero-final-lr", ["fit", F("zero_lr"), "--model", "bound"], Done(("last logged step 400: model",), NO_INF)),
    ("fit-default-zero-final-lr", ["fit", F("zero_lr")], Done(("last logged step 400: model",), NO_INF)),
    ("fit-out-device", ["fit", F("good"), "--model", "bound", "--out", F("device")], usage("character device")),
    ("fit-out-is-input", ["fit", F("good"), "--model", "bound", "--out", F("good")], usage("is the input")),
    ("predict-zero-final-lr", ["predict", F("zero_lr"), "--model", "bound", "--schedule", "cosine", "--steps", "800",
                               "--out", O("p.csv")], Done(("final loss at step 800",), NO_INF)),
    ("predict-diverged", ["predict", F("diverged"), "--model", "bound", "--schedule", "cosine", "--steps", "800"],
     Done(("loss is inf at step 300",))),
    ("predict-plot-device", ["predict", F("good"), "--model", "bound", "--schedule", "cosine", "--steps", "800",
                             "--plot", F("device_png")],
     usage("character device")),
    ("predict-steps-empty", ["predict", F("good"), "--schedule", "cosine", "--steps", ""], usage("--steps")),
    ("forecast-fifo", ["forecast", F("fifo")], usage("named pipe")),
    ("forecast-diverged", ["forecast", F("diverged")],
     Done(("diverged", "step 300"))),
    ("forecast-at-the-end-zero-final-lr", ["forecast", F("zero_lr")], Done(("forecast of the final loss",), NO_INF)),
    ("forecast-out-device", ["forecast", F("good"), "--out", F("device")], usage("character device")),
    ("compare-empty", ["compare", F("empty")], usage("empty.csv")),
    ("compare-fifo", ["compare", F("fifo")], usage("named pipe")),
    ("plan-zero-final-lr", ["plan", F("zero_lr"), "--model", "bound", "--boot", "0", "--steps", "800"],
     Done(("optimal",), NO_INF)),
    ("plan-diverged", ["plan", F("diverged"), "--model", "bound", "--boot", "0", "--steps", "800"],
     Done(("diverged (loss inf at step 300)",))),
    ("plan-out-device", ["plan", F("good"), "--model", "bound", "--boot", "0", "--out", F("device")],
     usage("character device")),
    ("plan-steps-empty", ["plan", F("good"), "--steps", ""], usage("--steps")),
    ("refine-fifo", ["refine", F("fifo")], usage("named pipe")),
    ("refine-no-norms", ["refine", F("good")], usage("gradient norm")),
    ("bench-steps-empty", ["bench", "--steps", ""], usage("--steps")),
    ("bench-steps-zero", ["bench", "--steps", "0"], usage("--steps")),
    ("sweep-steps-empty", ["sweep", "--schedule", "cosine", "--steps", ""], usage("--steps")),
    ("sweep-steps-commas", ["sweep", "--schedule", "cosine", "--steps", ",,"], usage("--steps")),
    ("sweep-peak-nan", ["sweep", "--schedule", "cosine", "--steps", "100", "--peak-lr", "nan"], usage("--peak-lr")),
    ("sweep-out-device", ["sweep", "--schedule", "cosine", "--steps", "100", "--out", F("device")],
     usage("character device")),
]


@pytest.mark.parametrize("argv, expect", [pytest.param(a, e, id=i) for i, a, e in COMMANDS])
def test_command(files, capsys, argv, expect):
    args = [a(files) if callable(a) else a for a in argv]
    if not files.have_device and any("full." in a for a in args):
        pytest.skip("cannot create a device node here (mknod needs CAP_MKNOD)")
    before = sorted(p.name for p in files.root.rglob("*"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what the user must see is on stdout/stderr
        code = cli.main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if isinstance(expect, Usage):
        assert code == 2, (code, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cdfast: error:"), err
        for n in expect.needles:
            assert n in lines[0], (n, err)
        # nothing was written, nothing replaced
        assert sorted(p.name for p in files.root.rglob("*")) == before
    else:
        assert code == 0, (code, out, err)
        for n in expect.needles:
            assert n in out + err, (n, out, err)
        for n in expect.absent:
            assert n not in out + err, (n, out, err)
    if files.have_device:
        assert files.device_intact()
    assert not list(files.root.rglob(".cdfast-*.tmp"))


# ---------------------------------------------------------------------------
# What only a real process shows: a closed stdout, signals, a pipe that would block.
# Started together (each costs an interpreter and an import); numba-free.

def _env() -> dict[str, str]:
    env = dict(os.environ, CDFAST_BACKEND="c", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PYTHONWARNINGS", None)
    return env


@pytest.fixture(scope="module")
def processes(files):
    cmd = [sys.executable, "-m", "cdfast"]
    procs = {
        # stdout closed (not a broken pipe): the command still runs, quietly
        "closed-stdout": subprocess.Popen(cmd + ["exam", "cosine", "--max-steps", "100000", "--plot",
                                                 str(files.out_dir / "exam.png")],
                                          stderr=subprocess.PIPE, env=_env(), preexec_fn=lambda: os.close(1)),
        # a named pipe given as the log: refused, not read (reading would block forever)
        "fifo": subprocess.Popen(cmd + ["fit", str(files.fifo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=_env()),
        # SIGINT while importing: one line and status 130
        "sigint-startup": subprocess.Popen(cmd + ["report", "--no-run", "--steps", "1000"], stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, env=_env()),
    }
    time.sleep(1.0)  # inside the imports on any machine; the interpreter's own start-up is earlier
    procs["sigint-startup"].send_signal(signal.SIGINT)
    results = {}
    for name, p in procs.items():
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            results[name] = ("hang", out, err)
            continue
        results[name] = (p.returncode, out or b"", err or b"")
    return results


def test_closed_stdout_runs_quietly(processes, files):
    code, _, err = processes["closed-stdout"]
    assert code == 0, err.decode()
    assert err == b"", err.decode()
    assert (files.out_dir / "exam.png").stat().st_size > 0  # the command ran to the end and wrote its file


def test_fifo_is_refused_not_read(processes):
    code, _, err = processes["fifo"]
    assert code == 2, (code, err.decode())
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "named pipe" in lines[0], err.decode()


def test_sigint_during_startup_is_one_line(processes):
    code, _, err = processes["sigint-startup"]
    text = err.decode()
    assert "Traceback" not in text, text
    if code == 0:  # the signal came after the command had finished: nothing to check
        return
    assert code in (130, -signal.SIGINT), (code, text)  # 130: caught by main; -2: ended by SIGINT while importing
    assert text.strip().splitlines() == ["cdfast: interrupted"], text


# ---------------------------------------------------------------------------
# Properties of the bounds on random schedules

schedule_arrays = st.integers(min_value=1, max_value=300).flatmap(
    lambda n: st.lists(st.floats(min_value=1e-6, max_value=1.0, allow_nan=False, allow_infinity=False),
                       min_size=n, max_size=n).map(np.array))
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(lr=schedule_arrays, c=st.floats(min_value=1e-3, max_value=1e3))
def test_scaling_lr_scales_the_terms(lr, c):
    a, b = cdfast.bound_terms(lr)
    ac, bc = cdfast.bound_terms(c * lr)
    assert np.isclose(ac, a / c, rtol=1e-9) and np.isclose(bc, b * c, rtol=1e-9)


@PROPS
@given(lr=schedule_arrays, d1=st.floats(0.0, 10.0), d2=st.floats(0.0, 10.0), g=st.floats(0.0, 10.0))
def test_bound_is_monotone_in_D_and_G(lr, d1, d2, g):
    lo, hi = sorted((d1, d2))
    assert cdfast.last_iterate_bound(lr, D=lo, G=g) <= cdfast.last_iterate_bound(lr, D=hi, G=g)
    assert cdfast.last_iterate_bound(lr, D=g, G=lo) <= cdfast.last_iterate_bound(lr, D=g, G=hi)


@PROPS
@given(lr=schedule_arrays, L=st.floats(-10.0, 10.0))
def test_bound_is_finite_and_above_L_star(lr, L):
    a, b = cdfast.bound_terms(lr)
    assert np.isfinite(a) and np.isfinite(b) and a > 0 and b >= 0
    assert cdfast.last_iterate_bound(lr, L_star=L) >= L


@PROPS
@given(lr=schedule_arrays)
def test_curve_ends_at_the_last_iterate_bound_and_rows_match(lr):
    curve = cdfast.bound_curve(lr)
    assert np.isclose(curve[-1], cdfast.last_iterate_bound(lr), rtol=1e-9)
    stacked = cdfast.last_iterate_bound(np.stack([lr, 2 * lr]))
    assert stacked[0] == cdfast.last_iterate_bound(lr) and stacked[1] == cdfast.last_iterate_bound(2 * lr)


@PROPS
@given(lr=schedule_arrays, zeros=st.lists(st.integers(0, 299), max_size=5))
def test_zero_lr_steps_repeat_the_last_moved_iterate(lr, zeros):
    from cdfast.models.convex import moved_steps

    x = lr.copy()
    x[[z for z in zeros if z < x.size]] = 0.0
    steps = np.arange(1, x.size + 1)
    at, expand = moved_steps(x, steps)
    moved = steps if expand is None else at[expand]
    for s, m in zip(steps, moved):
        positive = np.flatnonzero(x[:s] > 0)
        assert m == (positive[-1] + 1 if positive.size else s)
    assert np.all(np.diff(at) > 0)
