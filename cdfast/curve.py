"""The whole loss-bound curve: eq. (2.4) at every iteration tau (Generalization 1).

A learning-rate sequence in, a bound sequence out (or, for ``lr`` of shape (..., T),
one curve per row, each equal to the 1-D call bit for bit).  ``method="exact"`` runs
the single-pass kernel of cdfast.bounds once per requested tau (O(T * len(at)), the
taus dealt out to threads largest first).  ``method="fast"`` evaluates the causal
Cauchy sum

    b_tau = (1/2) [eta_tau G_tau^2 + sum_{j<tau} w_j K(P_tau - P_j)],  K(x) = 1/x,

with K replaced by a sum of exponentials K~(x) = sum_m c_m exp(-u_m x) of uniform
relative error on the range of gaps that occur, in O(T * M) time and O(T + M) memory.

Error bound of the fast method (u = 2^-53, M nodes)
---------------------------------------------------
Kernel.  1/x = int exp(s - e^s x) ds.  The trapezoid rule with step h over all s_k =
s_0 + k h has relative error <= 2 sum_{n>=1} |Gamma(1 + 2 pi i n / h)| (Poisson
summation; |Gamma(1 + iy)|^2 = pi y / sinh(pi y)), uniformly in x > 0.  Dropping the
nodes below s_0 costs at most e^{s_0} x_max, dropping those above s_{M-1} at most
exp(-e^{s_{M-1}} x_min) (relative, for x in [x_min, x_max]).  The gaps that enter a
finite b_tau lie in [x_min, x_max] = [smallest positive LR, P_T].  The lowest nodes
(u x_max <= delta, some 100 of them at rtol = 1e-12) see only smooth functions
exp(-u x) on that range; they are replaced by the n-point Gauss rule of their own
discrete measure (positive nodes and weights), whose relative error is at most
4 delta h / (1 - e^{-h}) (delta / 4)^{2n} / (2n)! (Gauss remainder with the monic
Chebyshev polynomial on [0, delta / x_max]).  h, s_0, s_{M-1}, delta and n are chosen
so that these four errors sum to at most rtol / 2 (:func:`_design_nodes`).  Because
every c_m > 0 and every w_j >= 0, the uniform relative error of K~ bounds the
relative error of the whole sum.

Arithmetic.  Per node the kernel keeps an anchor (see cdfast/_kernels/_numba_curve.py): a
contribution whose total decay is y = u_m (P_tau - P_j) is rounded through at most
y / REBASE + 2 anchors; each contributes <= 6 u (exp by a polynomial, <= 3 u; two
products; a compensated sum) plus an exponent error <= 3 u times the decay it applies
(compensated distance, product with u_m, rounded node), and its entry factor 1/E adds
<= 3 u REBASE + 4 u.  Factors with u_m d > CUTOFF = 50 are set to 0, dropping relative
weight < exp(-48) (0.01 u).  With REBASE = 2 a contribution's relative error is
<= (6 y + 30) u.  Weighted by the kernel (trapezoid nodes: sum_m c_m y_m e^{-y_m}
<= 1.01 / x; Gauss nodes: y <= delta <= 4), the average over nodes is <= 54 u; the
sum over M nodes adds (M - 1) u, the final (1/2)(eta_tau G_tau^2 + .) 2 u and the
computed Gauss rule a few u.  So the arithmetic error is <= (M + 70) u, and the
design refuses an rtol for which (M + 70) u > rtol / 2.  Total: every finite entry of
``b`` has relative error <= rtol; ``a`` (a compensated prefix sum) <= 3 u.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import eigh_tridiagonal
from scipy.optimize import brentq

from ._kernels import _stacked, _threads
from . import _validate as V
from ._kernels._backends import OK, get_backend

log = logging.getLogger("cdfast")

FloatArray = NDArray[np.float64]
METHODS = ("auto", "exact", "fast")
RTOL_MIN = 1e-13  # below this the arithmetic error (M + 70) u no longer fits in rtol / 2
RTOL_MAX = 1e-2
# method="auto" runs the exact method while its work sum(at) (element-steps) is below
# this: a few tens of milliseconds on one core.
AUTO_EXACT_WORK = 3e7
# ... and also when sum(at) is below this many times (nodes * at[-1]), the fast
# method's node-steps (one costs a few exact element-steps; bench/bench_curve.py).
FAST_NODE_STEP_COST = 4.0
_U = 2.0**-53
MAX_NODES = 2048  # two groups of CDFAST_CURVE_MAX_NODES (csrc/cdfast.h)
# Work (element-steps, or node-steps for the fast method) from which a curve is split
# over threads; below it, or when other work keeps the cores busy (cdfast._kernels._threads), it
# runs on the calling thread.  The result is the same either way.
PARALLEL_WORK = 1 << 17


def _alias_error(h: float) -> float:
    """2 sum_{n>=1} |Gamma(1 + 2 pi i n / h)|: the trapezoid rule's relative error on 1/x."""
    y = 2.0 * math.pi * np.arange(1, 64) / h
    z = math.pi * y
    log_sinh = z + np.log1p(-np.exp(-2.0 * z)) - math.log(2.0)
    return float(2.0 * np.sum(np.exp(0.5 * (np.log(z) - log_sinh))))


def _gauss_rule(t: np.ndarray, wt: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n-point Gauss rule of the discrete measure sum_k wt_k delta(t_k) (wt > 0).

    Lanczos on diag(t) from sqrt(wt), with full reorthogonalisation (stable for a
    discrete measure), then Golub-Welsch: nodes are the eigenvalues of the Jacobi
    matrix, weights nu_0 times the squared first eigenvector components.
    """
    scale = float(t.max())
    x = t / scale
    nu0 = float(math.fsum(wt))
    q = np.sqrt(wt / nu0)
    basis = [q]
    alpha = np.empty(n)
    beta = np.empty(max(n - 1, 0))
    for k in range(n):
        v = x * basis[k]
        alpha[k] = basis[k] @ v
        for b in basis:  # twice is enough (Kahan: "twice is enough")
            v -= (b @ v) * b
        for b in basis:
            v -= (b @ v) * b
        if k + 1 < n:
            beta[k] = np.linalg.norm(v)
            basis.append(v / beta[k])
    nodes, vecs = eigh_tridiagonal(alpha, beta)
    return nodes * scale, nu0 * vecs[0] ** 2


def _gauss_error(n: int, delta: float, h: float) -> float:
    """Relative error bound of an n-point Gauss rule replacing the trapezoid nodes
    u <= U = delta / x_max: |f^(2n)| / (2n)! * int pi_n^2 dnu with f = exp(-t x),
    int pi_n^2 dnu <= 4 (U/4)^(2n) nu_0 (monic Chebyshev) and nu_0 x <= delta h / (1 - e^-h)."""
    return 4.0 * delta * h / -math.expm1(-h) * math.exp(2 * n * math.log(delta / 4.0) - math.lgamma(2 * n + 1))


def _design_nodes(x_min: float, x_max: float, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes u_m (increasing) and weights c_m > 0 with |x sum_m c_m exp(-u_m x) - 1|
    <= rtol / 2 for x in [x_min, x_max].

    Budget (eps = rtol / 2): trapezoid aliasing eps / 2, upper tail eps / 4, lower
    tail eps / 8, Gauss compression of the lowest nodes eps / 8.  The trapezoid nodes
    with u x_max <= delta (about log(1/eps) / h of them: their exp(-u x) are smooth on
    the whole range) are replaced by the n-point Gauss rule of their own discrete
    measure, n chosen from :func:`_gauss_error`; delta in {1, 2, 4} minimises M.
    """
    eps = rtol / 2.0
    h = brentq(lambda step: math.log(_alias_error(step)) - math.log(eps / 2.0), 0.02, 4.0, xtol=1e-12)
    s_lo = math.log((eps / 8.0) / x_max)  # e^{s_0} x_max <= eps / 8
    s_hi = math.log(max(math.log(4.0 / eps), 1.0) / x_min)  # exp(-e^{s_top} x_min) <= eps / 4
    # u_m, c_m and u_m * x must all be normal floats (the top node is below s_hi + h)
    if not (-700.0 < s_lo and s_hi + h + max(math.log(h), math.log(x_max)) < 700.0):
        raise ValueError(
            f"the learning rates span [{x_min!r}, {x_max!r}], too wide a range for "
            "method='fast' in double precision; use method='exact' or rescale lr"
        )
    M = int(math.ceil((s_hi - s_lo) / h)) + 1
    u = np.exp(s_lo + h * np.arange(M))
    c = h * u
    best = (u, c)
    for delta in (1.0, 2.0, 4.0):
        n = 1
        while _gauss_error(n, delta, h) > eps / 8.0:
            n += 1
        low = int(np.searchsorted(u, delta / x_max, side="right"))
        if low <= n + 1:  # nothing to gain
            continue
        gu, gc = _gauss_rule(u[:low], c[:low], n)
        if not (np.all(gu > 0.0) and np.all(gc > 0.0)):
            continue
        cand = (np.concatenate([gu, u[low:]]), np.concatenate([gc, c[low:]]))
        if cand[0].shape[0] < best[0].shape[0]:
            best = cand
    u, c = best
    M = u.shape[0]
    if M > MAX_NODES or (M + 70) * _U > rtol / 2.0:
        raise ValueError(
            f"rtol = {rtol!r} is too small for method='fast' on this schedule ({M} nodes: "
            f"arithmetic error up to {(M + 70) * _U:.1e}); use rtol >= {2 * (M + 70) * _U:.1e} "
            "or method='exact'"
        )
    return np.ascontiguousarray(u), np.ascontiguousarray(c)


def _fast_nodes_for(x: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes for the whole of ``x`` (so that ``at`` picks entries of the full curve)."""
    positive = x[x > 0.0]
    if positive.size == 0:  # every entry is +inf; any nodes will do
        return np.ones(1), np.ones(1)
    with np.errstate(over="ignore"):
        total = float(np.sum(x))
    if not math.isfinite(total):
        V.raise_for_values({"lr": x})
    x_min = float(positive.min())
    # every gap P_tau - P_j is <= P_T; the margin covers the rounding of np.sum
    return _design_nodes(x_min, max(total * (1.0 + 1e-9), x_min), rtol)


def _check_at(at: ArrayLike | None, T: int) -> np.ndarray:
    if at is None:
        return np.arange(1, T + 1, dtype=np.int64)
    return V.as_steps(at, "at", T)


def _curve_sizes(arguments: dict, T: int) -> dict:
    at = arguments.get("at")
    return {"k": T if at is None else int(np.size(at))}


@_stacked.stacked("(t)->(k),(k)", sizes=_curve_sizes)
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

    Parameters
    ----------
    lr : array_like, shape (T,) or (..., T)
        Learning rates eta_1 .. eta_T (``lr[..., i] = eta_{i+1}``), finite and >= 0.
        Leading axes stack schedules (each row computed as the 1-D call, bit for
        bit); a ``dask.array`` chunked along them gives lazy results.
    grad_sq : array_like, shape (T,) or (..., T), optional
        Per-step G_t^2 (Schaipp et al. 2025), broadcasting against ``lr``.
    at : array_like of int, optional
        Sorted, strictly increasing 1-based iterations, shared by every row; None
        means 1..T.
    method : {"auto", "exact", "fast"}
        "exact": one O(tau) backward pass per requested tau (O(T * len(at))), the
        reference.  "fast": an exponential-sum evaluation in O(at[-1] * M) time and
        O(T + M) memory, M = O((log(P_T / min eta) + log(1/rtol)) log(1/rtol)) nodes
        (a few hundred); every finite entry of ``b`` has relative error <= ``rtol``
        and ``a`` a few ulp (module docstring).  "auto": exact while sum(at) <
        3e7 element-steps or below 4 * M * at[-1] (a few taus of a long run), else
        fast (exact if fast cannot meet ``rtol``).
    rtol : float
        Relative error guaranteed by the fast method, in [1e-13, 1e-2].
    backend : {None, "auto", "numba", "c"}

    Returns
    -------
    (a, b) : tuple of ndarray, shape (..., len(at))

    Notes
    -----
    Eq. (2.4) at every tau, in the single-sum form of docs/math.md section 2; the fast
    method's error bound is derived in the module docstring.
    """
    x = V.as_vector(lr, "lr")
    g = V.check_grad_sq(grad_sq, x.shape[0])
    V.check_values(x, "lr")
    if g is not None:
        V.check_values(g, "grad_sq")
    taus = _check_at(at, x.shape[0])
    if method not in METHODS:
        raise ValueError(f"method = {method!r} is not one of {METHODS}")
    rtol = V.check_scalar(rtol, "rtol")
    if not RTOL_MIN <= rtol <= RTOL_MAX:
        raise ValueError(f"rtol = {rtol!r} is outside [{RTOL_MIN}, {RTOL_MAX}]; pick a relative tolerance in that range")
    be = get_backend(backend)
    a = np.empty(taus.shape[0])
    b = np.empty(taus.shape[0])
    if method == "auto":
        work = float(taus.sum())
        method = "exact" if work < AUTO_EXACT_WORK else "fast"
        if method == "fast":
            try:
                nodes = _fast_nodes_for(x, rtol)
            except ValueError as exc:  # fast cannot meet rtol here: exact always can
                log.info("cdfast: bound_curve uses the exact method (%s)", exc)
                method = "exact"
            else:  # a few taus of a long run: their exact passes are cheaper
                if work < FAST_NODE_STEP_COST * nodes[0].shape[0] * float(taus[-1]):
                    method = "exact"
    elif method == "fast":
        nodes = _fast_nodes_for(x, rtol)
    if method == "fast":
        if be.curve_fast is None:
            raise ValueError(f"backend {be.name!r} has no fast curve kernel; use method='exact'")
        # The kernel runs its first and second half of the nodes on two threads, each
        # half increasing in u.  Interleave so that both halves span the whole range:
        # the high nodes are idle at most steps, and one half should not hold them all.
        order = np.concatenate([np.arange(0, nodes[0].shape[0], 2), np.arange(1, nodes[0].shape[0], 2)])
        u, c = nodes[0][order], nodes[1][order]
        threads = _threads.available(2) if float(taus[-1]) * u.shape[0] >= PARALLEL_WORK else 1
        status = be.curve_fast(x, g, taus, u, c, a, b, np.empty(taus.shape[0]), threads=threads)
    else:
        threads = _threads.available(1 << 16) if float(taus.sum()) >= PARALLEL_WORK and taus.shape[0] > 1 else 1
        status = be.curve_exact(x, g, taus, a, b, threads=threads)
    if status != OK:
        V.raise_for_values({"lr": x, "grad_sq": g})
    return a, b


#: Relative error bound of ``b`` from :func:`curve_terms_moments` (csrc/curve.c: the truncation
#: (1 + r) r^8 / (1 - r), r = 1/8, plus the rounding of sums of positive terms over <= T steps)
MOMENTS_RTOL = 1e-7
_MOMENTS = 8  # moments per block (csrc/curve.c MOM_TERMS): the work array holds 1 + 8 doubles per block


def moment_block(last: int) -> int:
    """Block length of the moment method for steps up to ``last``: the power of two nearest
    ``0.4 sqrt(last)``, within 16..4096.  The steps summed term by term (about
    ``block / MOM_FAR`` per tau, a division each) balance the far blocks (``last / block``
    per tau, a Horner sum each) there: measured fastest on wsd schedules of 3k-400k steps
    (32, 64, 128, 256 steps at 3k, 25k, 100k, 400k)."""
    ideal = 0.4 * math.sqrt(max(int(last), 1))
    return int(min(4096, max(16, 2 ** round(math.log2(max(ideal, 1.0))))))


def curve_terms_moments(lr: np.ndarray, grad_sq: np.ndarray | None, at: np.ndarray,
                        backend: str | None = None, block: int | None = None) -> tuple[FloatArray, FloatArray]:
    """``(a, b)`` of eq. (2.4) at the steps ``at``, as :func:`bound_curve_terms`, with ``b`` to a
    relative ``MOMENTS_RTOL`` rather than to the last digits: the loss models' search surrogates
    (:meth:`cdfast.models.PowerBound.prepare`) need no more, and at a 25k-step run logged every
    200 steps it is several times faster than the exact passes (``bench/bench_curve.py``).

    Internal: ``lr`` (T,) or (R, T) rows of validated LRs, ``grad_sq`` None or (T,), ``at``
    validated increasing 1-based steps; csrc/curve.c (``cdfast_curve_moments``) gives the method
    and its error bound.  Where the bound is infinite (a zero LR at a requested step) ``b`` is
    ``+inf`` as in the exact method; a row the kernel finds not finite is computed by the exact
    method, which says why.  ``block`` overrides :func:`moment_block` (tests).
    """
    X = np.ascontiguousarray(lr, dtype=np.float64)
    rows = X.reshape(-1, X.shape[-1])
    g = None if grad_sq is None else np.ascontiguousarray(grad_sq, dtype=np.float64)
    at = np.ascontiguousarray(at, dtype=np.int64)
    be = get_backend(backend)
    m = at.shape[0]
    a = np.empty((rows.shape[0], m))
    b = np.empty((rows.shape[0], m))
    if m == 0:
        return a.reshape(X.shape[:-1] + (0,)), b.reshape(X.shape[:-1] + (0,))
    blk = moment_block(int(at[-1])) if block is None else int(block)
    work = np.empty(-(-int(at[-1]) // blk) * (1 + _MOMENTS))
    for r in range(rows.shape[0]):
        status = be.curve_moments(rows[r], g, at, blk, a[r], b[r], work)
        if status != OK:  # infinite or invalid entries: the exact method's answer, or its error
            a[r], b[r] = bound_curve_terms(rows[r], g, at=at, method="exact", backend=backend)
    return a.reshape(X.shape[:-1] + (m,)), b.reshape(X.shape[:-1] + (m,))


@_stacked.stacked("(t)->(k)", scalars=("D", "G", "L_star"), sizes=_curve_sizes)
def bound_curve(
    lr: ArrayLike,
    D: float | ArrayLike = 1.0,
    G: float | ArrayLike = 1.0,
    L_star: float | ArrayLike = 0.0,
    grad_sq: ArrayLike | None = None,
    at: ArrayLike | None = None,
    method: str = "auto",
    rtol: float = 1e-12,
    backend: str | None = None,
) -> FloatArray:
    """The bound of eq. (2.4) at every tau = 1..T (or at the sorted 1-based ``at``).

    ``L_star + D**2 * a + G**2 * b`` with ``(a, b) = bound_curve_terms(...)``; see
    :func:`bound_curve_terms` for ``at``, ``method``, ``rtol``, the error bound and
    stacked (..., T) input (result (..., len(at)); ``D``, ``G``, ``L_star`` may be
    arrays broadcasting against the leading shape).
    Entries where the bound is infinite (eta_tau == 0 after a positive LR, or
    P_tau == 0), or exceeds the float64 range (subnormal LRs), are ``+inf``, without
    warnings.

    Examples
    --------
    >>> import cdfast
    >>> lr = 1e-3 * cdfast.schedules.wsd(100_000)
    >>> curve = cdfast.bound_curve(lr, D=1.0, G=1.0, method="fast", rtol=1e-10)
    >>> bool(abs(curve[-1] / cdfast.last_iterate_bound(lr) - 1) < 1e-10)
    True

    Notes
    -----
    Eq. (2.4) of Bu, Xu, Mao (2026) at every tau (Generalization 1, eq. 3.1, uses it
    with fitted constants).
    """
    D = V.check_scalar(D, "D")
    G = V.check_scalar(G, "G")
    L_star = V.check_scalar(L_star, "L_star", nonneg=False)
    a, b = bound_curve_terms(lr, grad_sq, at, method, rtol, backend)
    with np.errstate(invalid="ignore", over="ignore"):
        out = L_star + D * D * a + G * G * b
    # inf is the bound's own value where a or b is; elsewhere it is D or G overflowing
    over = ~np.isfinite(out) & np.isfinite(a) & np.isfinite(b)
    if over.any():
        i = int(np.argmax(over))
        name, v = ("D", D) if not math.isfinite(D * D * a[i]) else ("G", G)
        raise ValueError(f"the bound overflows float64 at entry {i}: {name} = {v!r} is too large for double "
                         f"precision (bound = L_star + D^2 a + G^2 b); rescale the losses")
    return out
