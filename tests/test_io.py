"""Loaders (cdfast.io) and the OneCycle cosine schedule used to rebuild logged LRs."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np
import pytest

import cdfast
from cdfast import schedules
from cdfast.io import curve_from_columns, lr_from_config, read_csv, read_wandb_json

DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llm124m"


def _onecycle_literal(t, T, W, init, final):
    """PyTorch OneCycleLR(anneal_strategy='cos', three_phase=False) as written in its docs."""
    if t <= W - 1:
        pct, start, end = t / (W - 1), init, 1.0
    else:
        pct, start, end = (t - (W - 1)) / (T - 1 - (W - 1)), 1.0, final
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def test_cosine_onecycle_matches_literal_formula():
    T, W = 1000, 30
    s = schedules.cosine_onecycle(T, W, init=0.01, final=2e-5)
    want = np.array([_onecycle_literal(t, T, W, 0.01, 2e-5) for t in range(T)])
    np.testing.assert_allclose(s, want, rtol=1e-12, atol=1e-15)
    assert s[W - 1] == 1.0 and s[-1] == 2e-5
    with pytest.raises(ValueError, match="warmup"):
        schedules.cosine_onecycle(T, 1)


def test_lr_from_config_wsd_and_stable():
    cfg = dict(lr=1e-3, iterations=1000, warmup_steps=30, scheduler="wsd", wsd_fract_decay=0.8, decay_type="linear")
    lr = lr_from_config(cfg)
    t = np.arange(1000)
    want = 1e-3 * np.where(t < 30, 0.01 + 0.99 * t / 30, np.minimum((1000 - t) / 800, 1.0))
    np.testing.assert_allclose(lr, want, rtol=1e-14)
    assert lr[-1] == pytest.approx(1e-3 / 800)  # eta_T > 0: the bound is finite at step T
    cfg.update(wsd_fract_decay=0.0)
    assert np.all(lr_from_config(cfg)[30:] == 1e-3)
    with pytest.raises(ValueError, match="scheduler"):
        lr_from_config(dict(cfg, scheduler="poly"))
    with pytest.raises(ValueError, match="lr"):
        lr_from_config(dict(iterations=10))


def _export(tmp_path, history):
    cfg = dict(lr=1e-3, iterations=400, warmup_steps=10, scheduler="wsd", wsd_fract_decay=0.5, decay_type="linear")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(dict(name="toy", config=cfg, summary={"final-val/loss": 3.0}, history=history)))
    return path


def test_read_wandb_json_dedupes_and_drops_nan(tmp_path):
    history = {
        "val": {"iter": [0, 100, 200, 100, 300], "val_loss": [9.0, 5.0, 4.0, 4.5, None], "val_acc": [0.1, 0.2]},
        "train": {"iter": [100, 200], "train_lr": [1e-3, 1e-3], "train_loss": [5.0, 4.1]},
    }
    run = read_wandb_json(_export(tmp_path, history))
    np.testing.assert_array_equal(run.history["val"]["iter"], [0, 100, 200, 300])
    np.testing.assert_array_equal(run.history["val"]["val_loss"][:3], [9.0, 4.5, 4.0])  # the resumed value wins
    assert np.isnan(run.history["val"]["val_loss"][3])
    steps, loss = run.curve()
    np.testing.assert_array_equal(steps, [100, 200])  # no step 0, no NaN
    np.testing.assert_array_equal(loss, [4.5, 4.0])
    assert "val_acc" in run.unaligned["val"]
    assert run.summary["final-val/loss"] == 3.0 and run.T == 400
    assert run.lr_mismatch() == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(KeyError, match="available"):
        run.series("val", "nope")


def test_read_wandb_json_rejects_other_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("[1, 2]")
    with pytest.raises(ValueError, match="W&B run export"):
        read_wandb_json(p)


def test_csv_round_trip(tmp_path):
    T = 200
    lr = 1e-3 * schedules.linear(T)
    step = np.arange(1, T + 1)
    loss = np.where(step % 20 == 0, 3.0 + 1.0 / np.sqrt(step), np.nan)
    path = tmp_path / "log.csv"
    with path.open("w") as fh:
        fh.write("step,lr,loss\n")
        for s, x, y in zip(step, lr, loss):
            fh.write(f"{s},{float(x)!r},{'' if np.isnan(y) else repr(float(y))}\n")
    cols = read_csv(path)
    seq, steps, y = curve_from_columns(cols["step"], cols["lr"], cols["loss"])
    np.testing.assert_array_equal(seq, lr)
    np.testing.assert_array_equal(steps, np.arange(20, T + 1, 20))
    f = cdfast.fit_loss_curve(seq, steps, y)
    assert np.isfinite(f.r2)


def test_curve_from_columns_errors():
    with pytest.raises(ValueError, match="step 2 is missing"):
        curve_from_columns([1, 3], [1e-3, 1e-3], [3.0, 2.9])
    with pytest.raises(ValueError, match="appears twice"):
        curve_from_columns([1, 2, 2], [1e-3] * 3, [3.0, 2.9, 2.8])


@pytest.fixture(scope="module")
def runs():
    if not DATA.is_dir():
        pytest.skip(f"real training logs not found at {DATA} (shared/data/llm124m beside the repository)")
    return [read_wandb_json(p) for p in sorted(DATA.glob("*.json"))]


def test_real_runs_rebuilt_lr_matches_logged(runs):
    assert len(runs) == 17
    for run in runs:
        # logged train_lr at iteration t is eta_{t+1} = lr[t] (the next update's LR)
        assert run.lr_mismatch() < 1e-12, run.name
        steps, loss = run.curve()
        assert steps[0] >= 1 and steps[-1] <= run.T and np.all(np.diff(steps) > 0)
        assert run.lr()[-1] > 0


def test_family_and_diverged(tmp_path):
    history = {"val": {"iter": [100, 200, 300], "val_loss": [5.0, 4.0, 4.7]}}
    run = read_wandb_json(_export(tmp_path, history))
    assert run.family == "wsd(0.5, linear)"
    # last loss 4.7 is 17.5% above the best 4.0: diverged at a 10% rise, not at 20%
    assert run.diverged(rise=0.1) and not run.diverged(rise=0.2)
    cfg = dict(run.config, scheduler="cos", cos_final_lr=1e-7)
    assert dataclasses.replace(run, config=cfg).family == "cos"
    assert dataclasses.replace(run, config=dict(cfg, cos_final_lr=1e-4)).family == "cos(final=0.1 peak)"
    assert dataclasses.replace(run, config=dict(cfg, scheduler="wsd", wsd_fract_decay=0.0)).family == "constant"


def test_real_runs_families_and_divergence(runs):
    fams = {}
    for run in runs:
        fams.setdefault(run.family, []).append(run)
    assert sorted(fams) == ["constant", "cos", "wsd(0.8, linear)"]
    # exactly one run blew up (cosine at peak LR 5e-3): its last val loss is far above its best
    bad = [r for r in runs if r.diverged()]
    assert len(bad) == 1 and bad[0].config["lr"] == 0.005 and bad[0].family == "cos"


def test_a_log_that_ends_before_its_horizon_is_marked_unfinished(tmp_path):
    """A Hugging Face run read halfway (max_steps 12, logged to step 6): the LRs after the last
    logged one are unknown, and the log says so instead of passing a held LR off as the schedule."""
    import json
    import pathlib
    src = pathlib.Path(__file__).parent / "data" / "logs" / "hf_run" / "trainer_state.json"
    state = json.loads(src.read_text())
    state["log_history"] = [row for row in state["log_history"] if row["step"] <= 6]
    state["global_step"] = 6
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    half = cdfast.io.read_log(tmp_path / "trainer_state.json")
    assert half.T == 12 and half.unfinished
    last_lr_step = max(r["step"] for r in state["log_history"] if "learning_rate" in r)
    assert half.lr_known_steps == last_lr_step
    full = cdfast.io.read_log(src)
    assert not full.unfinished and full.lr_known_steps == full.T == 12
