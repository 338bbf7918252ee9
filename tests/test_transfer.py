"""How far a prediction reaches beyond the fitted runs (cdfast.models.transfer): the abrupt-fall
measure against its literal definition, the notes, and the interval widening they cause."""

from __future__ import annotations

import numpy as np
import pytest

import cdfast
from cdfast import cli, schedules
from cdfast.data import SAMPLE_RUN
from cdfast.models import _curvefit
from cdfast.models.transfer import ABRUPT_NOTE, ABRUPT_WINDOW, abrupt_falls, extrapolation, lr_falls

T, W, PEAK = 4000, 40, 1e-3
STEPS = np.arange(40, T + 1, 40)


def falls_naive(lr, w):
    """fall[t] = max(0, max(lr[t-w .. t-1]) - lr[t]) / max(lr), literally."""
    out = np.zeros(lr.size)
    for t in range(1, lr.size):
        out[t] = max(0.0, lr[max(0, t - w):t].max() - lr[t]) / lr.max()
    return out


@pytest.mark.parametrize("w", [1, 2, 5, 40])
def test_falls_match_their_definition(w):
    rng = np.random.default_rng(w)
    for lr in (rng.random(300), schedules.wsd(300, decay_frac=0.3, warmup=10), np.repeat(rng.random(30), 10)):
        np.testing.assert_allclose(lr_falls(lr, w), falls_naive(lr, w), rtol=0, atol=1e-15)


def test_falls_of_familiar_schedules():
    step = schedules.piecewise_constant(T, [3000], [1.0, 0.1], warmup=W)
    f = lr_falls(step)
    assert f.max() == pytest.approx(0.9) and int(np.argmax(f)) == 3000  # step 3001 is the first at 0.1
    # a linear cooldown over a fraction c of the run falls ABRUPT_WINDOW / c per window
    c = 0.2
    wsd = schedules.wsd(T, decay_frac=c, warmup=W)
    assert lr_falls(wsd).max() == pytest.approx(ABRUPT_WINDOW / c, rel=0.02)
    assert lr_falls(schedules.constant(T, warmup=W)).max() == 0.0
    assert lr_falls(np.zeros(10)).max() == 0.0 and lr_falls(np.ones(1)).shape == (1,)


def closing_naive(x, k):
    """Greyscale closing with a window of k: the smallest of the largest values of every k-window
    holding each step, the array padded at both ends with its end values (and k more at the end)."""
    n = x.size
    pad = np.r_[np.full(k, x[0]), x, np.full(2 * k + 1, x[-1])]
    dil = np.array([pad[max(0, i - k // 2):i - k // 2 + k].max() for i in range(pad.size)])
    ero = np.array([dil[max(0, i - k // 2):i - k // 2 + k].min() for i in range(dil.size)])
    return ero[k:k + n]


def test_abrupt_falls_fill_narrow_dips():
    w = round(ABRUPT_WINDOW * T)
    step = schedules.piecewise_constant(T, [3000], [1.0, 0.1], warmup=W)
    for lr in (step, schedules.cosine(T, warmup=W), schedules.wsd(T, decay_frac=0.001, warmup=W)):
        np.testing.assert_array_equal(abrupt_falls(lr), lr_falls(lr))  # nothing narrow to fill
    dip = schedules.cosine(T, warmup=W)
    dip[2000] = 0.0  # a skipped step
    assert lr_falls(dip).max() > 0.5 and abrupt_falls(dip).max() < 0.01
    e = extrapolation(dip, (schedules.cosine(T, warmup=W),), (T,))
    assert e.fall < 0.01 and e.per_step(dip, np.array([T]))[2].max() < 0.01  # no note, no wider interval
    rng = np.random.default_rng(3)
    x = np.repeat(rng.random(T // 50), 50) * (rng.random(T) > 0.002)  # steps and a few one-step dips
    np.testing.assert_array_equal(abrupt_falls(x), lr_falls(closing_naive(x, w + 1), w))


def _curve(shape, seed):
    """eq. (2.4) losses with 0.1% noise (a curve every convex-bound model describes)."""
    a, b = cdfast.bound_curve_terms(PEAK * shape, at=STEPS)
    y = 2.5 + 4.0 * np.asarray(a) + 150.0 * np.asarray(b)
    return y * (1 + 1e-3 * np.random.default_rng(seed).standard_normal(y.size))


@pytest.fixture(scope="module")
def smooth_fit():
    shapes = [schedules.constant(T, warmup=W), schedules.cosine(T, warmup=W)]
    return cdfast.fit_loss_curves([PEAK * s for s in shapes], [STEPS] * 2, [_curve(s, i) for i, s in enumerate(shapes)],
                                  model="bound-alpha")


def test_a_step_decay_from_smooth_runs_is_an_extrapolation(smooth_fit, monkeypatch):
    step = PEAK * schedules.piecewise_constant(T, [3000], [1.0, 0.1], warmup=W)
    e = smooth_fit.extrapolation(step)
    assert e.fall == pytest.approx(0.9) and e.fall_step == 3001
    assert e.seen_fall == pytest.approx(lr_falls(PEAK * schedules.cosine(T, warmup=W)).max())
    assert e.abrupt > ABRUPT_NOTE and e.any
    assert [n.split(":")[0] for n in e.notes()] == ["abrupt fall"]
    assert "step 3001" in e.notes()[0]
    # the interval widens from the fall on, and only there
    lo, hi = smooth_fit.interval(step, at=STEPS, n_boot=40)
    monkeypatch.setattr(_curvefit, "K_ABRUPT", 0.0)
    lo0, hi0 = smooth_fit.interval(step, at=STEPS, n_boot=40)
    before, after = STEPS <= 3000, STEPS > 3000
    np.testing.assert_array_equal(hi[before], hi0[before])
    assert (hi[after] - lo[after] > 1.5 * (hi0[after] - lo0[after])).all()


def test_a_fall_the_fitted_runs_show_is_not_one():
    step = PEAK * schedules.piecewise_constant(T, [3000], [1.0, 0.1], warmup=W)
    other = PEAK * schedules.piecewise_constant(T, [2500], [1.0, 0.1], warmup=W)
    fit = cdfast.fit_loss_curves([step], [STEPS], [_curve(step / PEAK, 0)], model="bound-alpha")
    e = fit.extrapolation(other)
    assert e.abrupt == 0.0 and e.notes() == []
    # ... but it still widens the interval after the fall: the model cannot follow one either way
    assert e.per_step(other, np.array([2400, 2600]))[2].tolist() == [0.0, pytest.approx(0.9)]
    # a fall after the last fitted step was not seen
    half = cdfast.fit_loss_curves([step], [STEPS], [_curve(step / PEAK, 0)], model="bound-alpha",
                                  fit_steps=[STEPS <= 2800])
    assert half.extrapolation(other).abrupt == pytest.approx(0.9 - lr_falls(step)[:2800].max())


def test_horizon_and_peak_notes(smooth_fit):
    own = PEAK * schedules.cosine(T, warmup=W)
    e = smooth_fit.extrapolation(own)
    assert e.own_schedule and e.horizon_ratio == 1.0 and e.notes() == []
    longer = 3 * PEAK * schedules.cosine(2 * T, warmup=W)
    e = smooth_fit.extrapolation(longer)
    # 3, but for where the discrete cosines' largest values fall; the nearest fitted peak is the larger one
    ratio = longer.max() / max(own.max(), PEAK * schedules.constant(T, warmup=W).max())
    assert e.horizon_ratio == pytest.approx(2.0) and e.peak_distance == pytest.approx(np.log(ratio), rel=1e-12)
    kinds = [n.split(":")[0] for n in e.notes()]
    assert kinds == ["horizon", "peak LR"]
    assert "single peak" in e.notes()[1]
    # the interval's per-step horizon term is log(step / last fitted step) beyond it; the fall term is the
    # largest fall reached by each step (the cosine's own gentle one)
    at = np.array([T // 2, T, 2 * T])
    h, rho, fall = e.per_step(longer, at)
    np.testing.assert_allclose(h, [0.0, 0.0, np.log(2)])
    assert rho == pytest.approx(np.log(ratio), rel=1e-12)
    np.testing.assert_array_equal(fall, np.maximum.accumulate(lr_falls(longer))[at - 1])
    assert fall.max() < 0.02


def test_a_shorter_decaying_schedule_is_named():
    """A schedule that decays and ends well before the shortest decaying fitted run decays earlier in
    training than any fitted run shows; a constant, the fitted runs' own, or a mildly shorter one does not."""
    const, cos = PEAK * schedules.constant(T, warmup=W), PEAK * schedules.cosine(T, warmup=W)
    fitted = ((const, cos), (T, T))
    for lr, ratio, named in ((PEAK * schedules.cosine(T // 3, warmup=W), 3.0, True),
                             (PEAK * schedules.wsd(T // 2, decay_frac=0.2, warmup=W), 2.0, True),
                             (PEAK * schedules.cosine(int(T / 1.4), warmup=W), 1.0, False),
                             (PEAK * schedules.constant(T // 3, warmup=W), 1.0, False),
                             (cos, 1.0, False)):
        e = extrapolation(lr, *fitted)
        shown = [n for n in e.notes() if n.startswith("horizon: the schedule ends")]
        assert bool(shown) == named
        if named:
            assert e.short_ratio == pytest.approx(ratio, rel=1e-3) and f"{T} steps" in shown[0]
        else:
            assert e.short_ratio <= 1.43
    # a warmup from 0 is no decay: fitted on constants only, nothing decays, and nothing is named
    e = extrapolation(PEAK * schedules.cosine(T // 3, warmup=W), (const, 0.5 * const), (T, T))
    assert e.decay_T == 0 and e.short_ratio == 1.0 and e.notes() == []


def test_extrapolation_with_unknown_lrs():
    # runs given as the bound's terms only carry no LRs: nothing to compare with but the horizon
    e = extrapolation(np.ones(100), (None,), (50,))
    assert np.isnan(e.nearest_peak) and e.peak_distance == 0.0 and e.horizon_ratio == 2.0


def test_cli_predict_names_the_abrupt_fall(capsys, tmp_path):
    log = cdfast.io.read_log(SAMPLE_RUN)
    lr = log.lr.copy()
    lr[len(lr) // 2:] *= 0.1  # the sample run's own schedule with a 10x drop halfway
    f = tmp_path / "lr.npy"
    np.save(f, lr)
    code = cli.main(["predict", str(SAMPLE_RUN), "--lr-file", str(f), "--model", "bound-alpha", "--points", "20"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "extrapolation: abrupt fall" in out
    code = cli.main(["predict", str(SAMPLE_RUN), "--schedule", "cosine", "--steps", str(len(lr)),
                     "--model", "bound-alpha", "--points", "20"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "extrapolation:" not in out  # the run's own horizon and peak, a smooth schedule
    code = cli.main(["predict", str(SAMPLE_RUN), "--schedule", "cosine", "--steps", str(len(lr) // 3),
                     "--model", "bound-alpha", "--points", "20"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "extrapolation: horizon: the schedule ends" in out and "decays earlier in training" in out


def test_plan_names_a_step_family_fitted_from_smooth_runs(smooth_fit):
    fams = [("wsd", {"decay_frac": 0.2}), ("wsd", {"decay_frac": 0.005})]  # a cooldown, and a near-step drop
    with pytest.raises(ValueError, match="smooth=False"):
        cdfast.plan_schedule(smooth_fit, T, warmup=W, n_boot=0, families=fams)
    plan = cdfast.plan_schedule(smooth_fit, T, warmup=W, n_boot=0, families=fams, smooth=False)
    lines = [line for line in plan.summary().splitlines() if line.startswith("abrupt fall:")]
    assert len(lines) == 1
    assert "wsd:decay_frac=0.005" in lines[0] and "wsd:decay_frac=0.2," not in lines[0]


def test_extrapolation_bad_input(smooth_fit):
    with pytest.raises(ValueError, match=r"lr\[3\] is nan"):
        smooth_fit.extrapolation(np.array([1e-3, 1e-3, 1e-3, np.nan]))
    with pytest.raises(ValueError, match="lr is empty"):
        smooth_fit.extrapolation([])
    with pytest.raises(TypeError, match="lr"):
        smooth_fit.extrapolation("fast")
