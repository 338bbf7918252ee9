"""The convex SGD loss bounds of eq. (2.3) and (2.4), at the final iterate.

Every function validates its input once and hands contiguous float64 arrays to a
backend kernel (see cdfast._kernels._backends).  The last-iterate bound uses the single-sum
form of eq. (2.4) (docs/math.md section 2):

    bound = L_* + D^2 a + G^2 b,
    a = 1 / (2 P_T),   b = (1/2) [eta_T G_T^2 + sum_{j<T} eta_j^2 G_j^2 / (P_T - P_j)],

evaluated in one backward pass.  The gaps P_T - P_j are suffix sums (never a
difference of prefix sums).  A chunk of 512 steps is split into 8 contiguous lanes
of 64; one scan runs the 8 in-lane suffix sums side by side (independent chains),
and gap = (base + s) + e, with e the in-lane suffix above the step and s the sum of
the lanes above (one addition per lane); the running total (base) is carried across
chunks with Neumaier compensation.  When a chunk's gaps lie in [2^-250, 2^250], the
terms of lane k and lane k + 4 are paired and share one division, w_i/g_i + w_k/g_k =
(w_i g_k + w_k g_i)/(g_i g_k) (exact algebra; the range keeps every product normal);
otherwise each term is divided directly.  A chunk's quotients are summed pairwise.

From T = 2^19 steps on, the pass is two-level, so that it can use several threads:
[0, T-1) is cut into 64 segments of whole chunks, fixed by T alone.  Pass A sums each
segment (blocks of 512 by 8 strided accumulators, block sums carried with Neumaier
compensation); the carry entering a segment (eta_T plus the totals of the segments
above it) is accumulated top down with Neumaier compensation; pass B runs the chunk
pass above on every segment from its carry, and the segments' terms are added top down
with Neumaier compensation.  Every segment's arithmetic is fixed, so the result does
not depend on the number of threads, and the C and Numba backends agree bit for bit.

Threads.  The 128 tasks (pass A and pass B of every segment) are dealt out to the
threads dynamically, pass A eight segments ahead; a thread that needs a total nobody
has published yet computes it, and a thread that finds no task left computes every
unpublished pass B itself, so no thread waits for another and a thread descheduled by
the OS delays nobody.  Before the pass, cdfast counts the cores that other processes
keep busy at that instant and uses only the free ones (at least one; cdfast._kernels._threads).
Stacked input, ``lr`` of shape (..., T), runs one row per task instead, each row on
one thread, rows dealt out dynamically (cdfast._kernels._stacked).

Error bound: with u = 2^-53, every gap carries a relative error of at most about
(63 + 7 + 2 + 3) u = 75 u (the in-lane chain, the chain of lane totals, the lane
start and the final addition, and the compensated carry); each term adds at most 6 u
(two products for the weight, then two products, one addition and one division for
a pair, all of non-negative numbers); the pairwise chunk sum adds 9 u and the
compensated total 2 u.  In the two-level pass a segment's carry comes from pass A:
each block sum has a relative error of at most (63 + 3) u (chains of 64, then three
levels of pairwise addition), the compensated block carry and the compensated sum of
segment totals add about 2 u each, so a carry is within about 70 u, inside the 75 u
above; adding the segments' terms adds about 2 u more.  Because every term is
non-negative, these relative errors bound the relative error of ``b`` itself:
|db| / b <= about 94 u ~ 1.05e-14 (92 u below 2^19 steps), independent of T; ``a`` is
better still.  This assumes no intermediate is subnormal (every non-zero
eta_j^2 G_j^2 above about 2^-770).  Measured against the 40-digit mpmath references
at T = 1e6 and 1e7 (tests/data/references.json: linear, cosine, WSD, constant, cosine
with grad_sq): at most 7.5e-16 (constant schedule, T = 1e7, a).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._kernels import _stacked

FloatArray = NDArray[np.float64]
Terms = tuple[float, float] | tuple[FloatArray, FloatArray]


def bound_terms(lr: ArrayLike, grad_sq: ArrayLike | None = None, backend: str | None = None) -> Terms:
    """Coefficients ``(a, b)`` of the last-iterate bound, eq. (2.4) at tau = T.

    ``last_iterate_bound(lr, D, G, L_star) == L_star + D**2 * a + G**2 * b``.
    Peak-LR optimisation and fitting reuse them: scaling every LR by ``c`` scales
    ``a`` by ``1/c`` and ``b`` by ``c``.

    Parameters
    ----------
    lr : array_like, shape (T,) or (..., T)
        Learning rates eta_1 .. eta_T (``lr[..., i] = eta_{i+1}``), finite, >= 0, with
        a positive final entry.  Leading axes stack schedules (one result each); a
        ``dask.array`` (chunked along the leading axes only) gives lazy results.
    grad_sq : array_like, shape (T,) or (..., T), optional
        Per-step squared gradient bounds G_t^2 (Schaipp et al. 2025), broadcasting
        against ``lr``'s leading axes; with them ``b`` is the coefficient of ``G**2 = 1``.
    backend : {None, "auto", "numba", "c"}
        Kernel backend; None reads ``CDFAST_BACKEND`` (default "auto").

    Returns
    -------
    (a, b) : tuple of float, or of ndarray of the leading shape
        Each row equals the 1-D call on that row, bit for bit.

    Examples
    --------
    >>> import numpy as np, cdfast
    >>> shapes = np.stack([cdfast.schedules.linear(1000), cdfast.schedules.cosine(1000)])
    >>> a, b = cdfast.bound_terms(0.01 * shapes)
    >>> a.shape, bool(a[1] == cdfast.bound_terms(0.01 * shapes[1])[0])
    ((2,), True)

    Notes
    -----
    Eq. (2.4) of Bu, Xu, Mao (2026), Defazio et al. (2023) Cor. 12, in the single-sum
    form of docs/math.md section 2.  O(T) time per row, O(1) extra memory; relative error
    below ~94 u (see the module docstring).
    """
    return _stacked.terms("last", lr, grad_sq, backend, "bound_terms")


def _constants(D: Any, G: Any, L_star: Any) -> tuple[Any, Any, Any]:
    return (_stacked.scalar(D, "D"), _stacked.scalar(G, "G"), _stacked.scalar(L_star, "L_star", nonneg=False))


def last_iterate_bound(
    lr: ArrayLike,
    D: float | ArrayLike = 1.0,
    G: float | ArrayLike = 1.0,
    L_star: float | ArrayLike = 0.0,
    grad_sq: ArrayLike | None = None,
    backend: str | None = None,
) -> float | FloatArray:
    """Bound on the loss of the last SGD iterate, eq. (2.4) at tau = T.

    Parameters
    ----------
    lr : array_like, shape (T,) or (..., T)
        Learning rates eta_1 .. eta_T; finite, >= 0, last one > 0.  Leading axes stack
        schedules (NumPy's stacked-array convention); a ``dask.array`` chunked along
        them gives a lazy result.
    D : float or array_like
        Distance ||w_0 - w_*|| (>= 0); an array broadcasts against the leading shape.
    G : float or array_like
        Gradient bound, E||g||^2 <= G^2 (>= 0); multiplies ``grad_sq`` if given.
    L_star : float or array_like
        The optimal loss L_*.
    grad_sq : array_like, shape (T,) or (..., T), optional
        Per-step G_t^2 replacing the constant G^2 (then G scales them).
    backend : {None, "auto", "numba", "c"}

    Returns
    -------
    float, or ndarray of the broadcast leading shape
        Each entry equals the 1-D call on that row, bit for bit.

    Raises
    ------
    ValueError
        NaN, inf or negative entries (named by index: ``lr[1523]``, or row and step,
        ``lr[3, 1523]``), a wrong-length ``grad_sq``, an all-zero ``lr``, or a final LR
        of 0 (which makes the bound infinite).
    TypeError
        Non-numeric input.

    Examples
    --------
    >>> import cdfast
    >>> lr = 0.01 * cdfast.schedules.linear(1000)
    >>> round(cdfast.last_iterate_bound(lr, D=1.0, G=1.0), 6)
    0.10997
    >>> cdfast.last_iterate_bound([lr, 2 * lr], D=1.0, G=1.0).round(6)
    array([0.10997, 0.07009])

    Notes
    -----
    Eq. (2.4): ``L_* + D^2/(2 P_T) + (1/2)[eta_T G_T^2 + sum_{j<T} eta_j^2 G_j^2/(P_T - P_j)]``.
    """
    D, G, L_star = _constants(D, G, L_star)
    a, b = _stacked.terms("last", lr, grad_sq, backend, "last_iterate_bound")
    return _stacked.combine(a, b, D, G, L_star)


def average_iterate_bound(
    lr: ArrayLike,
    D: float | ArrayLike = 1.0,
    G: float | ArrayLike = 1.0,
    L_star: float | ArrayLike = 0.0,
    grad_sq: ArrayLike | None = None,
    backend: str | None = None,
) -> float | FloatArray:
    """Bound on the loss of the averaged iterate, eq. (2.3).

    ``L_* + D^2/(2 P_T) + G^2 sum_t eta_t^2 G_t^2 / (2 P_T)``.  Arguments (including
    stacked (..., T) input) as in :func:`last_iterate_bound`; a final LR of 0 is
    allowed here (the bound stays finite as long as some LR is positive).

    Notes
    -----
    Eq. (2.3) of Bu, Xu, Mao (2026).  One forward pass, compensated sums.
    """
    D, G, L_star = _constants(D, G, L_star)
    a, b = _stacked.terms("average", lr, grad_sq, backend, "average_iterate_bound")
    return _stacked.combine(a, b, D, G, L_star)


__all__ = ["bound_terms", "last_iterate_bound", "average_iterate_bound"]
