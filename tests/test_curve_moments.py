"""The curve by block moments (cdfast.curve.curve_terms_moments): the loss models' search surrogates.

Against the exact method (itself tested against the literal formula and mpmath in
tests/test_curve.py): every finite ``b`` within MOMENTS_RTOL, ``a`` to a few ulp, the same
infinite entries; both backends bit for bit; malformed calls refused by the kernels.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cdfast import schedules
from cdfast._kernels._backends import BAD_ARGUMENT, get_backend
from cdfast.curve import MOMENTS_RTOL, bound_curve_terms, curve_terms_moments, moment_block

BACKENDS = ("numba", "c")


def _cases():
    rng = np.random.default_rng(7)
    T = 6000
    step = 1e-3 * np.where(np.arange(T) < 0.7 * T, 1.0, 0.1)  # an abrupt 10x fall: near blocks behind it
    step[:100] = np.linspace(0.0, 1e-3, 100)  # a warmup from 0: the first step moves nothing
    return {
        "cosine": (1e-3 * schedules.cosine(T, warmup=200), None),
        "wsd + grad_sq": (1e-3 * schedules.wsd(T, decay_frac=0.2, warmup=200), rng.uniform(0.5, 2.0, T)),
        "step 10x from 0": (step, None),
        "random": (rng.uniform(0.0, 1.0, 2000) ** 3, rng.uniform(0.1, 3.0, 2000)),
        "one step": (np.array([0.3]), None),
        "two steps": (np.array([0.3, 0.1]), np.array([1.0, 2.0])),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("block", [None, 1, 4, 16])
def test_moments_match_the_exact_curve(name, block):
    lr, g = CASES[name]
    T = lr.shape[0]
    for at in (np.arange(1, T + 1), np.unique(np.r_[np.arange(max(T // 7, 1), T + 1, max(T // 7, 1)), T])):
        ea, eb = bound_curve_terms(lr, g, at=at, method="exact")
        a, b = curve_terms_moments(lr, g, at, block=block)
        np.testing.assert_array_equal(np.isinf(b), np.isinf(eb))
        np.testing.assert_array_equal(np.isinf(a), np.isinf(ea))
        fin = np.isfinite(eb)
        assert np.all(np.abs(b[fin] / eb[fin] - 1.0) <= MOMENTS_RTOL)
        fa = np.isfinite(ea)
        np.testing.assert_allclose(a[fa], ea[fa], rtol=1e-14)


def test_far_blocks_are_used_and_their_error_is_the_truncation():
    """With small blocks most of a long pass goes through the moments, and the error stays
    within the truncation bound (1 + r) r^8 / (1 - r), r = 1/8, however many blocks enter."""
    lr = 1e-3 * schedules.cosine(20_000, warmup=100)
    at = np.arange(500, 20_001, 500)
    _, eb = bound_curve_terms(lr, at=at, method="exact")
    worst = max(float(np.max(np.abs(curve_terms_moments(lr, None, at, block=blk)[1] / eb - 1.0)))
                for blk in (2, 8, 32, 128))
    assert worst <= (1 + 1 / 8) * (1 / 8) ** 8 / (1 - 1 / 8)
    assert worst > 0.0  # the moments did approximate something (the exact terms would agree to ~1e-14)


@pytest.mark.parametrize("name", list(CASES))
def test_backends_agree_bit_for_bit(name):
    lr, g = CASES[name]
    at = np.arange(1, lr.shape[0] + 1)
    for block in (None, 3):
        a0, b0 = curve_terms_moments(lr, g, at, backend="numba", block=block)
        a1, b1 = curve_terms_moments(lr, g, at, backend="c", block=block)
        assert np.array_equal(a0, a1) and np.array_equal(b0, b1)


def test_stacked_rows_are_the_row_calls():
    lr = 1e-3 * schedules.cosine(3000, warmup=50)
    X = np.stack([lr, lr ** 0.7, lr / (1 + lr / 2e-4)])
    at = np.arange(30, 3001, 30)
    a, b = curve_terms_moments(X, None, at)
    for r in range(3):
        ar, br = curve_terms_moments(X[r], None, at)
        assert np.array_equal(a[r], ar) and np.array_equal(b[r], br)


def test_a_bad_row_is_left_to_the_exact_method_which_names_it():
    lr = 1e-3 * schedules.constant(500)
    lr[200] = np.inf
    with pytest.raises(ValueError, match=r"lr\[200\]"):
        curve_terms_moments(lr, None, np.arange(1, 501))


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernels_refuse_malformed_calls(backend):
    be = get_backend(backend)
    lr = np.full(10, 1e-3)
    a, b = np.empty(3), np.empty(3)
    ok_at = np.array([2, 5, 10], dtype=np.int64)
    work = np.empty(9 * 10)
    for at in (np.array([0, 5, 10]), np.array([2, 5, 11]), np.array([5, 2, 10]), np.array([2, 2, 10])):
        assert be.curve_moments(lr, None, at.astype(np.int64), 1, a, b, work) == BAD_ARGUMENT
    assert be.curve_moments(lr, None, ok_at, 0, a, b, work) == BAD_ARGUMENT  # block 0
    assert be.curve_moments(lr, None, ok_at, 1, a, b, np.empty(9 * 10 - 1)) == BAD_ARGUMENT  # short work
    assert be.curve_moments(lr, None, ok_at, 1, a, b, work) == 0


def test_block_length():
    assert [moment_block(n) for n in (1, 3000, 25_000, 100_000, 400_000, 10 ** 9)] == [16, 16, 64, 128, 256, 4096]


def test_a_fit_is_the_same_on_either_backend(monkeypatch):
    """The first fits of a fresh install run on the C kernels while Numba compiles: the default
    model's search surrogates (block moments) and exact passes give it the same bits on both."""
    import cdfast

    T = 3000
    steps = np.arange(30, T + 1, 30)
    lrs = [1e-3 * schedules.constant(T, warmup=50), 1e-3 * schedules.cosine(T, warmup=50)]
    losses = [3.0 + 2.0 * (steps / 30.0) ** -0.4 * (1.0 - 0.1 * k) for k in range(2)]
    out = []
    for backend in BACKENDS:
        monkeypatch.setenv("CDFAST_BACKEND", backend)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cdfast.FitWarning)  # synthetic curves: the warnings are not the point
            fit = cdfast.fit_loss_curves(lrs, [steps] * 2, losses)
        out.append(fit.predict(1e-3 * schedules.wsd(T, decay_frac=0.2, warmup=50), at=steps))
    assert np.array_equal(out[0], out[1])
