"""The default model after an abrupt LR fall: the multi-power law weighed in
(cdfast.models.transfer.drop_weight, CurveFit.predict), checked against its definition and
on the expected loss of SGD on a noisy quadratic, where the truth is known."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import cdfast
from cdfast import schedules
from cdfast.models import Averaged, PowerBound, _curvefit
from cdfast.models.transfer import ABRUPT_NOTE, DROP_PEAK_RANGE, drop_weight, lr_falls, peak_taper

T, W, PEAK = 8000, 80, 1e-3
STEPS = np.arange(50, T + 1, 50)
STEP_DECAY = schedules.piecewise_constant(T, [6000], [1.0, 0.1], warmup=W)


def nqm(shape, seed, modes=500, power=1.6, noise=0.5, eta=0.1):
    """The expected loss of SGD on a quadratic with curvatures i^-power and gradient noise
    ``noise * h_i`` per mode: m_i <- (1 - eta h_i)^2 m_i + eta^2 noise h_i, loss 2.5 + 4 sum h m / sum h
    (what bench/synthetic_cases.py uses for protocol S), with 0.1% noise."""
    h = np.arange(1, modes + 1, dtype=np.float64) ** -power
    m = np.ones_like(h)
    out = {}
    want = set(STEPS.tolist())
    for t, s in enumerate(shape, start=1):
        m = (1.0 - eta * s * h) ** 2 * m + (eta * s) ** 2 * noise * h
        if t in want:
            out[t] = float(h @ m)
    y = 2.5 + 4.0 * np.array([out[t] for t in STEPS]) / h.sum()
    return y * (1 + 1e-3 * np.random.default_rng(seed).standard_normal(y.size))


@pytest.fixture(scope="module")
def smooth_fit():
    shapes = [schedules.constant(T, warmup=W), schedules.cosine(T, warmup=W)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cdfast.FitWarning)
        return cdfast.fit_loss_curves([PEAK * s for s in shapes], [STEPS] * 2, [nqm(s, i) for i, s in enumerate(shapes)])


def test_drop_weight_follows_its_definition():
    # 0 until the largest fall reached (lr_falls) exceeds ABRUPT_NOTE, then linear to 1 at a fall to zero
    lr = PEAK * STEP_DECAY
    w = drop_weight(lr, STEPS)
    reached = np.maximum.accumulate(lr_falls(lr))[STEPS - 1]
    np.testing.assert_allclose(w, np.clip((reached - ABRUPT_NOTE) / (1 - ABRUPT_NOTE), 0, 1), rtol=0, atol=0)
    assert (w[STEPS <= 6000] == 0).all() and w[STEPS > 6000] == pytest.approx((0.9 - 0.3) / 0.7)
    # smooth schedules and cooldowns over 1% of the run or more: no weight
    for smooth in (schedules.cosine(T, warmup=W), schedules.wsd(T, decay_frac=0.01, warmup=W), schedules.constant(T)):
        assert not drop_weight(PEAK * smooth, STEPS).any()
    # a dip narrower than the window (skipped steps: the iterate stays put) is no fall; a wider one is
    width = round(0.002 * T)
    for n, falls in [(1, False), (width, False), (width + 2, True)]:
        dip = PEAK * schedules.cosine(T, warmup=W)
        dip[3000:3000 + n] = 0.0
        assert drop_weight(dip, STEPS).any() == falls, n
    # ... but a fall in the last steps is one
    end = PEAK * schedules.wsd(T, decay_frac=0.001, warmup=W)
    assert drop_weight(end, STEPS)[-1] == pytest.approx((1 - end[-1] / end.max() - ABRUPT_NOTE) / (1 - ABRUPT_NOTE))


def test_the_default_weighs_in_the_peer_after_a_step_decay_only(smooth_fit):
    lr = PEAK * STEP_DECAY
    pred = smooth_fit.predict(lr, at=STEPS)
    own = smooth_fit._predict_own(lr, STEPS, None)
    peer, why, taper = _curvefit._drop_peer(smooth_fit, PEAK)
    assert taper == 1.0
    assert peer.model.name == "mpl" and "weighted towards 'mpl'" in why
    w = drop_weight(lr, STEPS)
    np.testing.assert_array_equal(pred[w == 0], own[w == 0])
    np.testing.assert_allclose(pred[w > 0], (1 - w[w > 0]) * own[w > 0] + w[w > 0] * peer.predict(lr, at=STEPS[w > 0]),
                               rtol=1e-14)
    # a smooth schedule is the model's own prediction, bit for bit
    cos = PEAK * schedules.cosine(T, warmup=W)
    np.testing.assert_array_equal(smooth_fit.predict(cos, at=STEPS), smooth_fit._predict_own(cos, STEPS, None))
    # the notes say what predicts after the fall
    assert "weighted towards 'mpl'" in smooth_fit.extrapolation(lr).notes()[0]


@pytest.mark.parametrize("name, shape", [
    ("step", STEP_DECAY),
    ("two-stage", schedules.piecewise_constant(T, [T // 2, 3 * T // 4], [1.0, 0.1, 0.01], warmup=W)),
])
def test_the_peer_predicts_the_quadratic_after_a_drop_better(smooth_fit, name, shape):
    # the bound's memory keeps the larger LR's noise too long after an unseen drop: the model's own
    # prediction is too high there; with the peer weighed in, the final loss and the mean error after the
    # drop are smaller (the worst point right after it is not: the peer falls too fast at first here,
    # 0.69% / 0.65% against 0.75% / 0.62%)
    lr = PEAK * shape
    truth = nqm(shape, 7)
    own = smooth_fit._predict_own(lr, STEPS, None) / truth - 1
    both = smooth_fit.predict(lr, at=STEPS) / truth - 1
    after = drop_weight(lr, STEPS) > 0
    assert abs(both[-1]) < abs(own[-1])
    assert np.abs(both[after]).mean() < 0.7 * np.abs(own[after]).mean()


def test_the_interval_moves_with_the_prediction(smooth_fit, monkeypatch):
    lr = PEAK * STEP_DECAY
    at = STEPS[-3:]
    lo, hi = smooth_fit.interval(lr, at=at, n_boot=40)
    pred, own = smooth_fit.predict(lr, at=at), smooth_fit._predict_own(lr, at, None)
    assert (lo < pred).all() and (pred < hi).all()
    # the refits vary around the blended prediction as they vary around the model's own
    monkeypatch.setattr(_curvefit.CurveFit, "_after_falls", lambda self, x, steps, own: 0.0)
    lo0, hi0 = smooth_fit.interval(lr, at=at, n_boot=40)
    assert np.abs(pred - own).min() > 0.1 * (hi0 - lo0).max()  # a shift worth testing
    np.testing.assert_allclose(lo - lo0, pred - own, rtol=0.05)
    np.testing.assert_allclose(hi - hi0, pred - own, rtol=0.05)


def test_no_peer_without_a_decay_among_the_fitted_runs():
    shape = schedules.constant(T, warmup=W)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cdfast.FitWarning)
        fit = cdfast.fit_loss_curves([PEAK * shape], [STEPS], [nqm(shape, 3)])
    lr = PEAK * STEP_DECAY
    np.testing.assert_array_equal(fit.predict(lr, at=STEPS), fit._predict_own(lr, STEPS, None))
    note = fit.extrapolation(lr).notes()[0]
    assert "decays it below 50%" in note and "too high" in note


def test_only_the_default_has_a_drop_peer(smooth_fit):
    assert cdfast.models.get_model("effective-bound").drop_peer.name == "mpl"
    assert getattr(cdfast.models.get_model("power-bound"), "drop_peer", None) is None
    with pytest.raises(ValueError, match="drop_peer must be"):
        Averaged([PowerBound(), PowerBound(p="fit")], "x", drop_peer="mpl")


def test_plan_says_how_it_predicts_after_a_step(smooth_fit):
    fams = [("wsd", {"decay_frac": 0.2}), ("wsd", {"decay_frac": 0.001})]  # a cooldown, and a step down
    plan = cdfast.plan_schedule(smooth_fit, T, warmup=W, n_boot=0, families=fams, smooth=False)
    lines = [line for line in plan.summary().splitlines() if line.startswith("abrupt fall:")]
    step = plan["wsd:decay_frac=0.001"]
    assert len(lines) == 1 and "wsd:decay_frac=0.001" in lines[0]
    # the law's weight tapers off with the peak's distance from the fitted one; the plan moves the peak within its
    # trust region (0.8x-1.25x): the line says how much of it is used, or that none is
    taper = peak_taper(step.peak_lr, PEAK)
    assert ("weighted towards 'mpl'" in lines[0]) == (taper > 0)
    assert ("of its weight" in lines[0]) == (0 < taper < 1)
    assert step.loss == pytest.approx(float(smooth_fit.predict(step.lr, at=[T])[-1]), rel=1e-12)


def test_a_fit_whose_only_decay_is_abrupt_says_so():
    const, cos = schedules.constant(T, warmup=W), schedules.cosine(T, warmup=W)
    lrs = [PEAK * const, PEAK * STEP_DECAY]
    ys = [nqm(const, 0), nqm(STEP_DECAY, 1)]
    with pytest.warns(cdfast.FitWarning, match=r"decay their LR only abruptly \(run 1 by step 6050\)"):
        fit = cdfast.fit_loss_curves(lrs, [STEPS] * 2, ys, model="bound-alpha")
    assert any("only abruptly" in w for w in fit.warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cdfast.FitWarning)
        # a gradual decay among the fitted runs, a peer law, or the step run only up to its fall: no warning
        for kw in (dict(lrs=lrs + [PEAK * cos], ys=ys + [nqm(cos, 2)]), dict(lrs=lrs, ys=ys, model="annealing"),
                   dict(lrs=lrs, ys=ys, fit_steps=[None, STEPS <= 6000])):
            n = len(kw["lrs"])
            f = cdfast.fit_loss_curves(kw["lrs"], [STEPS] * n, kw["ys"], model=kw.get("model", "bound-alpha"),
                                       fit_steps=kw.get("fit_steps"))
            assert not any("only abruptly" in w for w in f.warnings), kw.get("model")


def test_no_peer_when_the_data_follow_eq_2_4():
    # the nested paper's form predicts when the fitted runs follow eq. (2.4): its memory is then the truth
    shapes = [schedules.constant(T, warmup=W), schedules.cosine(T, warmup=W)]
    ys = []
    for i, s in enumerate(shapes):
        a, b = cdfast.bound_curve_terms(PEAK * s, at=STEPS)
        y = 2.5 + 4.0 * np.asarray(a) + 150.0 * np.asarray(b)
        ys.append(y * (1 + 1e-3 * np.random.default_rng(i).standard_normal(y.size)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cdfast.FitWarning)
        fit = cdfast.fit_loss_curves([PEAK * s for s in shapes], [STEPS] * 2, ys)
    assert fit.model.nested_only
    lr = PEAK * STEP_DECAY
    np.testing.assert_array_equal(fit.predict(lr, at=STEPS), fit._predict_own(lr, STEPS, None))
    assert "follow eq. (2.4)" in fit.extrapolation(lr).notes()[0]


def test_the_peer_only_predicts_near_a_fitted_peak():
    # the law does not transfer across peak LRs: it is fitted on the runs at the nearest fitted peak, and
    # its weight tapers off linearly in the log of the distance, to 0 at DROP_PEAK_RANGE
    shapes = [schedules.constant(T, warmup=W), schedules.cosine(T, warmup=W)]
    lrs = [k * PEAK * s for k in (1.0, 2.0) for s in shapes]
    ys = [nqm(k * s, i) for i, (k, s) in enumerate((k, s) for k in (1.0, 2.0) for s in shapes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cdfast.FitWarning)
        fit = cdfast.fit_loss_curves(lrs, [STEPS] * 4, ys)
    held = 1.5 * PEAK * STEP_DECAY  # 1.5x and 1.33x from the fitted peaks
    np.testing.assert_array_equal(fit.predict(held, at=STEPS), fit._predict_own(held, STEPS, None))
    assert "does not transfer across peak LRs" in fit.extrapolation(held).notes()[-1]
    peer, why, taper = _curvefit._drop_peer(fit, 2.0 * PEAK)
    assert np.allclose([v.max() for v in peer.data.lrs], 2.0 * PEAK, rtol=1e-3) and len(peer.data.lrs) == 2
    assert taper == 1.0 and "at the nearest fitted peak" in why
    # between: the weight of the hand-over scales with the taper, and the prediction moves continuously
    fitted_peak = max(v.max() for v in peer.data.lrs)
    for k in (1.0, 1.1, 1.2, 1.25):
        lr = k * fitted_peak * STEP_DECAY
        own = fit._predict_own(lr, STEPS, None)
        peer_k, why_k, taper_k = _curvefit._drop_peer(fit, float(lr.max()))
        assert taper_k == pytest.approx(max(0.0, 1 - np.log(k) / np.log(DROP_PEAK_RANGE)), abs=1e-12)
        if taper_k == 0.0:
            np.testing.assert_array_equal(fit.predict(lr, at=STEPS), own)
            continue
        w = drop_weight(lr, STEPS) * taper_k
        np.testing.assert_allclose(fit.predict(lr, at=STEPS), own + w * (peer_k.predict(lr, at=STEPS) - own), rtol=1e-14)
        assert (taper_k == 1.0) == ("of its weight" not in why_k)
