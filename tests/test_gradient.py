"""The gradient of the bound: against central differences of the literal nested sums (mpmath),
an independent high-precision evaluation of the derivative, each other, and bad input."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cdfast
from cases import BAD_INPUTS, SCHEDULES
from naive import average_iterate_naive, last_iterate_naive

mpmath = pytest.importorskip("mpmath")

U = 2.0**-53
ERR_U = 220  # the stated bound (cdfast/gradient.py): |error| <= 220 u * (sum of |parts|)
RTOL_VALUE = 1e-13


# ---------------------------------------------------------------------------
# References, written from the formulas and nothing else


def nested_sums_mp(eta, D, G, L, g2):
    """Eq. (2.4) with its nested sums as printed (tests/naive.py), in mpmath."""
    T = len(eta)
    P = sum(eta)
    sq = [g2[t] * G * G * eta[t] ** 2 for t in range(T)]
    bound = L + D * D / (2 * P) + sum(sq) / (2 * P)
    for k in range(T - 1):
        bound += (eta[k] / sum(eta[k + 1:])) * (sum(sq[k:]) / sum(eta[k:])) / 2
    return bound


def central_differences_mp(lr, D, G, L, grad_sq, dps=60):
    """d bound / d lr[k] by central differences of the nested sums, at 60 digits."""
    with mpmath.workdps(dps):
        eta = [mpmath.mpf(float(x)) for x in lr]
        g2 = [mpmath.mpf(1)] * len(eta) if grad_sq is None else [mpmath.mpf(float(v)) for v in grad_sq]
        D, G, L = mpmath.mpf(D), mpmath.mpf(G), mpmath.mpf(L)
        out = []
        for k in range(len(eta)):
            h = eta[k] * mpmath.mpf(10) ** -25 if eta[k] else mpmath.mpf(10) ** -25
            up, dn = list(eta), list(eta)
            up[k] += h
            dn[k] -= h
            out.append(float((nested_sums_mp(up, D, G, L, g2) - nested_sums_mp(dn, D, G, L, g2)) / (2 * h)))
        return np.array(out)


def gradient_parts_mp(lr, D, G, grad_sq, dps=40):
    """The three parts of dB/d eta_k (D-term, own term, -S_k/2) from their definitions, in mpmath.

    Returns (gradient, scale) where scale = |D-term| + |own| + S_k/2, the quantity the
    error bound is stated in.
    """
    with mpmath.workdps(dps):
        eta = [mpmath.mpf(float(x)) for x in lr]
        T = len(eta)
        g2 = [mpmath.mpf(1)] * T if grad_sq is None else [mpmath.mpf(float(v)) for v in grad_sq]
        D2, G2 = mpmath.mpf(D) ** 2, mpmath.mpf(G) ** 2
        gaps = [mpmath.mpf(0)] * T
        acc = mpmath.mpf(0)
        for j in range(T - 2, -1, -1):
            acc += eta[j + 1]
            gaps[j] = acc
        P = acc + eta[0]
        dterm = D2 / (2 * P * P)
        grad, scale = [], []
        S = mpmath.mpf(0)
        for k in range(T):
            own = eta[k] * g2[k] / gaps[k] if k < T - 1 else g2[k] / 2
            grad.append(float(-dterm + G2 * (own - S / 2)))
            scale.append(float(dterm + G2 * (own + S / 2)))
            if k < T - 1:
                S += eta[k] ** 2 * g2[k] / gaps[k] ** 2
        return np.array(grad), np.array(scale)


def _random_lr(T, seed, zeros=True):
    rng = np.random.default_rng(seed)
    lr = rng.uniform(0.0, 2.0, T)
    if zeros:
        lr[rng.random(T) < 0.1] = 0.0
    lr[-1] = rng.uniform(0.05, 1.0)
    return lr


# ---------------------------------------------------------------------------
# Correctness


@pytest.mark.parametrize("T", [1, 2, 3, 5, 9, 16])
@pytest.mark.parametrize("with_g", [False, True])
def test_gradient_equals_central_differences_of_the_nested_sums(backend, T, with_g):
    lr = _random_lr(T, T, zeros=T > 3)
    g = np.random.default_rng(100 + T).uniform(0.2, 3.0, T) if with_g else None
    D, G, L = 1.3, 0.7, 0.25
    value, grad = cdfast.bound_gradient(lr, D, G, L, grad_sq=g, backend=backend)
    ref = central_differences_mp(lr, D, G, L, g)
    _, scale = gradient_parts_mp(lr, D, G, g)
    assert np.all(np.abs(grad - ref) <= 1e-14 * scale)
    assert value == pytest.approx(last_iterate_naive(lr, D, G, L, g), rel=1e-13)


@pytest.mark.parametrize("T", [511, 512, 513, 1025, 3001])
@pytest.mark.parametrize("with_g", [False, True])
def test_gradient_within_the_stated_error_bound(backend, T, with_g):
    lr = _random_lr(T, 7 * T)
    g = np.random.default_rng(T).uniform(0.0, 3.0, T) if with_g else None
    value, grad = cdfast.bound_gradient(lr, 2.0, 0.5, grad_sq=g, backend=backend)
    ref, scale = gradient_parts_mp(lr, 2.0, 0.5, g)
    err = np.abs(grad - ref) / scale
    assert err.max() <= ERR_U * U
    assert err.max() <= 32 * U  # in practice about ten ulp of the scale at most
    assert value == pytest.approx(cdfast.last_iterate_bound(lr, 2.0, 0.5, grad_sq=g, backend=backend), rel=RTOL_VALUE)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_value_and_gradient(backend, name):
    lr = SCHEDULES[name](2000)
    value, grad = cdfast.bound_gradient(lr, backend=backend)
    assert value == pytest.approx(cdfast.last_iterate_bound(lr, backend=backend), rel=RTOL_VALUE)
    ref, scale = gradient_parts_mp(lr, 1.0, 1.0, None)
    assert np.all(np.abs(grad - ref) <= ERR_U * U * scale)


def test_l_star_shifts_the_value_only(backend):
    lr = SCHEDULES["cosine"](300)
    v0, g0 = cdfast.bound_gradient(lr, backend=backend)
    v1, g1 = cdfast.bound_gradient(lr, L_star=2.5, backend=backend)
    assert v1 == pytest.approx(v0 + 2.5, rel=1e-15) and np.array_equal(g0, g1)


def test_single_step_closed_form(backend):
    # B = D^2 / (2 eta) + G^2 g eta / 2, dB/d eta = -D^2 / (2 eta^2) + G^2 g / 2
    value, grad = cdfast.bound_gradient([0.25], D=2.0, G=3.0, grad_sq=[0.5], backend=backend)
    assert value == pytest.approx(4 / 0.5 + 9 * 0.5 * 0.125, rel=1e-15)
    assert grad[0] == pytest.approx(-4 / (2 * 0.0625) + 9 * 0.5 / 2, rel=1e-15)


@pytest.mark.parametrize("T", [1, 2, 7, 64, 65, 511, 512, 513, 1024, 1025, 5000])
@pytest.mark.parametrize("with_g", [False, True])
def test_backends_agree_bit_for_bit(T, with_g):
    if len(cdfast.available_backends()) < 2:
        pytest.skip("one backend only")
    lr = _random_lr(T, T + 11)
    g = np.random.default_rng(T).uniform(0.0, 2.0, T) if with_g else None
    vn, gn = cdfast.bound_gradient(lr, 1.5, 0.8, grad_sq=g, backend="numba")
    vc, gc = cdfast.bound_gradient(lr, 1.5, 0.8, grad_sq=g, backend="c")
    assert vn == vc and np.array_equal(gn, gc)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), T=st.integers(1, 700), c=st.floats(1e-3, 1e3))
def test_scaling_leaves_the_g_part_unchanged(seed, T, c):
    # b(c eta) = c b(eta), so grad b is invariant; a(c eta) = a(eta) / c, grad a scales by 1/c^2
    lr = _random_lr(T, seed)
    _, gb = cdfast.bound_gradient(lr, D=0.0)
    _, gb_c = cdfast.bound_gradient(c * lr, D=0.0)
    _, ga = cdfast.bound_gradient(lr, G=0.0)
    _, ga_c = cdfast.bound_gradient(c * lr, G=0.0)
    assert np.allclose(gb_c, gb, rtol=0, atol=1e-12 * max(1.0, float(np.max(np.abs(gb)))))
    assert np.allclose(ga_c * c * c, ga, rtol=1e-13, atol=0)


def test_directional_derivative_matches_the_bound():
    # an end-to-end check against last_iterate_bound in float64: (B(x + h v) - B(x - h v)) / 2h
    lr = SCHEDULES["warmup_cosine"](4000)
    v = np.random.default_rng(1).standard_normal(4000) * lr
    _, grad = cdfast.bound_gradient(lr)
    h = 1e-5
    fd = (cdfast.last_iterate_bound(lr + h * v) - cdfast.last_iterate_bound(lr - h * v)) / (2 * h)
    assert fd == pytest.approx(float(grad @ v), rel=1e-6)


# ---------------------------------------------------------------------------
# The average-iterate bound, eq. (2.3)


@pytest.mark.parametrize("T", [1, 2, 5, 700])
@pytest.mark.parametrize("with_g", [False, True])
def test_average_gradient_matches_its_formula(backend, T, with_g):
    lr = _random_lr(T, T)
    g = np.random.default_rng(T).uniform(0.1, 2.0, T) if with_g else None
    D, G, L = 1.2, 0.9, 0.5
    value, grad = cdfast.average_bound_gradient(lr, D, G, L, grad_sq=g, backend=backend)
    assert value == pytest.approx(average_iterate_naive(lr, D, G, L, g), rel=1e-13)
    with mpmath.workdps(40):
        eta = [mpmath.mpf(float(x)) for x in lr]
        g2 = [mpmath.mpf(1)] * T if g is None else [mpmath.mpf(float(v)) for v in g]
        P = sum(eta)
        W = sum(g2[t] * eta[t] ** 2 for t in range(T))
        ref = [float(G * G * eta[k] * g2[k] / P - (D * D + G * G * W) / (2 * P * P)) for k in range(T)]
        scale = [float(G * G * eta[k] * g2[k] / P + (D * D + G * G * W) / (2 * P * P)) for k in range(T)]
    assert np.all(np.abs(grad - np.array(ref)) <= 1e-14 * np.array(scale))


def test_average_gradient_allows_a_zero_final_lr(backend):
    value, grad = cdfast.average_bound_gradient([1.0, 0.5, 0.0], backend=backend)
    assert np.isfinite(value) and np.isfinite(grad).all()


# ---------------------------------------------------------------------------
# Bad input


# The shape cases follow the stacked-input conventions of cdfast._validate; the gradient kernel
# never forms eta^2 (it divides first), so LRs of 1e300 do not overflow it.
_BAD = [c for c in BAD_INPUTS if c[0] not in ("scalar", "2-D", "overflow")]


@pytest.mark.parametrize("case", _BAD, ids=[c[0] for c in _BAD])
def test_bad_input_is_refused_with_a_clear_message(backend, case):
    _, lr, kwargs, exc, fragment = case
    with pytest.raises(exc, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        cdfast.bound_gradient(lr, backend=backend, **kwargs)


@pytest.mark.parametrize("case", [c for c in _BAD if c[0] not in ("zero final", "subnormal")], ids=lambda c: c[0])
def test_average_gradient_refuses_bad_input(backend, case):
    _, lr, kwargs, exc, fragment = case
    with pytest.raises(exc):
        cdfast.average_bound_gradient(lr, backend=backend, **kwargs)


def test_huge_lrs_do_not_overflow(backend):
    # b = (1/2)[1e300 + 1e600 / 2e300 + 1e600 / 1e300] = 1.25e300, representable
    value, grad = cdfast.bound_gradient([1e300] * 3, backend=backend)
    assert value == pytest.approx(1.25e300, rel=1e-15) and np.isfinite(grad).all()


def test_a_scalar_is_not_a_schedule():
    with pytest.raises(ValueError, match="lr"):
        cdfast.bound_gradient(1.0)


def test_stacked_rows_equal_one_dimensional_calls(backend):
    rng = np.random.default_rng(3)
    lr = rng.uniform(0.1, 1.0, size=(2, 3, 50))
    value, grad = cdfast.bound_gradient(lr, D=np.array([[1.0], [2.0]]), backend=backend)
    assert value.shape == (2, 3) and grad.shape == (2, 3, 50)
    for i in range(2):
        for j in range(3):
            v, g = cdfast.bound_gradient(lr[i, j], D=[1.0, 2.0][i], backend=backend)
            assert value[i, j] == v
            np.testing.assert_array_equal(grad[i, j], g)


def test_conversions_are_accepted(backend):
    lr = np.arange(10, 0, -1)
    ref = cdfast.bound_gradient(lr.astype(float), backend=backend)
    for x in (lr, lr.astype(np.float32), list(lr), np.repeat(lr.astype(float), 2)[::2]):
        v, g = cdfast.bound_gradient(x, backend=backend)
        assert v == ref[0] and np.array_equal(g, ref[1])


# ---------------------------------------------------------------------------
# Memory and the C kernel under sanitizers


def test_memory_is_the_output_plus_a_constant(backend):
    peaks = []
    for T in (10**5, 10**6):
        lr = SCHEDULES["cosine"](T)
        cdfast.bound_gradient(lr[:1000], backend=backend)  # compile outside the measurement
        tracemalloc.start()
        cdfast.bound_gradient(lr, backend=backend)
        peaks.append(tracemalloc.get_traced_memory()[1] - 8 * T)
        tracemalloc.stop()
    assert max(peaks) < 64 * 1024, f"beyond the output: {peaks} bytes"


DRIVER = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "cdfast.h"
static int fails = 0;
static void run(size_t n, double bad, size_t where, int use_g, int want) {
    double *lr = malloc((n ? n : 1) * sizeof *lr), *g = malloc((n ? n : 1) * sizeof *g);
    double *grad = malloc((n ? n : 1) * sizeof *grad), out[2];
    for (size_t i = 0; i < n; i++) { lr[i] = 1e-3 * (1.0 + (double)(i % 7) / 7.0); g[i] = 2.0; }
    if (n && where < n) lr[where] = bad;
    int s = cdfast_last_iterate_grad(lr, use_g ? g : NULL, n, 1.0, 1.0, out, grad);
    if (s != want) { fprintf(stderr, "n=%zu where=%zu status %d want %d\n", n, where, s, want); fails++; }
    free(lr), free(g), free(grad);
}
int main(void) {
    size_t sizes[] = {1, 2, 7, 8, 9, 63, 64, 65, 511, 512, 513, 514, 1023, 1024, 1025, 4097};
    run(0, 0.0, 1, 0, CDFAST_BAD_ARGUMENT);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        for (int ug = 0; ug < 2; ug++) {
            run(n, 0.0, n, ug, CDFAST_OK);
            run(n, NAN, 0, ug, CDFAST_BAD_INPUT);
            run(n, NAN, n / 2, ug, CDFAST_BAD_INPUT);
            run(n, -1.0, n - 1, ug, CDFAST_BAD_INPUT);
            run(n, INFINITY, n / 2, ug, CDFAST_NOT_FINITE);
        }
    }
    if (!fails) printf("gradient kernel clean\n");
    return fails != 0;
}
"""


def test_c_kernel_is_memory_clean(tmp_path):
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.skip("no C compiler")
    root = pathlib.Path(__file__).resolve().parents[1]
    (tmp_path / "driver.c").write_text(DRIVER)
    exe = tmp_path / "driver"
    flags = ["-g", "-O1", "-ffp-contract=off", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    done = subprocess.run([cc, *flags, f"-I{root / 'csrc'}", str(root / "csrc" / "gradient.c"), str(tmp_path / "driver.c"),
                           "-lm", "-o", str(exe)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"compiler without sanitizers: {done.stderr[-300:]}")
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "gradient kernel clean" in run.stdout
