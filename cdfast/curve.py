"""The whole loss-bound curve: eq. (2.4) at every iteration tau (Generalization 1).

A learning-rate sequence in, a bound sequence out.  ``method="exact"`` runs the
single-pass kernel of cdfast.bounds once per requested tau (O(T * len(at)), parallel
over tau).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validate as V
from ._backends import OK, get_backend

FloatArray = NDArray[np.float64]
METHODS = ("auto", "exact", "fast")


def _check_at(at: ArrayLike | None, T: int) -> np.ndarray:
    if at is None:
        return np.arange(1, T + 1, dtype=np.int64)
    arr = np.asarray(at)
    if arr.ndim != 1:
        raise ValueError(f"at must be a 1-D sequence of 1-based iterations, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("at is empty; give at least one 1-based iteration (or None for all)")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            i = int(np.argmax(~np.isfinite(arr) | (arr != np.round(arr))))
            raise TypeError(f"at[{i}] = {arr[i]!r} is not a whole number; iterations are integers 1..T")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"at must hold integer iterations, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    out_of_range = (arr < 1) | (arr > T)
    if out_of_range.any():
        i = int(np.argmax(out_of_range))
        raise ValueError(f"at[{i}] = {arr[i]} is outside 1..T = 1..{T}; iterations are 1-based")
    if arr.size > 1 and np.any(np.diff(arr) <= 0):
        i = int(np.argmax(np.diff(arr) <= 0)) + 1
        raise ValueError(f"at must be strictly increasing: at[{i}] = {arr[i]} follows at[{i - 1}] = {arr[i - 1]}; sort and deduplicate it")
    return np.ascontiguousarray(arr)


def bound_curve_terms(
    lr: ArrayLike,
    grad_sq: ArrayLike | None = None,
    at: ArrayLike | None = None,
    method: str = "auto",
    rtol: float = 1e-12,
    backend: str | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Coefficient arrays ``(a, b)`` of eq. (2.4) at tau = 1..T (or at ``at``).

    ``bound_curve(lr, D, G, L_star) == L_star + D**2 * a + G**2 * b``.  Where the
    bound is infinite (eta_tau == 0, or P_tau == 0) ``b`` (and ``a`` when P_tau == 0)
    is ``+inf``.
    """
    x = V.as_vector(lr, "lr")
    g = V.check_grad_sq(grad_sq, x.shape[0])
    V.check_values(x, "lr")
    if g is not None:
        V.check_values(g, "grad_sq")
    taus = _check_at(at, x.shape[0])
    if method not in METHODS:
        raise ValueError(f"method = {method!r} is not one of {METHODS}")
    be = get_backend(backend)
    a = np.empty(taus.shape[0])
    b = np.empty(taus.shape[0])
    status = be.curve_exact(x, g, taus, a, b)
    if status != OK:
        V.raise_for_values({"lr": x, "grad_sq": g})
    return a, b


def bound_curve(
    lr: ArrayLike,
    D: float = 1.0,
    G: float = 1.0,
    L_star: float = 0.0,
    grad_sq: ArrayLike | None = None,
    at: ArrayLike | None = None,
    method: str = "auto",
    rtol: float = 1e-12,
    backend: str | None = None,
) -> FloatArray:
    """The bound of eq. (2.4) at every tau = 1..T (or at the sorted 1-based ``at``)."""
    D = V.check_scalar(D, "D")
    G = V.check_scalar(G, "G")
    L_star = V.check_scalar(L_star, "L_star", nonneg=False)
    a, b = bound_curve_terms(lr, grad_sq, at, method, rtol, backend)
    with np.errstate(invalid="ignore"):
        return L_star + D * D * a + G * G * b
