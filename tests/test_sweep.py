"""cdfast.sweep and `cdfast sweep`: families x parameters x horizons x peak LRs -> a table."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

import cdfast
from cdfast import schedules as S
from cdfast.cli import main
from cdfast.sweep import chunk_terms, expand, write_table
from naive import last_iterate_naive

SPEC = {"wsd": {"decay_frac": [0.1, 0.5], "decay": ["linear", "sqrt"]}, "cosine": {"warmup": [0, 50]}}


def _module():
    import sys

    return sys.modules["cdfast.sweep"]


def test_expand_takes_every_combination():
    specs = expand([SPEC, "linear", ("constant", {"warmup": 5})])
    labels = [s.label for s in specs]
    assert labels == ["wsd:decay_frac=0.1,decay=linear", "wsd:decay_frac=0.1,decay=sqrt",
                      "wsd:decay_frac=0.5,decay=linear", "wsd:decay_frac=0.5,decay=sqrt",
                      "cosine:warmup=0", "cosine:warmup=50", "linear", "constant:warmup=5"]


def test_table_values_follow_from_the_bound(backend):
    Ts = [300, 1200]
    peaks = np.array([1e-3, 3e-2])
    table = cdfast.sweep(SPEC, Ts, peaks, D=1.5, G=0.5, L_star=0.2, exam=False, backend=backend)
    assert table.shape == (6 * 2 * 2,)
    row = 0
    for spec in expand(SPEC):
        for T in Ts:
            shape = spec.shape(T)
            a, b = cdfast.bound_terms(shape, backend=backend)
            eta, best = cdfast.optimal_peak_lr(shape, D=1.5, G=0.5, L_star=0.2, backend=backend)
            for peak in peaks:
                r = table[row]
                assert r["schedule"] == spec.label and r["family"] == spec.family and r["T"] == T
                assert r["peak_lr"] == peak and r["a"] == a and r["b"] == b
                assert r["optimal_peak_lr"] == eta and r["optimal_bound"] == best  # bit for bit
                # the peak-LR scaling, against the kernel on peak * shape and the nested sums
                assert r["bound"] == pytest.approx(
                    cdfast.last_iterate_bound(peak * shape, 1.5, 0.5, 0.2, backend=backend), rel=1e-13)
                if T == 300:
                    assert r["bound"] == pytest.approx(last_iterate_naive(peak * shape, 1.5, 0.5, 0.2), rel=1e-12)
                row += 1
    assert np.array_equal(table["decay_frac"][:4], [0.1, 0.1, 0.1, 0.1])
    assert math.isnan(table["decay_frac"][-1]) and table["decay"][-1] == ""
    assert np.array_equal(table["warmup"][-4:], [50.0, 50.0, 50.0, 50.0])


def test_without_peak_lrs_rows_sit_at_the_optimum():
    table = cdfast.sweep(["linear", "cosine"], [1000], exam=False)
    assert table.shape == (2,)
    assert np.array_equal(table["peak_lr"], table["optimal_peak_lr"])
    assert np.array_equal(table["bound"], table["optimal_bound"])
    # Table 1: linear decay at the optimum, sqrt(T) * (bound - L*) -> 2 (D = G = 1)
    assert math.sqrt(1000) * table["optimal_bound"][0] == pytest.approx(2.0, rel=0.01)


def test_exam_verdicts_agree_with_the_qualifying_exam():
    grid = np.round(np.logspace(3, 5, 5)).astype(int)

    def floor_cosine(T, floor=0.1):
        return floor + (1 - floor) * S.cosine(T)

    table = cdfast.sweep(["linear", "cosine", "constant", "inverse_sqrt", ("wsd", {"decay_frac": 0.2}),
                          (floor_cosine, {"floor": [0.0001, 0.3]})], [500], exam_T=grid)
    expect = [cdfast.qualifying_exam(name, grid, continuous=False, **params).qualified
              for name, params in [("linear", {}), ("cosine", {}), ("constant", {}), ("inverse_sqrt", {}),
                                   ("wsd", {"decay_frac": 0.2})]]
    expect += [cdfast.qualifying_exam(lambda T, f=f: floor_cosine(T, f), grid, kind="family",
                                      continuous=False).qualified for f in (0.0001, 0.3)]
    assert table["qualified"].tolist() == expect
    assert expect[:5] == [True, True, False, False, True]  # Table 1


def test_chunks_bound_the_memory(monkeypatch):
    seen = []
    mod = _module()
    original = mod.chunk_terms

    def spy(T, specs, backend=None):
        seen.append((T, len(specs)))
        return original(T, specs, backend)

    monkeypatch.setattr(mod, "chunk_terms", spy)
    specs = {"wsd": {"decay_frac": list(np.linspace(0.05, 0.95, 40))}}
    small = cdfast.sweep(specs, [700, 2000], exam=False, chunk_size=5000)
    assert all(n * T <= 5000 for T, n in seen) and sum(n for _, n in seen) == 80
    seen.clear()
    big = cdfast.sweep(specs, [700, 2000], exam=False, chunk_size=10**7)
    assert len(seen) == 2  # one chunk per horizon
    for k in small.dtype.names:
        assert np.array_equal(small[k], big[k], equal_nan=small[k].dtype.kind == "f")
    cdfast.sweep("linear", [3000], exam=False, chunk_size=10)  # a row larger than a chunk: one row at a time


def test_chunk_terms_equals_bound_terms():
    specs = expand({"wsd": {"decay_frac": [0.2, 0.4]}})
    a, b = chunk_terms(900, specs)
    for i, s in enumerate(specs):
        assert (a[i], b[i]) == cdfast.bound_terms(S.wsd(900, decay_frac=[0.2, 0.4][i]))


def test_bad_sweeps_are_refused():
    with pytest.raises(ValueError, match="unknown schedule 'nope'"):
        cdfast.sweep("nope", [10])
    with pytest.raises(TypeError, match="unexpected keyword"):
        cdfast.sweep(("wsd", {"decay_fraction": 0.2}), [10], exam=False)
    with pytest.raises(ValueError, match=r"ends at 0 for T = 10"):
        cdfast.sweep(lambda T: np.linspace(1, 0, T), [10], exam=False)
    with pytest.raises(ValueError, match=r"entry 3 is nan"):
        cdfast.sweep(lambda T: np.where(np.arange(T) == 3, np.nan, 1.0), [10], exam=False)
    with pytest.raises(ValueError, match=r"peak_lr\[1\] is 0"):
        cdfast.sweep("linear", [10], [1e-3, 0.0])
    with pytest.raises(ValueError, match="T = 0 must be >= 1"):
        cdfast.sweep("linear", [0])
    with pytest.raises(ValueError, match="chunk_size"):
        cdfast.sweep("linear", [10], chunk_size=0)
    with pytest.raises(ValueError, match="D = 0 makes"):
        cdfast.sweep("linear", [10], D=0.0)


def test_data_frame_output():
    pd = pytest.importorskip("pandas")
    frame = cdfast.sweep(SPEC, [400], [1e-3], as_frame=True, exam=False)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 6
    assert list(frame.columns[:4]) == ["schedule", "family", "decay_frac", "decay"]


def test_write_table_csv_round_trip(tmp_path):
    table = cdfast.sweep(SPEC, [400], [1e-3, 1e-2], exam=True, exam_T=[100, 300, 1000, 3000, 10000])
    path = tmp_path / "sweep.csv"
    write_table(table, str(path))
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(table)
    assert float(rows[5]["bound"]) == table["bound"][5]  # repr round-trips float64
    assert rows[0]["qualified"] in ("true", "false")
    with pytest.raises(ValueError, match="csv or .parquet"):
        write_table(table, str(tmp_path / "x.txt"))


def test_cli_sweep(tmp_path, capsys):
    out = tmp_path / "s.csv"
    code = main(["sweep", "--schedule", "wsd:decay_frac=0.1|0.3,decay=linear|sqrt", "--schedule", "cosine",
                 "-T", "1e3,4e3", "--peak-lr", "1e-3:1e-1:3", "--no-exam", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "cdfast sweep: 30 rows (5 schedules x 2 horizons)" in text and f"wrote {out}" in text
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30 and {r["schedule"] for r in rows} >= {"wsd:decay_frac=0.3,decay=sqrt", "cosine"}
    assert [float(r["peak_lr"]) for r in rows[:3]] == pytest.approx([1e-3, 1e-2, 1e-1])
    assert main(["sweep", "--schedule", "linear", "-T", "100", "--out", str(tmp_path / "s.txt")]) == 2
    assert "must end in .csv or .parquet" in capsys.readouterr().err
    assert main(["sweep", "--schedule", "linear", "-T", "100", "--peak-lr", "1e-3:1e-2"]) == 2
    assert "START:STOP:COUNT" in capsys.readouterr().err


def test_cli_sweep_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    out = tmp_path / "s.parquet"
    assert main(["sweep", "--schedule", "linear", "-T", "100,200", "--out", str(out)]) == 0
    frame = pd.read_parquet(out)
    assert list(frame["T"]) == [100, 200] and frame["qualified"].dtype == bool


def test_progress_is_silent_without_tqdm(monkeypatch):
    import io
    import sys

    from cdfast._progress import Progress

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # as if tqdm were not installed
    stream = io.StringIO()
    with Progress("sweep", total=3, stream=stream, enabled=True) as bar:
        bar.advance(2)
        bar.advance(5)
    assert not bar.enabled and bar.done == 3 and stream.getvalue() == ""
