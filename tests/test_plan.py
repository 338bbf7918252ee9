"""Planning a run from its log (cdfast.plan_schedule), the refined schedule from logged
gradient norms (cdfast.refine_schedule), and the schedule files they write.

Expected values come from the literal nested sums of eq. (2.4) (tests/naive.py): under
the paper's model ``L_inf + D~^2 a + G~^2 b`` the final loss of ``eta * shape`` is
``L_inf + D~^2 a(shape) / eta + G~^2 b(shape) eta``, least at ``eta = sqrt(D~^2 a / (G~^2 b))``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import warnings

import numpy as np
import pytest

import cdfast
from cdfast import schedules as S
from cdfast.io import read_lr_file, write_schedule
from naive import last_iterate_naive

L_INF, D_SQ, G_SQ = 2.5, 0.8, 0.05
T_RUN = 160  # the synthetic run
T_PLAN = 120  # the planned horizon (naive sums are O(T^2) in Python)
W = 12


def _terms_naive(shape, grad_sq=None):
    """(a, b) of eq. (2.4) from the nested sums: bound = D^2 a + G^2 b."""
    return (last_iterate_naive(shape, D=1.0, G=0.0, grad_sq=grad_sq),
            last_iterate_naive(shape, D=0.0, G=1.0, grad_sq=grad_sq))


def _ramp_then(decay, W):
    """The plan's convention: a ramp t / W for t < W, then the decay (peak 1 at step W)."""
    return np.concatenate([np.arange(W) / W, decay])


@pytest.fixture(scope="module")
def bound_fit():
    """The paper's model fitted to a synthetic run whose losses follow eq. (2.4) plus a
    small deterministic wiggle (so that the bootstrap intervals have width)."""
    lr = 0.05 * _ramp_then(S.cosine(T_RUN - W), W)
    steps = np.arange(8, T_RUN + 1, 4)
    loss = np.array([last_iterate_naive(lr[:s], math.sqrt(D_SQ), math.sqrt(G_SQ), L_INF) for s in steps])
    loss *= 1.0 + 2e-3 * np.sin(steps / 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cdfast.fit_loss_curve(lr, steps, loss, model="bound")


@pytest.fixture(scope="module")
def bound_plan(bound_fit):
    return cdfast.plan_schedule(bound_fit, T_PLAN, warmup=W, n_boot=40)


def test_best_peak_lrs_match_the_closed_form(bound_fit, bound_plan):
    L, D2, G2 = (bound_fit.params[k] for k in ("L_inf", "D_sq", "G_sq"))
    assert [s.name for s in bound_plan.schedules] == ["cosine", "wsd", "linear", "optimal"]
    for name, decay in (("cosine", S.cosine(T_PLAN - W)), ("wsd", S.wsd(T_PLAN - W, decay_frac=0.2)),
                        ("linear", S.linear(T_PLAN - W))):
        shape = _ramp_then(decay, W)
        a, b = _terms_naive(shape)
        got = bound_plan[name]
        assert got.peak_lr == pytest.approx(math.sqrt(D2 * a / (G2 * b)), rel=1e-5)
        assert got.loss == pytest.approx(L + 2.0 * math.sqrt(D2 * G2 * a * b), rel=1e-10)
        assert got.lr == pytest.approx(got.peak_lr * shape, rel=1e-15, abs=0)
        assert got.edge == ""


def test_the_optimal_schedule_is_no_worse_than_the_families(bound_fit, bound_plan):
    opt = bound_plan.optimal
    assert opt.loss <= min(f.loss for f in bound_plan.families) * (1 + 1e-12)
    assert bound_plan.best is opt
    # feasible: the ramp to lr[W], non-increasing after it; its loss is the model's at T
    assert opt.lr[:W] == pytest.approx(opt.lr[W] * np.arange(W) / W, rel=1e-15, abs=0)
    assert (np.diff(opt.lr[W:]) <= 0).all() and opt.peak_lr == opt.lr[W]
    L, D2, G2 = (bound_fit.params[k] for k in ("L_inf", "D_sq", "G_sq"))
    assert opt.loss == pytest.approx(last_iterate_naive(opt.lr, math.sqrt(D2), math.sqrt(G2), L), rel=1e-12)
    assert np.array_equal(np.asarray(bound_plan), opt.lr)
    assert bound_plan.result.converged


def test_intervals_are_the_fits_intervals_at_T(bound_fit, bound_plan):
    for s in bound_plan.schedules:
        lo, hi = bound_fit.interval(s.lr, at=[T_PLAN], level=0.9, n_boot=40, seed=0)
        assert (s.lo, s.hi) == (lo[0], hi[0])
        assert s.lo < s.hi
    plain = cdfast.plan_schedule(bound_fit, T_PLAN, warmup=W, n_boot=0, families=["linear"])
    assert math.isnan(plain.optimal.lo) and math.isnan(plain["linear"].hi)
    assert plain.optimal.lr == pytest.approx(bound_plan.optimal.lr, rel=1e-12)


def test_an_optimum_free_to_rise_is_no_worse(bound_fit, bound_plan):
    free = cdfast.plan_schedule(bound_fit, T_PLAN, warmup=W, n_boot=0, monotone=False, smooth=False)
    assert not free.result.monotone
    assert free.optimal.loss <= bound_plan.optimal.loss * (1 + 1e-12)
    assert "non-increasing" not in free.summary()


def test_summary_and_table(bound_plan):
    text = bound_plan.summary()
    for name in ("cosine", "wsd", "linear", "optimal", "90% interval", "converged"):
        assert name in text
    columns, rows = bound_plan.table()
    assert columns[:3] == ["schedule", "peak_lr", "final_loss"] and [r[0] for r in rows][-1] == "optimal"
    assert bound_plan.predict("optimal", at=[T_PLAN])[0] == pytest.approx(bound_plan.optimal.loss, rel=1e-14)


def test_families_with_parameters_and_a_search_range(bound_fit):
    L, D2, G2 = (bound_fit.params[k] for k in ("L_inf", "D_sq", "G_sq"))
    # smooth=False: over 60 steps the cooldown falls 1/60 of the peak per step, above the 1% limit
    plan = cdfast.plan_schedule(bound_fit, T_PLAN, warmup=0, families=[("wsd", {"decay_frac": 0.5})],
                                peak_lr_range=(1e-4, 1e-2), n_boot=0, smooth=False)
    a, b = _terms_naive(S.wsd(T_PLAN, decay_frac=0.5))
    assert math.sqrt(D2 * a / (G2 * b)) > 1e-2  # the minimum lies above the range: its top end, flagged
    got = plan["wsd:decay_frac=0.5"]
    assert got.edge == ">" and got.peak_lr == pytest.approx(1e-2, rel=1e-6)
    assert plan.optimal.loss <= got.loss


def test_the_packaged_run_with_the_default_model():
    plan = cdfast.plan_schedule(cdfast.data.SAMPLE_RUN, 1500, n_boot=0)
    assert plan.fit.model.name == cdfast.models.DEFAULT_MODEL
    assert plan.warmup == 299 and plan.run_T == 25000  # the run's own warmup, kept
    assert plan.optimal.loss <= min(f.loss for f in plan.families) * (1 + 1e-12)
    for s in plan.schedules:
        assert s.loss == pytest.approx(float(plan.fit.predict(s.lr, at=[1500])[0]), rel=1e-14)
    # 1500 steps planned from a 25000-step run: every decay comes far earlier than the run's, and the plan says so
    assert "horizon (the planned schedules): the schedule ends at step 1500, 16.7x before" in plan.summary()


def test_the_summary_names_a_horizon_beyond_the_fit(bound_fit, bound_plan):
    assert "horizon" not in bound_plan.summary()  # 120 of the run's 160 steps: inside the fit
    longer = cdfast.plan_schedule(bound_fit, 2 * T_RUN, warmup=W, n_boot=0, families=["linear"])
    assert f"horizon (the planned schedules): step {2 * T_RUN} is 2x the last fitted step ({T_RUN})" in longer.summary()


def test_a_real_run(data_dir):
    runs = sorted((data_dir / "llm124m").glob("ann124-0.8_*iter15000*.json"))
    if not runs:
        pytest.skip("the WSD run of shared/data/llm124m is missing")
    plan = cdfast.plan_schedule(runs[0], 4000, n_boot=0)
    assert plan.optimal.loss <= min(f.loss for f in plan.families) * (1 + 1e-12)
    assert plan.result.converged and (np.diff(plan.optimal.lr[plan.warmup:]) <= 0).all()


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(T=1), ValueError, "T = 1 must be >= 2"),
    (dict(T=2.5), TypeError, "T must be a whole number"),
    (dict(T=50, warmup=50), ValueError, "warmup = 50 must be < T = 50"),
    (dict(T=50, families=["nope"]), ValueError, "unknown schedule 'nope'"),
    (dict(T=50, families=[("wsd", {"warmup": 3})]), ValueError, "the warmup is the plan's"),
    (dict(T=50, families=["linear", "linear"]), ValueError, "listed twice"),
    (dict(T=50, families=[3]), TypeError, "neither a schedule name"),
    (dict(T=50, peak_lr_range=(1.0, 0.5)), ValueError, "0 < low < high"),
    (dict(T=50, level=1.5), ValueError, "level = 1.5 must lie in"),
    (dict(T=50, n_boot=5), ValueError, "n_boot = 5 must be 0"),
    (dict(T=50, model="bound"), ValueError, "already a CurveFit"),
])
def test_bad_input_names_the_argument(bound_fit, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cdfast.plan_schedule(bound_fit, **kwargs)


def test_a_model_without_a_gradient_is_refused():
    lr = 0.05 * S.linear(80)
    steps = np.arange(4, 81, 4)
    loss = 2.0 + 1.0 / np.sqrt(steps)
    fits = [cdfast.fit_loss_curve(lr, steps, loss, model="bound", peak_power=0.8)]  # the peak enters via max(lr)
    with pytest.raises(ValueError, match="gradient"):
        cdfast.plan_schedule(fits[0], 50)
    with pytest.raises(TypeError, match="CurveFit, a TrainingLog or the path"):
        cdfast.plan_schedule(42, 50)


# ---------------------------------------------------------------------------
# refine_schedule


def test_refined_from_constant_norms_is_linear_decay():
    T = 100
    res = cdfast.refine_schedule(np.full(T, 3.0), peak_lr=0.01)
    assert res.lr == pytest.approx(0.01 * np.arange(T, 0, -1) / T, rel=1e-14)  # Defazio et al.: (T - t) / T
    assert res.bounds["refined"] == pytest.approx(res.bounds["linear"], rel=1e-13)
    # each bound is 2 sqrt(a b) of its unit-peak shape (eq. 2.4 at the best peak LR, D = G = 1)
    for name, shape in res.schedules.items():
        a, b = _terms_naive(shape, grad_sq=np.full(T, 9.0))
        assert res.bounds[name] == pytest.approx(2.0 * math.sqrt(a * b), rel=1e-11), name
    excess = res.excess
    assert excess["exact"] == 0.0 and min(excess.values()) >= -1e-12
    assert res.bounds["monotone"] <= res.bounds["linear"] * (1 + 1e-12)
    assert "refined" in res.summary() and "exact" in res.summary()


def test_growing_norms_move_the_decay_earlier():
    T = 400
    flat = cdfast.refine_schedule(np.ones(T))
    growing = cdfast.refine_schedule(np.linspace(1.0, 3.0, T))
    for name in ("exact", "refined"):
        assert (cdfast.RefinedSchedule.describe(growing.schedules[name])["half_at"]
                < cdfast.RefinedSchedule.describe(flat.schedules[name])["half_at"] - 0.05)


def test_refine_reads_the_norms_of_a_log(tmp_path):
    T = 120
    lr = 0.02 * S.linear(T)
    g = 1.0 + 0.5 * np.arange(T) / T
    path = tmp_path / "run.csv"
    path.write_text("step,lr,grad_norm,val_loss\n" + "".join(
        f"{s},{float(lr[s - 1])!r},{float(g[s - 1])!r},{3.0 + 1.0 / s!r}\n" for s in range(1, T + 1)))
    res = cdfast.refine_schedule(path)
    assert res.T == T and res.peak_lr == pytest.approx(0.02, rel=1e-15) and res.coverage == (1, T, T)
    assert res.lr == pytest.approx(S.refined(g, peak_lr=0.02), rel=1e-13)


def test_refine_without_norms_says_so():
    with pytest.raises(ValueError, match="has no gradient norms"):
        cdfast.refine_schedule(cdfast.data.SAMPLE_RUN)
    with pytest.raises(ValueError, match=r"grad_norms\[2\] is 0"):
        cdfast.refine_schedule([1.0, 2.0, 0.0, 1.0])


# ---------------------------------------------------------------------------
# schedule files

LR = np.concatenate([0.003 * np.arange(5) / 5, 0.003 * S.cosine(40)])


def test_csv_and_npy_round_trip_exactly(tmp_path):
    for name in ("s.csv", "s.npy"):
        write_schedule(tmp_path / name, LR)
        assert np.array_equal(read_lr_file(str(tmp_path / name)), LR)
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "step,lr" and lines[1].startswith("1,") and lines[-1].startswith(f"{LR.shape[0]},")


def test_json_is_the_lambdalr_form(tmp_path):
    write_schedule(tmp_path / "s.json", LR, source="test")
    spec = json.loads((tmp_path / "s.json").read_text())
    assert spec["T"] == LR.shape[0] and spec["peak_lr"] == LR.max() and spec["source"] == "test"
    assert np.array_equal(np.array(spec["multipliers"]), LR / LR.max())


def test_python_module_defines_lr_lambda(tmp_path):
    write_schedule(tmp_path / "my_schedule.py", LR)
    spec = importlib.util.spec_from_file_location("my_schedule", tmp_path / "my_schedule.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.PEAK_LR == LR.max() and mod.T == LR.shape[0]
    assert [mod.lr_lambda(i) for i in range(LR.shape[0] + 3)] == (list(LR / LR.max()) + [LR[-1] / LR.max()] * 3)
    assert "from my_schedule import PEAK_LR, lr_lambda" in (tmp_path / "my_schedule.py").read_text()


def test_torch_lambdalr_reproduces_the_schedule(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    write_schedule(tmp_path / "s.json", LR)
    spec = json.loads((tmp_path / "s.json").read_text())
    mult, T = spec["multipliers"], spec["T"]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=spec["peak_lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: mult[min(i, T - 1)])
    used = []
    for _ in range(T):  # update i + 1 runs with the LR set after i scheduler steps
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert np.array(used) == pytest.approx(LR, rel=2e-16, abs=0)


def test_bad_schedule_files(tmp_path):
    with pytest.raises(ValueError, match="must end in .csv, .npy, .json, .py"):
        write_schedule(tmp_path / "s.txt", LR)
    with pytest.raises(ValueError, match="all zeros"):
        write_schedule(tmp_path / "s.json", np.zeros(4))
    with pytest.raises(ValueError, match=r"lr\[1\] is nan"):
        write_schedule(tmp_path / "s.csv", [1.0, np.nan])
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------
# Smooth, inside what the run supports, from a checkpoint, differences with intervals

T_SAMPLE = 1500


def _largest_step(lr):
    return float(np.max(np.abs(np.diff(lr))))


def _limit(plan):
    W = plan.warmup
    return max(1.0 / W, 0.01) if W else 0.01


@pytest.fixture(scope="module")
def sample_plan():
    return cdfast.plan_schedule(cdfast.data.SAMPLE_RUN, T_SAMPLE, n_boot=0)


@pytest.fixture(scope="module")
def sample_log():
    return cdfast.io.read_log(cdfast.data.SAMPLE_RUN)


def test_every_planned_schedule_is_smooth(sample_plan):
    assert sample_plan.max_step == _limit(sample_plan)
    for s in sample_plan.schedules:
        assert _largest_step(s.lr) <= sample_plan.max_step * s.lr.max() * (1 + 1e-12), s.name
    opt = sample_plan.optimal.lr
    W = sample_plan.warmup  # the ramp rises to the peak and the decay leaves it gently: no cliff after the warmup
    assert opt[W - 1] < opt[W] and opt[W + 1] >= opt[W] * (1 - sample_plan.max_step)


def test_a_step_schedule_is_refused_unless_asked_for():
    with pytest.raises(ValueError, match=r"families: inverse_sqrt changes the LR by 29.3% .* smooth=False"):
        cdfast.plan_schedule(cdfast.data.SAMPLE_RUN, T_SAMPLE, families=["inverse_sqrt"], n_boot=0)
    plan = cdfast.plan_schedule(cdfast.data.SAMPLE_RUN, T_SAMPLE, families=["inverse_sqrt"], n_boot=0, smooth=False)
    assert plan.max_step is None and "smooth:" not in plan.summary()


def test_the_peak_stays_in_the_trust_region_of_one_run(sample_plan, sample_log):
    peak = float(sample_log.lr.max())
    lo, hi = peak * cdfast.plan.TRUST_FACTORS[0], peak * cdfast.plan.TRUST_FACTORS[1]
    assert sample_plan.supported == pytest.approx((lo, hi), rel=1e-15)
    for s in sample_plan.schedules:
        assert lo * (1 - 1e-12) <= s.peak_lr <= hi * (1 + 1e-12), s.name
        assert lo * (1 - 1e-12) <= s.lr.max() <= hi * (1 + 1e-12), s.name
        assert not s.extrapolated
    assert "trust region" in sample_plan.summary() and "one run at one peak LR" in sample_plan.summary()


def test_going_beyond_the_run_is_explicit_and_marked():
    with pytest.raises(ValueError, match="reaches beyond .* extrapolate=True"):
        cdfast.plan_schedule(cdfast.data.SAMPLE_RUN, T_SAMPLE, peak_lr_range=(1e-3, 1e-2), n_boot=0)
    plan = cdfast.plan_schedule(cdfast.data.SAMPLE_RUN, T_SAMPLE, peak_lr_range=(3e-3, 1e-2), extrapolate=True,
                                families=["linear"], n_boot=0)
    assert all(s.extrapolated for s in plan.schedules)
    assert "EXTRAPOLATION" in plan.summary()
    assert plan.table()[1][0][-1] is True


def test_from_a_checkpoint_the_run_s_own_lrs_are_kept_bit_for_bit(sample_log):
    t, T = 1000, 3000
    plan = cdfast.plan_schedule(sample_log, T, from_step=t, n_boot=0)
    assert plan.from_step == t and [s.name for s in plan.schedules] == ["cosine", "wsd", "linear", "optimal"]
    run = np.asarray(sample_log.lr)
    limit = _limit(cdfast.plan_schedule(sample_log, 400, n_boot=0, families=["linear"])) * run.max()
    for s in plan.schedules:
        assert s.lr.shape == (T,)
        assert np.array_equal(s.lr[:t], run[:t]), s.name  # bit-identical prefix
        assert (np.diff(s.lr[t - 1:]) <= 0).all() and s.peak_lr == run[t - 1]
        assert _largest_step(s.lr[t - 1:]) <= limit * (1 + 1e-12), s.name
        assert s.loss == pytest.approx(float(plan.fit.predict(s.lr, at=[T])[0]), rel=1e-12)
    assert plan.optimal.loss <= min(f.loss for f in plan.families) * (1 + 1e-12)
    assert "from step 1000" in plan.summary()


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(T=40000, from_step=30000), ValueError, "from_step = 30000 is beyond the log, which has 25000 steps"),
    (dict(from_step=3000), ValueError, "from_step = 3000 must be < T = 2000"),
    (dict(from_step=100), ValueError, "from_step = 100 lies in the run's warmup"),
    (dict(from_step=1.5), TypeError, "from_step"),
    (dict(from_step=1000, warmup=10), ValueError, "warmup and peak_lr_range do not apply"),
    (dict(peak_lr_range=(0.003, 0.004)), ValueError, "excludes the fitted run's peak LR 0.002"),
    (dict(families=["wsd:decay_frac=0.2"]), ValueError, "unknown schedule"),
    (dict(families=[("wsd", {"decay_frac": 2.0})]), ValueError, "decay_frac = 2.0 must lie in"),
    (dict(families=[("wsd", {"nope": 1})]), TypeError, "schedule 'wsd'"),
    (dict(monotone=False), ValueError, "pass smooth=False"),
    (dict(monotone=False, smooth=False), ValueError, "outside 0.0016..0.0025 .* extrapolate=True"),
    (dict(smooth="yes"), TypeError, "smooth must be True or False"),
])
def test_bad_plan_input_names_the_argument(sample_log, kwargs, exc, match):
    T = kwargs.pop("T", 2000)
    with pytest.raises(exc, match=match):
        cdfast.plan_schedule(sample_log, T, n_boot=0, **kwargs)


def test_from_step_needs_the_log(bound_fit):
    with pytest.raises(ValueError, match="from_step needs the run's logged LRs"):
        cdfast.plan_schedule(bound_fit, T_PLAN, from_step=20, n_boot=0)


def test_differences_come_from_the_same_refits(bound_fit, bound_plan):
    from cdfast.models._curvefit import _predict_replicates, _replicates

    refits = _replicates(bound_fit, 40, 0)  # cached with the fit: the very refits the plan used
    at = np.array([T_PLAN])
    best = bound_plan.best
    ref = _predict_replicates(bound_fit, refits, best.lr, at, None)[:, -1]
    assert best.delta == 0.0 and (best.delta_lo, best.delta_hi) == (0.0, 0.0)
    for s in bound_plan.schedules:
        if s is best:
            continue
        d = _predict_replicates(bound_fit, refits, s.lr, at, None)[:, -1] - ref
        assert (s.delta_lo, s.delta_hi) == pytest.approx(tuple(np.quantile(d, [0.05, 0.95])), rel=1e-12, abs=1e-15)
        assert s.delta == pytest.approx(s.loss - best.loss, rel=1e-15)
        assert s.distinguishable == (s.delta_lo > 0)
    text = bound_plan.summary()
    same = [s.name for s in bound_plan.schedules if s is not best and not s.distinguishable]
    assert ("cannot tell" in text) == bool(same)
    assert "interval of the difference" in text


def test_runs_at_several_peaks_bound_the_peak_by_their_range():
    T_run, W_run = 300, 20
    shape = _ramp_then(S.cosine(T_run - W_run), W_run)
    steps = np.arange(10, T_run + 1, 10)
    lrs, losses = [], []
    for peak in (0.01, 0.03):
        lr = peak * shape
        a = np.array([0.5 / lr[:s].sum() for s in steps])  # a loss that falls with the LR area, as the models do
        lrs.append(lr)
        losses.append(2.0 + 0.4 * a ** 0.45 + 0.02 * np.array([lr[s - 1] for s in steps]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = cdfast.fit_loss_curves(lrs, [steps, steps], losses)  # the default model: an average of two
    plan = cdfast.plan_schedule(fit, 400, warmup=W_run, n_boot=0, families=["linear"])
    assert plan.supported == (0.01, 0.03)
    for s in plan.schedules:
        assert 0.01 * (1 - 1e-12) <= s.peak_lr <= 0.03 * (1 + 1e-12)
    assert "the peak LRs of the fitted runs" in plan.summary()
