"""The learning rates a run really used (cdfast.io._lr): config rebuilds checked against
the logged LR, missing cosine floors, branched runs, interpolation, and every real run.

The reference schedules here are the trainer's formulas transcribed literally
(epfml/schedules-and-scaling ``wsd_schedule``; PyTorch ``OneCycleLR`` as documented),
evaluated step by step in plain Python.
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest

from cdfast import cli
from cdfast.io import LR_RTOL, lr_from_config, read_log, read_wandb_json
from cdfast.io._lr import fill_logged, infer_cos_floor, resolve_from_config

#: every real run's LR matches its logged train_lr to this relative error (measured: 6.7e-13,
#: the trainer's own rounding of its cosine near the 1e-7 floor)
REAL_RTOL = 1e-11


def wsd_literal(step, n, W, fract, decay, final=0.0):
    """The trainer's wsd_schedule(step) (LambdaLR factor), transcribed."""
    n_anneal = int(fract * n)
    n_hold = n - n_anneal
    if step < W:
        return step / W + (1 - step / W) / 100
    if step < n_hold:
        return 1.0
    if step >= n:
        return final
    x = (step - n_hold) / n_anneal
    return {"linear": final + (1 - final) * (1 - x), "sqrt": final + (1 - final) * (1 - math.sqrt(x)),
            "cosine": final + (1 - final) * (1 + math.cos(math.pi * x)) * 0.5,
            "square": final + (1 - final) * (1 - x ** 2), "exp": final ** x,
            "miror_cosine": 2 * (final + (1 - final) * (1 - x)) - (final + (1 - final) * (1 + math.cos(math.pi * x)) * 0.5),
            }[decay]


def onecycle_literal(step, T, W, peak, floor, anneal="cos"):
    """PyTorch OneCycleLR(div_factor=100, pct_start=W/T, three_phase=False) as documented."""
    init = peak / 100
    f = (lambda s, e, p: e + (s - e) / 2 * (math.cos(math.pi * p) + 1)) if anneal == "cos" else \
        (lambda s, e, p: (e - s) * p + s)
    if step <= W - 1:
        return f(init, peak, step / (W - 1))
    return f(peak, floor, (step - (W - 1)) / (T - 1 - (W - 1)))


@pytest.mark.parametrize("decay", ["linear", "sqrt", "cosine", "square", "miror_cosine", "exp"])
def test_wsd_matches_the_trainer(decay):
    T, W, fract, final = 1000, 50, 0.3, (0.05 if decay == "exp" else 0.0)
    cfg = dict(lr=2e-3, iterations=T, warmup_steps=W, scheduler="wsd", wsd_fract_decay=fract, decay_type=decay,
               wsd_final_lr_scale=final)
    want = 2e-3 * np.array([wsd_literal(s, T, W, fract, decay, final) for s in range(T)])
    np.testing.assert_allclose(lr_from_config(cfg), want, rtol=1e-12)
    assert lr_from_config(cfg)[-1] > 0


def test_wsd_uses_the_trainers_rounding_of_the_cooldown_length():
    """int(0.29 * 100) = 28 in floating point: the cooldown is 28 steps, not 29."""
    cfg = dict(lr=1.0, iterations=100, warmup_steps=0, scheduler="wsd", wsd_fract_decay=0.29)
    lr = lr_from_config(cfg)
    assert lr[71] == 1.0 and lr[72] == 1.0 and lr[73] < 1.0  # hold until 100 - 28 = 72
    np.testing.assert_allclose(lr, [wsd_literal(s, 100, 0, 0.29, "linear") for s in range(100)], rtol=1e-14)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_onecycle_matches_pytorch(anneal):
    T, W, peak, floor = 500, 40, 1e-3, 1e-6
    cfg = dict(lr=peak, iterations=T, warmup_steps=W, scheduler=anneal, cos_final_lr=floor)
    want = np.array([onecycle_literal(s, T, W, peak, floor, anneal) for s in range(T)])
    np.testing.assert_allclose(lr_from_config(cfg), want, rtol=1e-10)
    torch = pytest.importorskip("torch", reason="torch not installed")
    from cdfast.schedules import from_torch

    opt = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=peak)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=T, pct_start=W / T,
                                                anneal_strategy=anneal, cycle_momentum=False, div_factor=100,
                                                final_div_factor=peak / 100 / floor)
    np.testing.assert_allclose(lr_from_config(cfg), from_torch(sched, T), rtol=1e-9)


def test_none_and_cos_inf():
    assert (lr_from_config(dict(lr=3e-4, iterations=10, scheduler="none")) == 3e-4).all()
    cfg = dict(lr=1.0, iterations=100, warmup_steps=10, scheduler="cos_inf", cos_inf_steps=20)
    lr = lr_from_config(cfg)
    t = np.arange(10, 80)
    np.testing.assert_allclose(lr[10:80], 0.1 + 0.45 * (1 + np.cos(np.pi * (t - 10) / 70)), rtol=1e-13)
    assert (lr[80:] == 0.1).all() and lr[0] == 0.01


def _export(path, cfg, train_iters, lr_of, name="toy", val_iters=(100, 200)):
    hist = {"train": {"iter": list(train_iters), "train_lr": [float(lr_of(t)) for t in train_iters],
                      "train_loss": [3.0] * len(train_iters)},
            "val": {"iter": list(val_iters), "val_loss": [3.0] * len(val_iters)}}
    path.write_text(json.dumps({"name": name, "config": cfg, "summary": {}, "history": hist}))
    return path


@pytest.mark.parametrize("floor_entry", [None, -1, "missing"])
def test_missing_cosine_floor_is_inferred_and_checked(tmp_path, floor_entry):
    T, W, peak = 2000, 30, 1e-3
    cfg = dict(lr=peak, iterations=T, warmup_steps=W, scheduler="cos", cos_final_lr=floor_entry)
    if floor_entry == "missing":
        del cfg["cos_final_lr"]
    true = lambda t: onecycle_literal(min(t, T - 1), T, W, peak, 0.1 * peak)  # noqa: E731  the trainer's 10% floor
    with pytest.raises(ValueError, match="floor is not in the config"):
        lr_from_config(cfg)  # never silently decays to 0
    log = read_log(_export(tmp_path / "run.json", cfg, range(50, T + 1, 50), true))
    assert log.lr_source == "config (floor inferred from the logged LR)"
    assert log.meta["lr"]["cos_floor_inferred"] == pytest.approx(0.1 * peak, rel=1e-12)
    np.testing.assert_allclose(log.lr, [true(t) for t in range(T)], rtol=1e-11)
    assert log.lr[-1] == pytest.approx(0.1 * peak, rel=1e-12)


def test_config_contradicting_the_log_is_refused(tmp_path):
    cfg = dict(lr=1e-3, iterations=400, warmup_steps=10, scheduler="wsd", wsd_fract_decay=0.5)
    path = _export(tmp_path / "run.json", cfg, range(10, 401, 10),
                   lambda t: 2e-3 * wsd_literal(t, 400, 10, 0.5, "linear"), name="bad-run")
    with pytest.raises(ValueError, match=r"run 'bad-run'.*at step 10: rebuilt 0\.001, logged 0\.002 .*39 of 39"):
        read_log(path)
    log = read_log(path, lr=2e-3 * np.array([wsd_literal(t, 400, 10, 0.5, "linear") for t in range(400)]))
    assert log.lr_source == "user"  # the user's override skips the config
    # a value off by more than the tolerance at one logged step only
    ok = lambda t: 1e-3 * wsd_literal(t, 400, 10, 0.5, "linear") * (1 + 1e-5 * (t == 300))  # noqa: E731
    with pytest.raises(ValueError, match="at step 300"):
        read_log(_export(tmp_path / "r2.json", cfg, range(10, 401, 10), ok))
    tiny = lambda t: 1e-3 * wsd_literal(t, 400, 10, 0.5, "linear") * (1 + 0.1 * LR_RTOL)  # noqa: E731
    assert read_log(_export(tmp_path / "r3.json", cfg, range(10, 401, 10), tiny)).lr_source == "config"


def test_branched_run_unknown_scheduler_needs_its_parent(tmp_path):
    """A branch logs from its checkpoint on; the LR before it is the parent's."""
    parent_cfg = dict(lr=1e-3, iterations=1000, warmup_steps=20, scheduler="wsd", wsd_fract_decay=0.2)
    parent_lr = lambda t: 1e-3 * wsd_literal(t, 1000, 20, 0.2, "linear")  # noqa: E731
    _export(tmp_path / "parent.json", parent_cfg, range(10, 1001, 10), parent_lr, name="parent")
    branch_cfg = dict(lr=1e-3, iterations=1500, warmup_steps=20, scheduler="wsd_twostage",
                      resume_from="/somewhere/exps/parent/ckpts/600")
    # a piecewise-linear branch with kinks at logged steps: drop to half over 100 steps, hold, decay to 0
    branch = lambda t: 1e-3 * (1 - 0.5 * min(t - 600, 100) / 100 if t < 1200 else 0.5 * (1500 - t) / 300)  # noqa: E731
    alone = tmp_path / "alone"
    alone.mkdir()
    with pytest.raises(ValueError, match=r"run 'branch'.*branches from step 600.*parent's export was not found"):
        read_log(_export(alone / "branch.json", branch_cfg, range(650, 1501, 50), branch, name="branch",
                         val_iters=(600, 800)))
    log = read_log(_export(tmp_path / "branch.json", branch_cfg, range(650, 1501, 50), branch, name="branch",
                           val_iters=(600, 800)))
    assert log.lr_source == "parent run (steps 1..600) + logged (interpolated)"
    np.testing.assert_allclose(log.lr[:600], [parent_lr(t) for t in range(600)], rtol=1e-14)
    np.testing.assert_allclose(log.lr[650:], [branch(t) for t in range(650, 1500)], rtol=1e-12, atol=1e-18)
    assert log.meta["lr"]["branch_step"] == 600 and log.T == 1500


def test_branched_run_with_a_known_scheduler(tmp_path):
    cfg = dict(lr=1e-3, iterations=1000, warmup_steps=20, scheduler="wsd", wsd_fract_decay=0.3,
               resume_from="/x/exps/stable/ckpts/700")
    lr_of = lambda t: 1e-3 * wsd_literal(t, 1000, 20, 0.3, "linear")  # noqa: E731
    log = read_log(_export(tmp_path / "b.json", cfg, range(750, 1001, 50), lr_of, val_iters=(700, 800)))
    assert log.lr_source.startswith("config; steps 1..700 (before the branch) rebuilt from this config")
    np.testing.assert_allclose(log.lr, [lr_of(t) for t in range(1000)], rtol=1e-13)
    # the parent beside it: its LR is compared with the branch's config before the branch
    stable = dict(lr=1e-3, iterations=2000, warmup_steps=20, scheduler="wsd", wsd_fract_decay=0.0)
    _export(tmp_path / "stable.json", stable, range(10, 2001, 10), lambda t: 1e-3 * wsd_literal(t, 2000, 20, 0.0, "linear"))
    log = read_log(tmp_path / "b.json")
    assert log.lr_source == "config; steps 1..700 checked against the parent run"
    # a parent with another peak LR: its prefix is used, the branch's config after the branch
    _export(tmp_path / "stable.json", dict(stable, lr=2e-3), range(10, 2001, 10),
            lambda t: 2e-3 * wsd_literal(t, 2000, 20, 0.0, "linear"))
    log = read_log(tmp_path / "b.json")
    assert log.lr_source.startswith("parent run (steps 1..700) + config")
    assert log.lr[500] == 2e-3 and log.lr[800] == pytest.approx(lr_of(800), rel=1e-14)


def test_fill_logged_is_exact_on_linear_stretches_and_bounded_on_cosine():
    T, k = 1000, 50
    kinks = np.array([0, 100, 400, 800, 999])
    vals = np.array([0.01, 1.0, 1.0, 0.3, 0.001])
    true = np.interp(np.arange(T), kinks, vals)  # piecewise linear, kinks at logged steps
    idx = np.r_[np.arange(0, T, k), T - 1]
    lr, exact = fill_logged(T, idx, true[idx])
    assert not exact
    np.testing.assert_allclose(lr, true, rtol=1e-14, atol=1e-17)
    # a cosine decay: error at most eta pi^2 k^2 / (16 T^2), the bound stated in cdfast.io._lr
    cos = 0.5 * (1 + np.cos(np.pi * np.arange(T) / T))
    lr, _ = fill_logged(T, idx, cos[idx])
    assert np.max(np.abs(lr - cos)) <= np.pi ** 2 * k ** 2 / (16 * T ** 2)
    assert np.max(np.abs(lr - cos)) > 0.5 * np.pi ** 2 * k ** 2 / (16 * T ** 2)  # and the bound is tight
    with pytest.raises(ValueError, match="update 2 is -1.0"):
        fill_logged(5, np.array([0, 1]), np.array([1.0, -1.0]))


def test_infer_cos_floor_needs_decay_points():
    cfg = dict(lr=1.0, iterations=100, warmup_steps=10, scheduler="cos")
    with pytest.raises(ValueError, match="no logged LR in the cosine decay"):
        infer_cos_floor(cfg, np.array([1, 5]), np.array([0.1, 0.5]))
    with pytest.raises(ValueError, match="cannot be inferred"):
        resolve_from_config(cfg, np.array([10]), np.array([1.0]), name="r")


# ---------------------------------------------------------------------------
# Every real run


def _all_runs(data_dir):
    return sorted(data_dir.glob("llm124m/*.json")) + sorted(data_dir.glob("lr-scheduling/**/*.json"))


def _logged_train_lr(path):
    tr = json.loads(path.read_text())["history"]["train"]
    it = np.asarray(tr["iter"], dtype=np.int64)
    lr = np.asarray([np.nan if v is None else v for v in tr["train_lr"]], dtype=np.float64)
    return it, lr


def test_every_real_run_reads_its_logged_lr(data_dir):
    """The LR read matches the logged train_lr at every logged step t < T (train_lr at t is
    lr[t] = eta_{t+1}), within REAL_RTOL, or the reader refuses naming the run and why."""
    paths = _all_runs(data_dir)
    assert len(paths) == 178
    refused, sources = [], {}
    for path in paths:
        try:
            log = read_log(path)
        except ValueError as exc:
            name = json.loads(path.read_text())["name"]
            assert name in str(exc) and ("pass lr=" in str(exc) or "Pass lr=" in str(exc)), str(exc)
            refused.append(path.name)
            continue
        it, logged = _logged_train_lr(path)
        ok = np.isfinite(logged) & (it < log.T)
        got = log.lr[it[ok]]
        err = np.abs(got - logged[ok])
        assert np.all(err <= REAL_RTOL * np.abs(logged[ok]) + 1e-15 * logged[ok].max()), (path.name, err.max())
        assert log.lr[-1] > 0 and np.all(np.isfinite(log.lr)) and log.lr.shape == (log.T,)
        sources[log.lr_source.split(";")[0].split(" (")[0]] = sources.get(log.lr_source.split(";")[0].split(" (")[0], 0) + 1
    assert refused == []  # every run resolves today; a refusal must say why (checked above)
    assert sources == {"config": 174, "parent run": 4}


def test_logged_lr_is_the_next_updates(data_dir):
    """Verify, not trust, the llm-baselines off-by-one: at iteration t the log shows lr[t]
    (eta_{t+1}); reading it as lr[t-1] (eta_t) contradicts the schedule in the warmup."""
    path = next(data_dir.glob("lr-scheduling/cos-210m_*iter22222*.json"))  # logged every 10 steps from 10
    log = read_log(path)
    it, logged = _logged_train_lr(path)
    warm = it < 300
    np.testing.assert_allclose(log.lr[it[warm]], logged[warm], rtol=1e-14)
    shifted = np.abs(log.lr[it[warm] - 1] - logged[warm]) / logged[warm]
    assert shifted.min() > 1e-4  # 1e10 times the error of the right reading


def test_cosine_runs_without_a_floor_end_at_ten_percent(data_dir):
    runs = sorted(data_dir.glob("lr-scheduling/cos-10-124m_*.json")) + sorted(data_dir.glob("lr-scheduling/cos-210m_*.json"))
    assert len(runs) == 15
    for path in runs:
        cfg = json.loads(path.read_text())["config"]
        assert cfg.get("cos_final_lr") in (None, -1)
        with pytest.raises(ValueError, match="floor is not in the config"):
            lr_from_config(cfg)
        log = read_log(path)
        assert log.lr_source == "config (floor inferred from the logged LR)"
        assert log.lr[-1] / cfg["lr"] == pytest.approx(0.1, rel=1e-9)
        assert log.meta["lr"]["cos_floor_inferred"] / cfg["lr"] == pytest.approx(0.1, rel=1e-9)


def test_branched_runs(data_dir):
    ann = sorted(data_dir.glob("lr-scheduling/ann*.json"))
    branched = [p for p in ann if json.loads(p.read_text())["config"].get("resume_from", "").rstrip("/")[-2:] != "/0"]
    assert len(branched) > 50
    for path in branched[:20]:
        run = read_wandb_json(path)
        N = run.branch_step
        log = read_log(path)
        assert N > 0 and log.meta["lr"]["branch_step"] == N
        assert f"steps 1..{N}" in log.lr_source
        cfg, W = run.config, run.config["warmup_steps"]
        # before the branch: the common warmup then the constant peak of the stable parent
        t = np.arange(N)
        want = cfg["lr"] * np.where(t < W, t / W + (1 - t / W) / 100, 1.0)
        np.testing.assert_allclose(log.lr[:N], want, rtol=1e-13)
        assert log.steps[0] >= N


def test_horizon_transfer_parents(data_dir):
    folder = data_dir / "lr-scheduling" / "horizon_transfer"
    two = sorted(folder.glob("extend-50k_*wsd_twostage*.json"))
    assert len(two) == 4
    for path in two:
        log = read_log(path)
        parent = read_wandb_json(read_wandb_json(path).parent_path())
        assert log.lr_source == "parent run (steps 1..40000) + logged (interpolated)"
        np.testing.assert_array_equal(log.lr[:40000], parent.lr()[:40000])
        it, logged = _logged_train_lr(path)
        ok = it < log.T
        np.testing.assert_array_equal(log.lr[it[ok]], logged[ok])
    for path in sorted(set(folder.glob("extend-50k_*.json")) - set(two)):
        assert "checked against the parent run" in read_log(path).lr_source


def test_cli_fit_wandb_uses_the_resolved_lr(capsys, data_dir):
    pytest.importorskip("cdfast.fit")
    path = next(data_dir.glob("lr-scheduling/cos-10-124m_*lr0.001_*iter15000*.json"))
    code = cli.main(["fit", "--wandb", str(path), "--burn-in", "2000"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "learning rates: config (floor inferred from the logged LR)" in out
    assert float(out.split("R^2 (fitted points) = ")[1].split()[0]) > 0.9


def test_shared_data_readme_runs_have_expected_layout(data_dir):
    """read_wandb_json and read_log agree on the validation curve of a real run."""
    path = next(data_dir.glob("llm124m/cos-zero-124m_*lr0.0005_*iter25000*.json"))
    run = read_wandb_json(path)
    log = read_log(path)
    steps, loss = run.curve()
    np.testing.assert_array_equal(log.steps, steps)
    np.testing.assert_array_equal(log.loss, loss)
    np.testing.assert_array_equal(log.lr, run.lr())
    assert pathlib.Path(log.meta["path"]) == path
