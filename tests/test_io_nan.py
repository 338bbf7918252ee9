"""A loss written as NaN in a table (CSV, Parquet) to the end of the log is a diverged run, not a
gap: read_log reports the divergence (and fits, plans and forecasts say so) instead of silently
dropping the NaN rows and describing a run that trained to the end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cdfast import io
from cdfast.io import table

T = 100


def _rows(loss_cell, lr=1e-3):
    return ["step,lr,loss"] + [f"{s},{lr},{loss_cell(s)}" for s in range(1, T + 1)]


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _diverging(s):
    return "nan" if s >= 61 else f"{3.0 + 1.0 / s:.6f}"


@pytest.fixture(params=["pandas", "stdlib"])
def reader(request, monkeypatch):
    if request.param == "stdlib":
        monkeypatch.setattr(table, "_csv_pandas", lambda path, explicit_nan=None: None)
    else:
        pytest.importorskip("pandas")
    return request.param


def test_a_loss_written_as_nan_to_the_end_is_a_divergence(tmp_path, reader):
    path = _write(tmp_path / "run.csv", _rows(_diverging))
    with pytest.warns(io.LogWarning, match="diverged.*step 61"):
        log = io.read_log(path)
    assert log.divergence[0] == 61 and math.isnan(log.divergence[1])
    assert log.steps[-1] == 60 and np.isfinite(log.loss).all()


@pytest.mark.parametrize("token", ["NaN", " -nan", "+NAN"])
def test_every_spelling_of_nan(tmp_path, reader, token):
    path = _write(tmp_path / "run.csv", _rows(lambda s: token if s >= 90 else f"{3.0 + 1.0 / s:.6f}"))
    with pytest.warns(io.LogWarning, match="step 90"):
        assert io.read_log(path).divergence[0] == 90


def test_gaps_are_not_a_divergence(tmp_path, reader, recwarn):
    # a sparse column written with nan between its finite values, and empty cells at the end
    sparse = _rows(lambda s: f"{3.0 + 1.0 / s:.6f}" if s % 10 == 0 else "nan")
    log = io.read_log(_write(tmp_path / "sparse.csv", sparse))
    assert log.divergence is None and log.steps.tolist() == list(range(10, T + 1, 10))
    stopped = _rows(lambda s: f"{3.0 + 1.0 / s:.6f}" if s <= 80 else "")
    log = io.read_log(_write(tmp_path / "stopped.csv", stopped))
    assert log.divergence is None and log.steps[-1] == 80
    assert not [w for w in recwarn if issubclass(w.category, io.LogWarning)]


def test_trailing_nan_rule():
    v = np.array([1.0, np.nan, 2.0, np.nan, np.nan, np.nan])
    literal = np.array([False, True, False, True, False, True])
    np.testing.assert_array_equal(table.trailing_nan(v, literal), [False, False, False, True, False, True])
    assert not table.trailing_nan(np.array([1.0, 2.0]), np.array([False, False])).any()
    np.testing.assert_array_equal(table.trailing_nan(np.full(2, np.nan), np.array([True, False])), [True, False])


def test_parquet_nan_values_and_nulls(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    steps = np.arange(1, T + 1)
    loss = [3.0 + 1.0 / s if s < 61 else float("nan") for s in steps]
    nulls = [3.0 + 1.0 / s if s < 61 else None for s in steps]
    for name, col, diverged in (("nan.parquet", loss, True), ("null.parquet", nulls, False)):
        path = tmp_path / name
        pq.write_table(pa.table({"step": steps, "lr": np.full(T, 1e-3), "loss": pa.array(col, type=pa.float64(),
                                                                                          from_pandas=False)}), path)
        if diverged:
            with pytest.warns(io.LogWarning, match="step 61"):
                assert io.read_log(path).divergence[0] == 61
        else:
            log = io.read_log(path)
            assert log.divergence is None and log.steps[-1] == 60


def test_lightning_metrics_with_a_nan_training_loss(tmp_path, reader):
    # Lightning writes one row per logging call: training rows and validation rows, empty where not logged
    lines = ["step,epoch,lr-AdamW,train_loss,val_loss"]
    for s in range(1, T + 1):
        lines.append(f"{s - 1},0,0.001,{_diverging(s)},")
        if s % 25 == 0:
            lines.append(f"{s - 1},0,,,{'nan' if s > 60 else 3.5}")
    folder = tmp_path / "lightning_logs" / "version_0"
    folder.mkdir(parents=True)
    path = _write(folder / "metrics.csv", lines)
    with pytest.warns(io.LogWarning, match="diverged"):
        log = io.read_log(path, loss="train_loss")
    assert log.divergence is not None and log.steps[-1] < log.divergence[0]
