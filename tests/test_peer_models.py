"""The peer loss laws (cdfast.models.annealing, cdfast.models.mpl) against literal formulas.

The references here are written from the papers' formulas, term by term: the MPL
loss-drop sum in O(T^2) (``mpl_drop_literal``), the annealing momentum as the plain
recursion in Python, its closed form in mpmath, and a transcription of the MPL
reference code's evaluation loop.  The fast kernels are checked against them, and fits
of synthetic curves with ``scipy.optimize.least_squares`` must recover the parameters.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from scipy.optimize import least_squares

from cases import SCHEDULES
from cdfast import schedules as S
from cdfast.models.annealing import AnnealingLaw
from cdfast.models.mpl import MultiPowerLaw, quadrature_nodes

# ---------------------------------------------------------------------------- references


def mpl_drop_literal(lr, K, steps, beta, gamma, C):
    """``sum_{k=K+1..tau} d_k G_k(tau)`` and ``sum |d_k| G_k(tau)`` at each step, O(T^2).

    ``d_k = eta_{k-1} - eta_k``, ``G_k = 1 - (1 + C eta_k^-gamma S_k(tau))^-beta``,
    ``S_k(tau) = eta_k + ... + eta_tau`` as a suffix sum; ``G`` is evaluated as
    ``-expm1(-beta log1p(z))`` (the same number, without cancellation for small z).  A
    zero ``eta_k`` has ``G = 1`` once ``S_k(tau) > 0`` and 0 before.
    """
    out, mag = [], []
    for tau in steps:
        if tau <= K:
            out.append(0.0)
            mag.append(0.0)
            continue
        k = np.arange(K + 1, tau + 1)
        eta = lr[k - 1]
        d = lr[k - 2] - eta
        Sk = np.cumsum(lr[K:tau][::-1])[::-1]
        G = np.where(Sk > 0.0, 1.0, 0.0)
        pos = eta > 0.0
        G[pos] = -np.expm1(-beta * np.log1p(C * eta[pos] ** -gamma * Sk[pos]))
        out.append(float(np.sum(d * G)))
        mag.append(float(np.sum(np.abs(d) * G)))
    return np.array(out), np.array(mag)


def mpl_literal(params, lr, K, steps):
    """The multi-power law L(tau) = L0 + A P_tau^-alpha - B sum d G, from the literal sums."""
    alpha, beta, gamma, C, L0, A, B = params
    P = np.array([math.fsum(lr[:tau]) for tau in steps])
    drop, _ = mpl_drop_literal(lr, K, steps, beta, gamma, C)
    return L0 + A * P ** -alpha - B * drop


def mpl_reference_code(params, lrs, step):
    """The evaluation loop of the MPL reference code (src/evaluation.py), transcribed.

    ``lrs`` is indexed from 0 and includes warmup; the loss at its ``step`` s uses
    ``lrs[0..s]``.
    """
    L0, A, alpha, B, C, beta, gamma = params
    lr_sum = np.cumsum(lrs)
    lr_gap = np.zeros(len(lrs))
    lr_gap[1:] = np.diff(lrs)
    S1 = lr_sum[step]
    LD = np.zeros(len(step))
    for i, s in enumerate(step):
        LD[i] = np.sum(lr_gap[1:s + 1] * (1 - (1 + C * lrs[1:s + 1] ** (-gamma) * (lr_sum[s] - lr_sum[:s])) ** (-beta)))
    return L0 + A * S1 ** (-alpha) + B * LD


def annealing_literal(params, lr, K, steps, lam):
    """L0 + A S1^-alpha - C S2 with S1, S2 summed step by step in Python."""
    alpha, L0, A, C = params
    out = []
    for tau in steps:
        m = s2 = 0.0
        for i in range(1, tau + 1):
            d = lr[i - 2] - lr[i - 1] if i > K else 0.0
            m = lam * m + d
            s2 += m
        out.append(L0 + A * math.fsum(lr[:tau]) ** -alpha - C * s2)
    return np.array(out)


def annealing_area_mpmath(lr, K, tau, lam):
    """S2(tau) = sum_{k=K+1..tau} d_k (1 - lam^(tau-k+1)) / (1 - lam), in 40-digit arithmetic."""
    with mpmath.workdps(40):
        lam = mpmath.mpf(lam)
        total = mpmath.mpf(0)
        for k in range(K + 1, tau + 1):
            d = mpmath.mpf(lr[k - 2]) - mpmath.mpf(lr[k - 1])
            total += d * (1 - lam ** (tau - k + 1)) / (1 - lam)
        return total


# ------------------------------------------------------------------------------ schedules

T_SMALL = 2500
RNG = np.random.default_rng(20250312)


def _peer_schedules(T):
    peak = 3e-4
    out = {name: peak / 1e-3 * f(T) for name, f in SCHEDULES.items()}
    out["warmup_wsd"] = peak * S.wsd(T, decay_frac=0.3, warmup=T // 10)
    out["step"] = peak * S.piecewise_constant(T, [T // 2, 3 * T // 4], [1.0, 0.3, 0.1])
    out["cyclic_restarts"] = peak * np.tile(S.cosine(T // 4, final=0.05, warmup=T // 40), 4)
    return out


SCHEDULES_PEER = _peer_schedules(T_SMALL)


def _first_step(lr):
    return int(np.argmax(np.cumsum(lr) > 0)) + 1


def stated_bound(model, theta, prep, steps, mag):
    """The error bound of MultiPowerLaw's Notes: (rtol + (6 tau + 4 M + 100) u) sum |d| G."""
    M = 0
    if not math.isnan(prep.eta_hi):
        M = quadrature_nodes(*theta[1:], model.rtol, prep.eta_lo, prep.eta_hi, prep.x_max)[0].shape[0]
    return (model.rtol + (6 * steps + 4 * M + 100) * 2.0**-53) * mag


def _random_theta():
    return np.array([RNG.uniform(0.1, 1.0), RNG.uniform(0.05, 5.0), RNG.uniform(0.0, 2.0), 10 ** RNG.uniform(-6, 6)])


# ----------------------------------------------------------------------- MPL: fast vs literal


@pytest.mark.parametrize("name", sorted(SCHEDULES_PEER))
@pytest.mark.parametrize("warmup", [None, 0, 40])
def test_mpl_drop_within_stated_bound(name, warmup):
    lr = SCHEDULES_PEER[name]
    steps = np.arange(_first_step(lr), T_SMALL + 1, 7)
    for rtol in (1e-6, 1e-9, 1e-12):
        model = MultiPowerLaw(warmup=warmup, rtol=rtol)
        prep = model.prepare(lr, steps)
        for _ in range(2):
            theta = _random_theta()
            pos, neg = model.drop_parts(theta, prep)
            ref, mag = mpl_drop_literal(lr, prep.K, steps, *theta[1:])
            bound = stated_bound(model, theta, prep, steps, mag)
            err = np.abs((pos - neg) - ref)
            assert np.all(err <= bound), (rtol, theta, float(np.max(err / np.maximum(bound, 1e-300))))
            assert np.all(np.abs((pos + neg) - mag) <= bound)


def test_mpl_basis_equals_literal_law():
    lr = SCHEDULES_PEER["warmup_wsd"]
    steps = np.arange(5, T_SMALL + 1, 11)
    model = MultiPowerLaw()
    prep = model.prepare(lr, steps)
    params = np.array([0.45, 0.6, 0.65, 2.0, 2.4, 0.6, 500.0])
    expected = mpl_literal(params, lr, prep.K, steps)
    np.testing.assert_allclose(model.predict(params, prep), expected, rtol=1e-12)
    B = model.basis(params[:4], prep)
    assert B.shape == (len(steps), 3)
    np.testing.assert_array_equal(B[:, 0], 1.0)


def test_mpl_warmup_zero_is_the_reference_code():
    # The reference code's loss at its step s (lrs indexed from 0, warmup included, the
    # loss-drop sum over every k >= 1) is cdfast's tau = s + 1 with warmup=0.
    T = 1500
    lrs = 3e-4 * S.cosine(T, final=0.1, warmup=150)
    s = np.arange(10, T, 13)
    ref_params = [2.65, 0.60, 0.45, 438.0, 2.13, 0.60, 0.66]  # L0, A, alpha, B, C, beta, gamma
    expected = mpl_reference_code(ref_params, lrs, s)
    L0, A, alpha, B, C, beta, gamma = ref_params
    model = MultiPowerLaw(warmup=0)
    got = model.predict(np.array([alpha, beta, gamma, C, L0, A, B]), model.prepare(lrs, s + 1))
    np.testing.assert_allclose(got, expected, rtol=1e-11)


def test_mpl_default_warmup_starts_the_drop_at_the_peak():
    T = 1200
    lr = 1e-3 * S.wsd(T, decay_frac=0.25, warmup=100)
    model = MultiPowerLaw()
    prep = model.prepare(lr, np.arange(2, T + 1))
    assert prep.K == int(np.argmax(lr)) + 1
    drop = model.basis(np.array([0.5, 0.5, 0.5, 1.0]), prep)[:, 2]
    # no loss-drop term before the decay starts (the warmup increases are not counted)
    assert np.all(drop[: int(0.75 * T) - 1] == 0.0)
    assert np.all(drop[int(0.75 * T) + 1:] < 0.0)
    assert MultiPowerLaw(warmup=100).prepare(lr, [T]).K == 100


def test_mpl_zero_learning_rates():
    # cooldown to exactly 0, a pause at 0, then a restart: zero-LR terms have G = 0 until
    # the LR is positive again, then G = 1 (see MultiPowerLaw Notes)
    lr = np.concatenate([np.full(200, 1e-3), np.linspace(1e-3, 0.0, 101)[1:], np.zeros(50), np.full(150, 5e-4)])
    steps = np.arange(1, lr.shape[0] + 1)
    model = MultiPowerLaw(rtol=1e-10)
    prep = model.prepare(lr, steps)
    theta = np.array([0.5, 0.7, 0.6, 3.0])
    pos, neg = model.drop_parts(theta, prep)
    ref, mag = mpl_drop_literal(lr, prep.K, steps, *theta[1:])
    assert np.all(np.abs((pos - neg) - ref) <= stated_bound(model, theta, prep, steps, mag))
    # the pause: decrements into the zero stretch count only once the LR is positive again
    assert np.all(pos[300:349] == pos[299]) and pos[351] > pos[349]


def test_mpl_learning_rate_scale_is_a_reparametrisation():
    # eta -> c eta is absorbed by A c^alpha, B / c, C c^(gamma - 1): same predictions
    lr = SCHEDULES_PEER["cosine"]
    steps = np.arange(1, T_SMALL + 1, 9)
    model = MultiPowerLaw(rtol=1e-12)
    alpha, beta, gamma, C, L0, A, B = 0.5, 0.6, 0.65, 2.0, 2.4, 0.6, 500.0
    c = 1.0 / lr.max()
    a = model.predict(np.array([alpha, beta, gamma, C, L0, A, B]), model.prepare(lr, steps))
    b = model.predict(np.array([alpha, beta, gamma, C * c ** (gamma - 1), L0, A * c**alpha, B / c]),
                      model.prepare(c * lr, steps))
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_mpl_quadrature_grid_is_modest():
    # typical parameters at the default accuracy need well under a hundred nodes
    lr = 3e-4 * S.cosine(10_000, final=0.1, warmup=100)
    prep = MultiPowerLaw().prepare(lr, [10_000])
    u, h, _ = quadrature_nodes(0.6, 0.65, 2.0, 1e-9, prep.eta_lo, prep.eta_hi, prep.x_max)
    assert 10 <= u.shape[0] <= 100 and 0.2 < h < 0.6


# ------------------------------------------------------------------------- annealing law


@pytest.mark.parametrize("name", ["cosine", "warmup_wsd", "cyclic_restarts", "random", "step"])
@pytest.mark.parametrize("warmup", [None, 0, 40])
def test_annealing_equals_literal_recursion(name, warmup):
    lr = SCHEDULES_PEER[name][:800]
    steps = np.arange(_first_step(lr), 801, 17)
    params = np.array([0.5, 2.5, 0.4, 300.0])  # alpha, L0, A, C
    for lam in (0.999, 0.99):
        model = AnnealingLaw(lam=lam, warmup=warmup)
        prep = model.prepare(lr, steps)
        got = model.predict(np.array([params[0], lam, *params[1:]]), prep)
        expected = annealing_literal(params, lr, prep.K, steps, lam)
        np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_annealing_area_against_closed_form_in_mpmath():
    lr = SCHEDULES_PEER["warmup_cosine"]
    steps = np.array([400, 1300, T_SMALL])
    for lam in (0.999, 0.9):
        model = AnnealingLaw(lam=lam)
        prep = model.prepare(lr, steps)
        S2 = model.annealing_area(np.array([0.5, lam]), prep)
        for tau, got in zip(steps, S2):
            exact = annealing_area_mpmath(lr, prep.K, int(tau), lam)
            assert abs(got - float(exact)) <= 1e-13 * abs(float(exact))


def test_annealing_fitted_lam_matches_fixed():
    lr = SCHEDULES_PEER["warmup_wsd"]
    steps = np.arange(10, T_SMALL + 1, 10)
    fixed, free = AnnealingLaw(lam=0.995), AnnealingLaw(lam=(0.99, 0.9999))
    assert fixed.shape[1].fixed and not free.shape[1].fixed
    assert free.shape[1].start[0] == 0.999
    a = fixed.basis(np.array([0.4, 0.995]), fixed.prepare(lr, steps))
    b = free.basis(np.array([0.4, 0.995]), free.prepare(lr, steps))
    np.testing.assert_array_equal(a, b)
    assert AnnealingLaw().param_names == ("alpha", "lam", "L0", "A", "C")


# ---------------------------------------------------------------- recovering parameters


def _fit_all(model, preps, ys, x0):
    # every parameter at once; fixed ones (lo == hi) stay at their value
    params = (*model.shape, *model.coefs)
    free = np.array([not p.fixed for p in params])
    lo = [p.lo for p, f in zip(params, free) if f]
    hi = [p.hi for p, f in zip(params, free) if f]

    def full(z):
        x = x0.copy()
        x[free] = z
        return x

    def resid(z):
        x = full(z)
        return np.concatenate([model.predict(x, p) - y for p, y in zip(preps, ys)])

    res = least_squares(resid, x0[free], bounds=(lo, hi), x_scale="jac", xtol=1e-15, ftol=1e-15, gtol=1e-15,
                        max_nfev=500)
    return full(res.x)


def _start(model, preps, ys):
    # the first starting value of each shape parameter, coefficients by linear least squares
    theta = np.array([p.start[0] for p in model.shape])
    B = np.vstack([model.basis(theta, p) for p in preps])
    c = np.linalg.lstsq(B, np.concatenate(ys), rcond=None)[0]
    return np.concatenate([theta, np.maximum(c, 1e-3)])


def test_mpl_fit_recovers_parameters():
    T = 3000
    runs = [3e-4 * S.constant(T, warmup=100), 3e-4 * S.cosine(T, final=0.1, warmup=100),
            3e-4 * S.wsd(T, decay_frac=0.3, warmup=100)]
    steps = np.arange(20, T + 1, 20)
    truth = np.array([0.45, 0.6, 0.65, 2.0, 2.4, 0.6, 500.0])
    model = MultiPowerLaw()
    preps = [model.prepare(lr, steps) for lr in runs]
    ys = [mpl_literal(truth, lr, p.K, steps) for lr, p in zip(runs, preps)]
    x = _fit_all(model, preps, ys, _start(model, preps, ys))
    np.testing.assert_allclose(x, truth, rtol=1e-6)


@pytest.mark.parametrize("lam", [0.999, (0.99, 0.9999)])
def test_annealing_fit_recovers_parameters(lam):
    T = 4000
    runs = [3e-4 * S.cosine(T, final=0.1, warmup=100), 3e-4 * S.wsd(T, decay_frac=0.2, warmup=100)]
    steps = np.arange(20, T + 1, 20)
    model = AnnealingLaw(lam=lam)
    true_lam = 0.998 if isinstance(lam, tuple) else lam
    truth = np.array([0.5, true_lam, 2.5, 0.4, 300.0])
    preps = [model.prepare(lr, steps) for lr in runs]
    ys = [annealing_literal(truth[[0, 2, 3, 4]], lr, p.K, steps, true_lam) for lr, p in zip(runs, preps)]
    x = _fit_all(model, preps, ys, _start(model, preps, ys))
    np.testing.assert_allclose(x, truth, rtol=1e-6)


# ----------------------------------------------------------------------------- bad input

GOOD_MPL = np.array([0.5, 0.6, 0.65, 2.0])


@pytest.mark.parametrize("theta, fragment", [
    ([0.5, 0.6, 0.65], "theta must hold 4 values (alpha, beta, gamma, C)"),
    ([5.0, 0.6, 0.65, 2.0], "alpha = 5.0 is outside its bounds [0.01, 3.0]"),
    ([0.5, 0.0, 0.65, 2.0], "beta = 0.0 is outside its bounds"),
    ([0.5, 0.6, -0.1, 2.0], "gamma = -0.1 is outside its bounds"),
    ([0.5, 0.6, 0.65, 0.0], "C = 0.0 is outside its bounds"),
    ([0.5, float("nan"), 0.65, 2.0], "beta = nan is not finite"),
])
def test_mpl_bad_theta(theta, fragment):
    model = MultiPowerLaw()
    prep = model.prepare(1e-3 * S.cosine(100), np.arange(1, 101))
    with pytest.raises(ValueError, match=None) as err:
        model.basis(np.array(theta), prep)
    assert fragment in str(err.value)


@pytest.mark.parametrize("theta, fragment", [
    ([0.5, 0.99], "lam = 0.99 differs from its fixed value 0.999"),
    ([-1.0, 0.999], "alpha = -1.0 is outside its bounds"),
    ([0.5], "theta must hold 2 values (alpha, lam)"),
])
def test_annealing_bad_theta(theta, fragment):
    model = AnnealingLaw()
    prep = model.prepare(1e-3 * S.cosine(100), np.arange(1, 101))
    with pytest.raises(ValueError) as err:
        model.basis(np.array(theta), prep)
    assert fragment in str(err.value)


@pytest.mark.parametrize("make, exc, fragment", [
    (lambda: MultiPowerLaw(rtol=0.5), ValueError, "rtol = 0.5 must be a number in [1e-15, 1e-2]"),
    (lambda: MultiPowerLaw(warmup=-3), ValueError, "warmup = -3 is negative"),
    (lambda: MultiPowerLaw(warmup=2.5), TypeError, "warmup must be None or a whole number"),
    (lambda: AnnealingLaw(lam=1.0), ValueError, "lam = 1.0 must be a number in (0, 1)"),
    (lambda: AnnealingLaw(lam=(0.9999, 0.99)), ValueError, "lower bound exceeds the upper"),
    (lambda: AnnealingLaw(lam=(0.99,)), ValueError, "give one number (fixed) or a pair"),
    (lambda: AnnealingLaw(warmup=True), TypeError, "warmup must be None or a whole number"),
])
def test_bad_options(make, exc, fragment):
    with pytest.raises(exc) as err:
        make()
    assert fragment in str(err.value)


@pytest.mark.parametrize("model", [MultiPowerLaw(), AnnealingLaw()], ids=["mpl", "annealing"])
@pytest.mark.parametrize("lr, steps, exc, fragment", [
    (np.array([0.0, 0.0, 1e-3, 1e-3]), [1, 2, 3, 4], ValueError, "drop the first 2 step(s)"),
    (np.array([1e-3, np.nan, 1e-3]), [1, 2, 3], ValueError, "lr[1] is nan"),
    (np.array([1e-3, -1e-3, 1e-3]), [1, 2, 3], ValueError, "lr[1] = -0.001 is negative"),
    (np.full(5, 1e-3), [0, 3], ValueError, "steps[0] = 0 is outside 1..T = 1..5"),
    (np.full(5, 1e-3), [2, 9], ValueError, "steps[1] = 9 is outside 1..T = 1..5"),
    (np.full(5, 1e-3), [3, 2], ValueError, "strictly increasing"),
])
def test_bad_runs(model, lr, steps, exc, fragment):
    with pytest.raises(exc) as err:
        model.prepare(lr, np.asarray(steps))
    assert fragment in str(err.value)


def test_warmup_longer_than_run():
    with pytest.raises(ValueError, match="warmup = 50 exceeds the 10 steps of lr"):
        AnnealingLaw(warmup=50).prepare(np.full(10, 1e-3), [10])


# ------------------------------------------------------------------------------ real runs


def test_real_run_columns(data_dir):
    import cdfast

    path = sorted((data_dir / "llm124m").glob("cos-zero-124m_*.json"))[0]
    run = cdfast.io.read_wandb_json(path)
    steps, loss = run.curve()
    lr = run.lr()
    keep = (steps >= 1) & (steps <= lr.shape[0]) & np.isfinite(loss)
    steps = steps[keep]
    for model, theta in ((MultiPowerLaw(), GOOD_MPL), (AnnealingLaw(), np.array([0.5, 0.999]))):
        B = model.basis(theta, model.prepare(lr, steps))
        assert np.all(np.isfinite(B))
        # a monotone cooldown after the peak: only loss drops (column <= 0), growing
        assert np.all(B[:, 2] <= 0.0) and np.all(np.diff(B[:, 2]) <= 1e-15)
