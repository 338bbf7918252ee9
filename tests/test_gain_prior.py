"""The prior on the noise term's size (cdfast.models.gain) in the default model's members.

Data: power-bound curves (``L_inf + D~^2 a'^alpha + G~^2 b'``, p = 0.75, alpha = 0.45) with
a known noise-term share ``G~^2 f(eta_max) / L`` at the end of the fitted part.  Where the
fitted part cannot show the term (the constant phase of a WSD run: ``b'`` is then almost
constant, so the term and the floor are interchangeable), the fitted share must sit at the
prior's centre; where a cooldown shows it (a whole cosine run), the fit must follow the data
even when the prior's centre is 3x off.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import cdfast
from cdfast import schedules
from cdfast.models import PowerBound, get_model
from cdfast.models.convex import ALPHA_WITH_GAIN_PRIOR
from cdfast.models.fitting import PRIOR_NOISE, CoefPrior, fit_separable
from cdfast.models.gain import GAIN_PEAK_RANGE, GAIN_PRIOR, GAIN_SLOPE, gain_centre, gain_weight

T = 20_000
PEAK = 1e-3
STEPS = np.arange(100, T + 1, 100)
SHAPE = np.array([0.45, 0.75])


def _curve(lr: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """A power-bound curve whose noise term G~^2 f(eta_max) is ``share`` of 3.0 (about its loss)."""
    m = get_model("power-bound")
    phi = m.basis(SHAPE, m.prepare(lr, STEPS))
    y = phi @ np.array([2.2, 1.0, share * 3.0 / PEAK ** SHAPE[1]])
    return y * (1.0 + 2e-4 * np.random.default_rng(seed).standard_normal(y.size))


def _share(fit, member: int, lr: np.ndarray) -> float:
    """The fitted G~^2 f(eta_max) / L at the last fitted step, for a default member."""
    f = fit.data.members[member]
    G_sq = f.params["G_sq"]
    q = list(f.params.values())[1]
    eff = f.model.effective_lr(np.array([PEAK]), q)[0]
    return G_sq * eff / f.prediction[f.fitted][-1]


def _fit(lr, y, mask):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cdfast.FitWarning)
        return cdfast.fit_loss_curve(lr, STEPS, y, fit_steps=mask)


def test_the_centre_follows_the_peak_lr_within_the_measured_range():
    assert gain_centre(1e-3) == pytest.approx(GAIN_PRIOR[0])
    assert gain_centre(2e-3) / gain_centre(1e-3) == pytest.approx(2.0 ** GAIN_SLOPE)
    assert gain_centre(1.0) == gain_centre(GAIN_PEAK_RANGE[1])
    assert gain_centre(1e-9) == gain_centre(GAIN_PEAK_RANGE[0])
    # the prior yields as the LR decays: five times looser once it has come down all the way
    assert gain_weight(1.0) == pytest.approx(gain_weight(0.0) / 5.0)
    assert gain_weight(0.0) == pytest.approx(PRIOR_NOISE / GAIN_PRIOR[1])


def test_the_prior_decides_where_the_data_cannot():
    """Half a WSD run (all at the peak LR): the fitted noise-term share sits at the prior's centre."""
    lr = PEAK * schedules.wsd(T, decay_frac=0.2, warmup=200)
    y = _curve(lr, share=0.05)  # the truth is 3x the centre, but nothing fitted shows it
    fit = _fit(lr, y, STEPS <= T // 2)
    for member in (0, 1):
        assert _share(fit, member, lr) == pytest.approx(gain_centre(PEAK), rel=0.25)


def test_the_prior_yields_where_a_cooldown_shows_the_term():
    lr = PEAK * schedules.cosine(T, warmup=200)
    y = _curve(lr, share=0.05)
    fit = _fit(lr, y, None)
    # power-bound is the family the data come from: it recovers the truth, not the centre (0.015)
    assert _share(fit, 0, lr) == pytest.approx(0.05 * 3.0 / y[-1], rel=0.15)
    assert abs(fit.prediction[-1] / y[-1] - 1.0) < 2e-3


def test_members_carry_a_floor_at_zero_and_the_prior():
    default = get_model(None)
    assert all(m.gain_prior and m.coefs[0].lo == 0.0 for m in default.members)
    # their distance exponent's prior as measured with the gain prior, the named models' unchanged
    assert [m.shape[0].prior[0] for m in default.members] == [ALPHA_WITH_GAIN_PRIOR["power"],
                                                              ALPHA_WITH_GAIN_PRIOR["saturating"]]
    assert get_model("sat-bound").shape[0].prior == PowerBound.ALPHA.prior
    assert not get_model("power-bound").gain_prior and get_model("power-bound").coefs[0].lo == -np.inf
    assert PowerBound(gain_prior=True) != PowerBound() and "gain_prior=True" in repr(PowerBound(gain_prior=True))
    with pytest.raises(TypeError, match="gain_prior"):
        PowerBound(gain_prior="yes")


def test_a_coefficient_prior_is_a_relative_residual_outside_the_misfit():
    """fit_separable with a CoefPrior on the floor: the floor moves to the prior's target as its weight grows,
    and the reported misfit holds the data part only."""
    m = get_model("bound-alpha")
    lr = PEAK * schedules.cosine(T, warmup=200)
    y = _curve(lr, 0.015)
    prep = m.prepare(lr, STEPS)
    mask = STEPS > T // 10
    free = fit_separable(m, [prep], [y], [mask])
    row = lambda theta: np.array([1.0, 0.0, 0.0])  # noqa: E731  (the floor L_inf)
    weak = fit_separable(m, [prep], [y], [mask], coef_priors=[CoefPrior(row, 1.0, 1e-9)])
    strong = fit_separable(m, [prep], [y], [mask], coef_priors=[CoefPrior(row, 1.0, 1e3)])
    assert weak.coefs[0] == pytest.approx(free.coefs[0], rel=1e-4)
    assert strong.coefs[0] == pytest.approx(1.0, rel=1e-3) and free.coefs[0] > 1.5
    assert strong.cost > strong.misfit
