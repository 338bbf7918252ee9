"""Loss models (cdfast.models) and the default fit: literal formulas, recovery, comparison, intervals, errors.

Expected values come from the literal nested sums of eq. (2.4) (tests/naive.py) evaluated
on the effective learning rates, from synthetic curves generated with known parameters,
and from finite differences; the real-run check uses the sample run shipped with cdfast.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import cdfast
from cdfast import schedules
from cdfast.models import MODELS, Averaged, PowerBound, get_model, names
from cdfast.models.fitting import bounded_lstsq, fit_separable

from naive import last_iterate_naive


def _runs(T=3000, peak=1e-3):
    """A constant and a cosine run of one setup (the schedule-transfer protocol in small)."""
    const = peak * schedules.constant(T, warmup=50)
    cos = peak * schedules.cosine(T, warmup=50)
    steps = np.arange(60, T + 1, 30)
    return [const, cos], steps


# ---------------------------------------------------------------------------
# the models against their definitions


@pytest.mark.parametrize("lr_map, q", [("power", 0.7), ("power", 1.0), ("saturating", 5e-4)])
def test_convex_basis_is_eq_2_4_on_the_effective_lr(lr_map, q):
    """a' = 1/(2 P'), b' = eq. (2.4)'s G-coefficient of eta' = f(eta), from the literal nested sums."""
    model = PowerBound(lr_map=lr_map) if lr_map == "saturating" else PowerBound(p="fit")
    lr = 1e-3 * schedules.wsd(120, decay_frac=0.4, warmup=10)
    steps = np.array([5, 37, 90, 120])
    eff = model.effective_lr(lr, q)
    prep = model.prepare(lr, steps)
    phi = model.basis(np.array([0.6, q]), prep)
    for k, tau in enumerate(steps):
        P = math.fsum(eff[:tau])
        b = last_iterate_naive(eff[:tau], D=0.0, G=1.0)
        assert phi[k, 0] == 1.0
        assert phi[k, 1] == pytest.approx((1.0 / (2.0 * P)) ** 0.6, rel=1e-12)
        assert phi[k, 2] == pytest.approx(b, rel=1e-11)
    # the search surrogate (a Chebyshev interpolant in p or log eta_c) only guides the search, the
    # fit finishes on the exact basis: it need only be close
    np.testing.assert_allclose(model.search_basis(np.array([0.6, q]), prep), phi, rtol=1e-2)


@pytest.mark.parametrize("lr_map", ["power", "saturating"])
def test_prediction_skips_the_search_nodes(lr_map):
    """A prediction needs the exact terms at the fitted shape only: prepare_predict builds no Chebyshev
    nodes, and the basis (so every prediction) is the same bit for bit."""
    model = PowerBound(lr_map=lr_map) if lr_map == "saturating" else PowerBound(p="fit")
    lr, steps = _runs()[0][1], _runs()[1]
    theta = np.array([0.5, 0.8 if lr_map == "power" else 3e-4])
    full, light = model.prepare(lr, steps), model.prepare_predict(lr, steps)
    assert full.p_nodes.size == model.n_nodes and light.p_nodes.size == 0
    assert np.array_equal(model.basis(theta, light), model.basis(theta, full))


def test_effective_maps():
    lr = np.array([0.0, 1e-4, 1e-3, 1e-2])
    np.testing.assert_allclose(PowerBound().effective_lr(lr, 0.5), np.sqrt(lr))
    np.testing.assert_allclose(PowerBound(lr_map="saturating").effective_lr(lr, 1e-3), lr / (1 + lr / 1e-3))


def test_registry_and_names():
    assert names()[0] == cdfast.models.DEFAULT_MODEL
    assert set(names()) == set(MODELS)
    for n in MODELS:
        assert get_model(n).name == n
    assert isinstance(get_model(None), Averaged)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        get_model("nope")
    with pytest.raises(TypeError, match="model must be"):
        get_model(3)
    with pytest.raises(ValueError, match="lr_map"):
        PowerBound(lr_map="cubic")
    with pytest.raises(ValueError, match="alpha"):
        PowerBound(alpha=5.0)


# ---------------------------------------------------------------------------
# fitting


@pytest.mark.parametrize("name, shape", [("power-bound", (0.45, 0.7)), ("sat-bound", (0.5, 8e-4)),
                                         ("bound-alpha", (0.55, 1.0))])
def test_recovers_known_parameters(name, shape):
    model = get_model(name)
    lrs, steps = _runs()
    coefs = np.array([2.5, 0.02, 3.0])
    ys = [model.basis(np.array(shape), model.prepare(lr, steps)) @ coefs for lr in lrs]
    fit = cdfast.fit_loss_curves(lrs, [steps] * 2, ys, model=name, burn_in=0, prior=False)
    for par, want in zip(model.shape, shape):
        if not par.fixed:
            assert fit.params[par.name] == pytest.approx(want, rel=1e-3)
    assert fit.params["L_inf"] == pytest.approx(2.5, rel=1e-5)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    # and it predicts a schedule it did not see
    other = 1e-3 * schedules.wsd(3000, decay_frac=0.2, warmup=50)
    want = model.basis(np.array(shape), model.prepare(other, steps)) @ coefs
    np.testing.assert_allclose(fit.predict(other, at=steps), want, rtol=1e-5)


def test_variable_projection_solves_the_linear_part_exactly():
    """With no shape parameters the fit is the bounded linear least-squares solution."""
    model = get_model("bound")
    lrs, steps = _runs()
    prep = model.prepare(lrs[1], steps)
    y = 2.0 + model.basis(np.empty(0), prep) @ np.array([0.0, 0.01, 5.0]) + 1e-3 * np.sin(steps)
    res = fit_separable(model, [prep], [y], [np.ones(steps.size, bool)])
    A = model.basis(np.empty(0), prep) / y[:, None]
    c, *_ = np.linalg.lstsq(A, np.ones_like(y), rcond=None)
    np.testing.assert_allclose(res.coefs, c, rtol=1e-8)


@pytest.mark.parametrize("seed", range(6))
def test_bounded_lstsq_is_lsq_linear_bit_for_bit(seed):
    """The fits' bounded solve returns scipy's BVLS solution exactly, whether the unconstrained
    optimum is feasible (its shortcut) or a bound is active (BVLS itself)."""
    from scipy.optimize import lsq_linear
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((40, 3)) * np.array([1.0, 1e-2, 1e2])
    b = A @ np.array([1.0, 200.0 - 400.0 * (seed % 2), 0.5]) + 0.01 * rng.standard_normal(40)
    lo, hi = np.array([-np.inf, 0.0, 0.0]), np.full(3, np.inf)
    x = bounded_lstsq(A, b, lo, hi)
    assert np.array_equal(x, lsq_linear(A, b, bounds=(lo, hi), method="bvls").x)
    assert (x[1] == 0.0) == (seed % 2 == 1)  # the odd seeds' second coefficient wants to be negative


def test_averaged_model_is_the_mean_of_its_members():
    lrs, steps = _runs()
    truth = get_model("power-bound")
    ys = [truth.basis(np.array([0.45, 0.7]), truth.prepare(lr, steps)) @ np.array([2.5, 0.02, 3.0]) for lr in lrs]
    ys = [y * (1 + 2e-4 * np.cos(steps / 97.0)) for y in ys]
    fit = cdfast.fit_loss_curves(lrs, [steps] * 2, ys)
    assert fit.model.name == "effective-bound"
    # the members as the default holds them (with the noise term's prior, models.gain)
    members = [cdfast.fit_loss_curves(lrs, [steps] * 2, ys, model=m) for m in get_model("effective-bound").members]
    other = 1e-3 * schedules.linear(2000, warmup=50)
    np.testing.assert_allclose(fit.predict(other), np.mean([f.predict(other) for f in members], axis=0), rtol=1e-12)
    np.testing.assert_allclose(fit.prediction, np.mean([f.prediction for f in members], axis=0), rtol=1e-12)
    assert fit.params["power-bound:p"] == members[0].params["p"]
    assert fit.L_inf == pytest.approx(np.mean([f.L_inf for f in members]))
    v, g = fit.value_and_grad(other)
    parts = [f.value_and_grad(other) for f in members]
    assert v == pytest.approx(np.mean([p[0] for p in parts]))
    np.testing.assert_allclose(g, np.mean([p[1] for p in parts], axis=0))
    with pytest.raises(AttributeError, match="D_sq"):
        fit.D_sq


@pytest.mark.parametrize("name", ["bound", "power-bound", "sat-bound"])
def test_value_and_grad_matches_finite_differences(name):
    lrs, steps = _runs(T=800)
    truth = get_model("power-bound")
    ys = [truth.basis(np.array([0.5, 0.8]), truth.prepare(lr, steps[steps <= 800])) @ np.array([2.5, 0.05, 2.0])
          for lr in lrs]
    fit = cdfast.fit_loss_curves(lrs, [steps[steps <= 800]] * 2, ys, model=name, burn_in=0)
    lr = 1e-3 * schedules.cosine(300, final=0.05)
    value, grad = fit.value_and_grad(lr)
    assert value == pytest.approx(fit.predict(lr, at=[300])[0], rel=1e-12)
    for k in (0, 120, 298, 299):
        h = 1e-6 * lr[k]
        e = np.zeros_like(lr)
        e[k] = h
        fd = (fit.predict(lr + e, at=[300])[0] - fit.predict(lr - e, at=[300])[0]) / (2 * h)
        assert grad[k] == pytest.approx(fd, rel=1e-4, abs=1e-9 * abs(value) / lr[k])


def test_peer_models_have_no_lr_gradient():
    lrs, steps = _runs()
    ys = [2.5 + 0.3 * (np.cumsum(lr)[steps - 1]) ** -0.4 for lr in lrs]
    fit = cdfast.fit_loss_curves(lrs, [steps] * 2, ys, model="annealing")
    with pytest.raises(NotImplementedError, match="annealing"):
        fit.value_and_grad(lrs[1])


def test_fit_warns_when_a_parameter_sits_on_its_bound():
    lrs, steps = _runs()
    ys = [3.0 + 0.01 * steps / steps[-1] for _ in lrs]  # a loss that rises: no decreasing term fits it
    with pytest.warns(cdfast.FitWarning, match="sits on its bound"):
        fit = cdfast.fit_loss_curves(lrs, [steps] * 2, ys, model="power-bound")
    assert any("bound" in w for w in fit.warnings)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(model="nope"), ValueError, "unknown model"),
    (dict(model="power-bound", robust=True), ValueError, "options of model='bound'"),
    (dict(model="power-bound", burn_in="lots"), TypeError, "burn_in"),
])
def test_bad_options(kwargs, exc, match):
    lrs, steps = _runs()
    with pytest.raises(exc, match=match):
        cdfast.fit_loss_curve(lrs[1], steps, np.full(steps.size, 3.0), **kwargs)


def test_bad_data():
    lrs, steps = _runs()
    with pytest.raises(ValueError, match="needs positive losses"):
        cdfast.fit_loss_curve(lrs[1], steps, np.full(steps.size, -1.0))
    with pytest.raises(ValueError, match="at least 6"):
        cdfast.fit_loss_curve(lrs[1], steps[:5], np.full(5, 3.0), model="power-bound", burn_in=0)
    with pytest.raises(ValueError, match="fit_loss_curves"):
        cdfast.fit_loss_curve(lrs, steps, np.full(steps.size, 3.0))


# ---------------------------------------------------------------------------
# intervals


def test_interval_brackets_the_prediction_and_widens_with_level():
    lrs, steps = _runs()
    truth = get_model("power-bound")
    rng = np.random.default_rng(1)
    ys = [truth.basis(np.array([0.45, 0.7]), truth.prepare(lr, steps)) @ np.array([2.5, 0.02, 3.0]) for lr in lrs]
    ys = [y * (1 + 1e-3 * rng.standard_normal(y.size)) for y in ys]
    fit = cdfast.fit_loss_curves(lrs, [steps] * 2, ys, model="power-bound")
    other = 1e-3 * schedules.wsd(3000, decay_frac=0.2, warmup=50)
    at = [1500, 3000]
    pred = fit.predict(other, at=at)
    lo90, hi90 = fit.interval(other, at=at, n_boot=60)
    lo50, hi50 = fit.interval(other, at=at, level=0.5, n_boot=60)
    assert np.all(lo90 < pred) and np.all(pred < hi90)
    assert np.all(lo90 <= lo50) and np.all(hi50 <= hi90)
    np.testing.assert_array_equal(fit.interval(other, at=at, n_boot=60)[0], lo90)  # seeded: reproducible
    with pytest.raises(ValueError, match="level"):
        fit.interval(other, level=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        fit.interval(other, n_boot=3)


def test_interval_widens_for_other_horizons_and_peak_lrs():
    """The model-error term of interval(): at least K_HORIZON log(step / T_fit) for another run beyond the
    fitted steps, K_PEAK |log(peak ratio)| at another peak LR, nothing extra for a fitted run's own schedule."""
    from cdfast.fit import K_HORIZON, K_PEAK, MODEL_ERROR
    lrs, steps = _runs()
    truth = get_model("power-bound")
    ys = [truth.basis(np.array([0.45, 0.7]), truth.prepare(lr, steps)) @ np.array([2.5, 0.02, 3.0]) for lr in lrs]
    ys = [y * (1 + 1e-4 * np.cos(steps / 7.0)) for y in ys]
    fit = cdfast.fit_loss_curves(lrs, [steps] * 2, ys, model="power-bound")

    def half(lr, at):
        lo, hi = fit.interval(lr, at=[at], n_boot=40)
        return float(min(hi[0] - fit.predict(lr, at=[at])[0], fit.predict(lr, at=[at])[0] - lo[0])
                     / fit.predict(lr, at=[at])[0])

    own = half(lrs[1], 3000)
    longer = half(1e-3 * schedules.cosine(9000, warmup=50), 9000)
    higher = half(2e-3 * schedules.cosine(3000, warmup=50), 3000)
    assert own < 2 * MODEL_ERROR  # the refits are tight: about the fixed model error
    assert longer >= K_HORIZON * np.log(3.0) > own
    assert higher >= K_PEAK * np.log(2.0) > own


def test_bound_interval_is_available_too():
    lrs, steps = _runs()
    ys = [2.5 + 0.01 * np.cumsum(lr)[steps - 1] ** -1 + 1e-3 * np.sin(steps) for lr in lrs]
    fit = cdfast.fit_loss_curves(lrs, [steps] * 2, ys, model="bound")
    lo, hi = fit.interval(lrs[1], at=steps[-2:], n_boot=40)
    assert np.all(lo <= fit.predict(lrs[1], at=steps[-2:])) and np.all(fit.predict(lrs[1], at=steps[-2:]) <= hi)


# ---------------------------------------------------------------------------
# model comparison


def test_compare_models_ranks_the_generating_model_family_first():
    lrs, steps = _runs()
    truth = get_model("power-bound")
    ys = [truth.basis(np.array([0.45, 0.7]), truth.prepare(lr, steps)) @ np.array([2.5, 0.02, 3.0]) for lr in lrs]
    board = cdfast.compare_models([(lr, steps, y) for lr, y in zip(lrs, ys)],
                                  models=["power-bound", "bound", "annealing"])
    assert board.best == "power-bound"
    assert board.rows[0]["final_median_pct"] < 0.1 < board.rows[-1]["final_median_pct"]
    assert {p["protocol"] for p in board.predictions} == {"within", "across"}
    text = str(board)
    assert "power-bound" in text and "final median %" in text


def test_compare_models_says_which_runs_diverged(tmp_path):
    lrs, steps = _runs()
    truth = get_model("power-bound")
    ys = [truth.basis(np.array([0.45, 0.7]), truth.prepare(lr, steps)) @ np.array([2.5, 0.02, 3.0]) for lr in lrs]
    paths = []
    for i, (lr, y) in enumerate(zip(lrs, ys)):
        cut = steps[len(steps) * 3 // 4] if i == 0 else None  # run 0 turns NaN three quarters in
        logged = dict(zip(steps.tolist(), y.tolist()))
        cell = {s: ("nan" if cut and s >= cut else repr(v)) for s, v in logged.items()}
        rows = ["step,lr,loss"] + [f"{s},{float(lr[s - 1])!r},{cell.get(s, '')}" for s in range(1, len(lr) + 1)]
        paths.append(tmp_path / f"run{i}.csv")
        paths[-1].write_text("\n".join(rows) + "\n")
    with pytest.warns(cdfast.io.LogWarning):
        board = cdfast.compare_models(paths, models=["bound"])
    (note,) = board.notes
    assert "run 'run0' diverged at step" in note and f"note: {note}" in str(board)
    assert cdfast.compare_models([(lr, steps, y) for lr, y in zip(lrs, ys)], models=["bound"]).notes == ()


def test_compare_models_bad_input():
    lrs, steps = _runs()
    run = (lrs[1], steps, np.full(steps.size, 3.0))
    with pytest.raises(ValueError, match="unknown model"):
        cdfast.compare_models([run], models=["nope"])
    with pytest.raises(ValueError, match="protocol"):
        cdfast.compare_models([run], protocol="sideways")
    with pytest.raises(ValueError, match="fit_frac"):
        cdfast.compare_models([run], fit_frac=1.5)
    with pytest.raises(TypeError, match="runs\\[0\\]"):
        cdfast.compare_models([3.0])
    with pytest.raises(ValueError, match="empty"):
        cdfast.compare_models([])


# ---------------------------------------------------------------------------
# a real run (shipped with cdfast, so this never skips)


def test_sample_run_first_half_predicts_its_final_loss():
    log = cdfast.io.read_log(cdfast.data.SAMPLE_RUN)
    half = log.steps <= log.T // 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cdfast.FitWarning)
        fit = cdfast.fit_loss_curve(log.lr, log.steps, log.loss, fit_steps=half)
        paper = cdfast.fit_loss_curve(log.lr, log.steps, log.loss, fit_steps=half, model="bound")
    err = abs(fit.predict(log.lr, at=log.steps[-1:])[0] / log.loss[-1] - 1)
    assert err < 0.01
    assert err < abs(paper.predict(log.lr, at=log.steps[-1:])[0] / log.loss[-1] - 1)


def test_intervals_of_one_fit_share_its_refits():
    """Two intervals of one fit (other schedules) reuse the same bootstrap refits: the same
    replicate of a schedule already asked for gives the same bounds, and seed=None draws anew."""
    lrs, steps = _runs()
    truth = get_model("power-bound")
    rng = np.random.default_rng(2)
    ys = [truth.basis(np.array([0.45, 0.7]), truth.prepare(lr, steps)) @ np.array([2.5, 0.02, 3.0]) for lr in lrs]
    ys = [y * (1 + 1e-3 * rng.standard_normal(y.size)) for y in ys]
    fit = cdfast.fit_loss_curves(lrs, [steps] * 2, ys, model="power-bound")
    a = 1e-3 * schedules.wsd(3000, decay_frac=0.2, warmup=50)
    b = 1e-3 * schedules.linear(6000, warmup=50)
    first = fit.interval(a, at=[3000], n_boot=30)
    fit.interval(b, at=[6000], n_boot=30)
    np.testing.assert_array_equal(fit.interval(a, at=[3000], n_boot=30), first)
    assert len(fit.data.cache) == 1
    fresh = [fit.interval(a, at=[3000], n_boot=30, seed=None)[0][0] for _ in range(2)]
    assert fresh[0] != fresh[1] and len(fit.data.cache) == 1
