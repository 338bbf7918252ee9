"""cdfast.report: the numbers behind `cdfast report`, as a Report object a notebook can read."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cdfast
from cdfast import cli, reporting, schedules


def test_bound_table_holds_the_library_numbers():
    rep = cdfast.report(run=False, schedules=["linear", ("wsd", {"decay_frac": 0.5})], steps=500, D=2.0, G=0.5,
                        L_star=1.0, exam=False, repeat=1, backend="auto")
    assert rep.run is None and len(rep.backends) == 1
    for row, shape in zip(rep.bounds, [schedules.linear(500), schedules.wsd(500, decay_frac=0.5)]):
        eta, best = cdfast.optimal_peak_lr(shape, 2.0, 0.5, L_star=1.0)
        assert row["peak_lr"] == eta
        assert row["last_iterate"] == pytest.approx(best, rel=1e-12)
        assert row["sqrtT_gap"] == pytest.approx(math.sqrt(500) * (best - 1.0), rel=1e-12)
        assert row["average_iterate"] == pytest.approx(cdfast.average_iterate_bound(eta * shape, 2.0, 0.5, 1.0),
                                                       rel=1e-12)
        assert row["exam"] == "n/a" and math.isnan(row["exam_s"])
    assert [r["schedule"] for r in rep.bounds] == ["linear", "wsd:decay_frac=0.5"]
    text = rep.summary()
    assert text == str(rep)
    assert text.startswith("bounds of the standard schedules (eq. 2.4): T = 500, D = 2, G = 0.5, L* = 1")
    assert "wsd:decay_frac=0.5" in text and "backends:" in text.splitlines()[-1]


def test_the_command_line_prints_the_report(capsys):
    """`cdfast report` prints Report.summary(): the same lines but the timing line."""
    rep = cdfast.report(run=False, schedules=["linear", "cosine"], steps=300, exam=False, repeat=1, backend="c")
    code = cli.main(["report", "--no-run", "--schedules", "linear", "cosine", "--steps", "300", "--no-exam",
                     "--repeat", "1", "--backend", "c"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[:-1] == rep.summary().splitlines()[:-1]


def test_exam_column():
    rep = cdfast.report(run=False, schedules=["linear", "constant"], steps=1000, repeat=1, backend="auto")
    assert [r["exam"] for r in rep.bounds] == ["qualified", "not qualified"]
    assert all(r["exam_s"] >= 0 for r in rep.bounds)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="peak_lr"):
        cdfast.report(run=False, D=0.0, steps=100)
    with pytest.raises(ValueError, match="unknown schedule 'warp'"):
        cdfast.report(run=False, schedules=["warp"], steps=100)


def test_run_report_of_a_training_log_object():
    log = cdfast.io.read_log(cdfast.data.SAMPLE_RUN)
    rep = reporting.report_run(log, model="bound", schedules=["linear"], steps=[log.T], boot=0)
    assert not rep.packaged and rep.name == log.name and rep.T == log.T
    assert rep.check is not None and rep.check_band is None and not rep.has_interval
    (p,) = rep.predictions
    shape = schedules.linear(log.T, warmup=rep.warmup)
    assert p["loss"] == float(rep.fit.predict(rep.peak_lr * shape, at=[log.T])[-1])
    assert math.isnan(p["lo"]) and math.isnan(p["hi"])
    assert p["best_loss"] <= p["loss"] + 1e-12 or p["edge"]
    assert rep.own == float(rep.fit.predict(np.asarray(log.lr), at=[rep.last_step])[-1])


def test_run_report_marks_the_horizons_it_extrapolates_to():
    log = cdfast.io.read_log(cdfast.data.SAMPLE_RUN)
    rep = reporting.report_run(log, model="bound-alpha", schedules=["linear"], steps=[log.T, 2 * log.T], boot=0)
    own, longer = rep.predictions
    assert own["extrapolation"] == []
    assert [n.split(":")[0] for n in longer["extrapolation"]] == ["horizon"]
    text = rep.summary()
    assert f"{2 * log.T}*" in text and f"{log.T}*" not in text
    assert "'*': an extrapolation beyond the fitted run (horizon)" in text
