r"""The last-iterate bound of eq. (2.4) and its exact gradient with respect to every LR, in O(T).

Derivation
----------
Write ``eta_1 .. eta_T`` for the learning rates (``lr[k-1] = eta_k``), ``G_k^2`` for the
per-step squared gradient bounds (all 1 without ``grad_sq``), ``P = eta_1 + ... + eta_T``,
and, for ``j < T``, the gap ``g_j = P_T - P_j = eta_{j+1} + ... + eta_T`` (a suffix sum)
and the weight ``w_j = eta_j^2 G_j^2``.  The single-sum form of eq. (2.4) at tau = T
(docs/math.md section 2) is

    B = L_* + D^2 / (2 P) + (G^2 / 2) [ eta_T G_T^2 + sum_{j<T} w_j / g_j ].

Differentiate with respect to one ``eta_k``:

* ``D^2 / (2 P)``: P contains every eta once, so it gives ``-D^2 / (2 P^2)`` for every k.
* ``eta_T G_T^2``: gives ``G_T^2`` for k = T only.
* ``w_j / g_j`` with j = k (k < T): the numerator depends on eta_k, the gap does not
  (g_k starts at eta_{k+1}), giving ``2 eta_k G_k^2 / g_k``.
* ``w_j / g_j`` with j < k: the gap g_j contains eta_k (j + 1 <= k <= T), the numerator
  does not, giving ``-w_j / g_j^2``.
* ``w_j / g_j`` with j > k: neither depends on eta_k.

Hence, with the forward prefix sum ``S_k = sum_{j<k, j<T} w_j / g_j^2`` of non-negative
terms,

    dB/d eta_k = -D^2 / (2 P^2) + G^2 [ eta_k G_k^2 / g_k - S_k / 2 ]     (k < T)
    dB/d eta_T = -D^2 / (2 P^2) + G^2 [ G_T^2 / 2       - S_T / 2 ].

This is the adjoint of the streaming evaluation: the bound accumulates the gaps
backwards (g_j = g_{j+1} + eta_{j+1}); each ``w_j / g_j`` sends ``-w_j / g_j^2`` to the
gap's adjoint, and the gaps' adjoints flow to every eta above them, which is the
forward prefix ``S_k``.  One backward pass (the carries that give every gap as a suffix
sum) and one forward pass (gaps, quotients, ``S_k``, the gradient) cost O(T) time; the
carries live in the output array, so the extra memory is a few fixed-size buffers.
Nothing is obtained by subtracting prefix sums.  The eq. (2.3) bound
``L_* + D^2 / (2 P) + G^2 sum_t w_t / (2 P)`` has the gradient
``-(D^2 + G^2 sum_t w_t) / (2 P^2) + G^2 eta_k G_k^2 / P``.

B is convex in the LRs (``eta_j^2 / g_j`` is a quadratic-over-linear function, convex
where g_j > 0, and ``1 / P`` is convex for P > 0), which is what makes the schedule
optimisation of :mod:`cdfast.optimize` well posed.

Accuracy
--------
The kernels (csrc/gradient.c, cdfast/_kernels/_numba_grad.py; bit-identical) use chunks of 512
steps, eight lanes of 64 each.  With u = 2^-53 and every sum adding non-negative terms:
a chunk's carry is within 69 u (eight strided chains of at most 64 terms and a tree of
depth 3 per chunk, the carry compensated), a gap within 71 u (plus the lanes above and
the in-lane suffix), ``r = 1 / gap`` within 72 u, the own term ``eta_k G_k^2 r`` within
74 u, the value term ``w_k / g_k`` within 75 u and the adjoint weight ``w_k / g_k^2``
within 148 u (the gap enters squared); the prefix ``S_k`` (an in-lane chain of at most 63
terms, seven lane totals, a compensated carry) is within about 215 u.  So the value has
a relative error of at most about 90 u (1.0e-14), and each gradient entry an absolute
error of at most about ``220 u (G^2 (eta_k G_k^2 / g_k + S_k / 2) + D^2 / (2 P^2))``
(2.5e-14 times the sum of the magnitudes of its three parts: the parts cancel near an
optimum, so this, not a relative error, is the honest bound).  Intermediates are
assumed normal (no LR or gap below about 1e-300).  Measured against 50-digit mpmath:
about one ulp of that scale (tests/test_gradient.py).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validate as V
from ._kernels._backends import BAD_ARGUMENT, OK, get_backend
from ._kernels._stacked import stacked

FloatArray = NDArray[np.float64]


def _grad_kernel(x: FloatArray, g: FloatArray | None, d2: float, g2: float, backend: str | None, fn: str,
                 out_grad: FloatArray | None = None) -> tuple[float, float, FloatArray]:
    """(a, b, grad) for validated input: grad of ``d2 a + g2 b`` (no further checks).

    ``out_grad``, if given, receives the gradient (length T, float64, contiguous).
    """
    be = get_backend(backend)
    kernel = be.last_iterate_grad
    if kernel is None:  # a third-party backend object without the gradient kernel
        raise ImportError(f"backend {be.name!r} has no gradient kernel; use backend='numba' or 'c'")
    out = np.empty(2)
    grad = np.empty(x.shape[0]) if out_grad is None else out_grad
    try:
        status = kernel(x, g, float(d2), float(g2), out, grad)
    except AttributeError as exc:  # a C extension built before csrc/gradient.c existed
        raise ImportError(
            f"the C extension lacks the gradient kernel ({exc}); rebuild it with "
            "`python -m pip install -e .` (or `python cdfast/_kernels/_cffi_build.py`), or use backend='numba'"
        ) from None
    if status != OK:
        if status == BAD_ARGUMENT:  # cannot happen after as_vector; keep the kernels honest
            raise RuntimeError(f"{fn}: backend {be.name!r} rejected validated input (status {status})")
        V.raise_for_values({"lr": x, "grad_sq": g}, all_zero_ok=False)
    return float(out[0]), float(out[1]), grad


def _check_common(lr: ArrayLike, D: float, G: float, L_star: float, grad_sq: ArrayLike | None):
    D = V.check_scalar(D, "D")
    G = V.check_scalar(G, "G")
    L_star = V.check_scalar(L_star, "L_star", nonneg=False)
    x = V.as_vector(lr, "lr")
    g = V.check_grad_sq(grad_sq, x.shape[0])
    return x, g, D, G, L_star


@stacked("(t)->(),(t)", scalars=("D", "G", "L_star"))
def bound_gradient(
    lr: ArrayLike,
    D: float = 1.0,
    G: float = 1.0,
    L_star: float = 0.0,
    grad_sq: ArrayLike | None = None,
    backend: str | None = None,
) -> tuple[float, FloatArray]:
    """The last-iterate bound of eq. (2.4) and its gradient with respect to every LR.

    Parameters
    ----------
    lr : array_like, shape (T,)
        Learning rates eta_1 .. eta_T (``lr[i] = eta_{i+1}``); finite, >= 0, last one > 0.
    D : float
        Distance ||w_0 - w_*|| (>= 0).
    G : float
        Gradient bound (>= 0); multiplies ``grad_sq`` if given.
    L_star : float
        The optimal loss L_* (shifts the value, not the gradient).
    grad_sq : array_like, shape (T,), optional
        Per-step G_t^2 (Schaipp et al. 2025), finite and >= 0.
    backend : {None, "auto", "numba", "c"}
        Kernel backend; None reads ``CDFAST_BACKEND``.

    Returns
    -------
    value : float
        ``cdfast.last_iterate_bound(lr, D, G, L_star, grad_sq)`` (to within its error bound).
    grad : ndarray, shape (T,)
        ``grad[k] = d value / d lr[k]``.

    Raises
    ------
    ValueError
        NaN, inf or negative entries (named by index), a wrong-length ``grad_sq``, an
        all-zero ``lr`` or a final LR of 0 (the bound is infinite there).
    TypeError
        Non-numeric input.

    Examples
    --------
    >>> import numpy as np, cdfast
    >>> lr = 0.01 * cdfast.schedules.linear(1000)
    >>> value, grad = cdfast.bound_gradient(lr)
    >>> round(value, 6), grad.shape
    (0.10997, (1000,))

    Notes
    -----
    Eq. (2.4) at tau = T in the single-sum form; with ``g_k = eta_{k+1} + ... + eta_T``
    and ``S_k = sum_{j<k} eta_j^2 G_j^2 / g_j^2``,
    ``dB/d eta_k = -D^2/(2 P^2) + G^2 [eta_k G_k^2 / g_k - S_k / 2]`` for k < T and
    ``-D^2/(2 P^2) + G^2 [G_T^2 / 2 - S_T / 2]`` for k = T (derivation and error bound:
    this module's docstring).  One backward and one forward pass: O(T) time, the output
    plus O(1) memory; both backends agree bit for bit.
    """
    x, g, D, G, L_star = _check_common(lr, D, G, L_star, grad_sq)
    V.check_positive_last(x, "bound_gradient")
    a, b, grad = _grad_kernel(x, g, D * D, G * G, backend, "bound_gradient")
    return L_star + D * D * a + G * G * b, grad


@stacked("(t)->(),(t)", scalars=("D", "G", "L_star"))
def average_bound_gradient(
    lr: ArrayLike,
    D: float = 1.0,
    G: float = 1.0,
    L_star: float = 0.0,
    grad_sq: ArrayLike | None = None,
    backend: str | None = None,
) -> tuple[float, FloatArray]:
    """The average-iterate bound of eq. (2.3) and its gradient with respect to every LR.

    Arguments as in :func:`bound_gradient`; a final LR of 0 is allowed (the bound stays
    finite while some LR is positive).

    Returns
    -------
    value : float
        ``cdfast.average_iterate_bound(lr, D, G, L_star, grad_sq)``, exactly.
    grad : ndarray, shape (T,)

    Notes
    -----
    Eq. (2.3): ``B = L_* + D^2/(2 P) + G^2 sum_t w_t / (2 P)`` with ``w_t = eta_t^2 G_t^2``,
    so ``dB/d eta_k = G^2 eta_k G_k^2 / P - (D^2 + G^2 sum_t w_t) / (2 P^2)``, computed as
    ``2 a (G^2 eta_k G_k^2 - (a D^2 + b G^2))`` from the kernel's ``a = 1/(2P)``,
    ``b = sum_t w_t / (2P)`` (one pass) and one elementwise pass; relative error of
    each part a few ulp beyond the kernel's.
    """
    x, g, D, G, L_star = _check_common(lr, D, G, L_star, grad_sq)
    be = get_backend(backend)
    out = np.empty(2)
    status = be.average_iterate(x, g, out)
    if status != OK:
        V.raise_for_values({"lr": x, "grad_sq": g}, all_zero_ok=False)
    a, b = float(out[0]), float(out[1])
    if not np.isfinite(a):
        V.raise_for_values({"lr": x, "grad_sq": g}, all_zero_ok=False)
    d2, g2 = D * D, G * G
    grad = np.multiply(x, g2)
    if g is not None:
        grad *= g
    grad -= a * d2 + b * g2
    grad *= 2.0 * a
    if not np.isfinite(grad).all():
        V.raise_for_values({"lr": x, "grad_sq": g}, all_zero_ok=False)
    return L_star + d2 * a + g2 * b, grad


__all__ = ["bound_gradient", "average_bound_gradient"]
