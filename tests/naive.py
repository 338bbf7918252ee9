"""Literal formulas, slow and obviously right: the references every kernel is tested against.

Nothing here is clever.  ``last_iterate_naive`` transcribes eq. (2.4) with its nested
sums (O(T^2)), ``last_iterate_mp`` evaluates the single-sum form in mpmath at 40
digits from the same float64 inputs.
"""

from __future__ import annotations

import numpy as np


def last_iterate_naive(lr, D=1.0, G=1.0, L_star=0.0, grad_sq=None):
    """Eq. (2.4) at tau = T, nested sums as printed (per-step G_t^2 if given)."""
    eta = [float(x) for x in lr]
    g2 = [G * G] * len(eta) if grad_sq is None else [G * G * float(v) for v in grad_sq]
    T = len(eta)
    P = sum(eta)
    bound = L_star + D * D / (2 * P) + sum(g2[t] * eta[t] ** 2 for t in range(T)) / (2 * P)
    for k in range(T - 1):  # k = 1 .. tau-1 in the paper's 1-based indexing
        num = sum(eta[k + 1 :])  # sum_{t=k+1..tau} eta_t
        s_k = sum(eta[k:])  # sum_{t=k..tau} eta_t
        sq = sum(g2[t] * eta[t] ** 2 for t in range(k, T))
        bound += 0.5 * (eta[k] / num) * (sq / s_k)
    return bound


def average_iterate_naive(lr, D=1.0, G=1.0, L_star=0.0, grad_sq=None):
    """Eq. (2.3)."""
    eta = [float(x) for x in lr]
    g2 = [G * G] * len(eta) if grad_sq is None else [G * G * float(v) for v in grad_sq]
    P = sum(eta)
    return L_star + D * D / (2 * P) + sum(g2[t] * eta[t] ** 2 for t in range(len(eta))) / (2 * P)


def last_iterate_vectorized(lr, D=1.0, G=1.0, L_star=0.0, grad_sq=None):
    """What a user writes with NumPy today: the single-sum form via cumulative sums.

    Kept as the benchmark baseline; it subtracts prefix sums (fine for the test
    inputs, inaccurate near the end of long schedules).
    """
    lr = np.asarray(lr, dtype=np.float64)
    w = lr * lr if grad_sq is None else lr * lr * np.asarray(grad_sq, dtype=np.float64)
    P = np.cumsum(lr)
    gaps = P[-1] - P[:-1]  # cancels to 0 near the end of long decays: the bound becomes inf
    with np.errstate(divide="ignore"):
        return L_star + D * D / (2 * P[-1]) + 0.5 * G * G * (w[-1] / lr[-1] + np.sum(w[:-1] / gaps))


def terms_mp(lr, grad_sq=None, dps=40):
    """(a, b) of eq. (2.4) in mpmath at ``dps`` digits from the float64 inputs."""
    import mpmath

    with mpmath.workdps(dps):
        eta = [mpmath.mpf(float(x)) for x in lr]
        g2 = [mpmath.mpf(1)] * len(eta) if grad_sq is None else [mpmath.mpf(float(v)) for v in grad_sq]
        gap = mpmath.mpf(0)
        b = eta[-1] * g2[-1]
        for j in range(len(eta) - 2, -1, -1):
            gap += eta[j + 1]
            b += eta[j] ** 2 * g2[j] / gap
        P = gap + eta[0]
        return 1 / (2 * P), b / 2
