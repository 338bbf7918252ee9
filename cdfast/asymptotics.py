"""What a schedule is worth before anyone trains with it (paper Sections 2.2-2.4).

For a schedule shape ``s`` (``lr = eta_peak * s``) the last-iterate bound of eq. (2.4)
is exactly ``L_* + D^2 a / eta_peak + G^2 b eta_peak`` with ``(a, b) = bound_terms(s)``.
Everything here follows from that identity:

* :func:`optimal_peak_lr`, :func:`bound_vs_peak_lr`: the bound as a function of the
  peak LR and its minimiser (closed form).
* :func:`asymptotic_constants`: the constants ``q1^2, q2^2`` of eq. (2.5), exactly at a
  horizon T (``q1^2 = T a``, ``q2^2 = b``) or as T -> infinity from the continuous
  integrals ``q1^2 = 1 / (2 int_0^1 s)``, ``q2^2 = (1/2) int_0^1 s(x)^2 / int_x^1 s``.
* :func:`table1`: the paper's Table 1, computed.
* :func:`Q`, :func:`optimal_eta_ref`: Corollary 2.4.
* :func:`qualifying_exam`: the training-free test of Condition 2.5.

A schedule is given as a family name from :data:`cdfast.schedules.FAMILIES` (with its
parameters), as a callable ``s(x)`` on [0, 1] (discretised as ``s_t(T) = s(t / T)``,
t = 0 .. T-1, the paper's convention), or as a callable ``T -> array`` of length T.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import integrate, optimize

from . import _validate as V
from . import schedules as S
from .bounds import bound_terms

FloatArray = NDArray[np.float64]
Kind = Literal["auto", "continuous", "family"]
Schedule = str | Callable[..., Any]

#: Default horizons of the qualifying exam: 10^3 .. 10^7, two points per decade.
EXAM_T = np.round(np.logspace(3, 7, 9)).astype(np.int64)

# Growth classification of a sequence z(T) on a geometric grid of T (see _classify).
_FLAT_RTOL = 1e-4  # |dz / d ln T| below this fraction of z counts as converged
_SHRINK = 0.7  # increments shrinking faster than this per grid step: converging
_MIN_POWER = 0.1  # fitted exponent above this: power growth rather than log


# ---------------------------------------------------------------------------
# Peak learning rate (eq. 2.4 as a function of eta_peak)


def _positive(value: Any, name: str) -> float:
    v = V.check_scalar(value, name)
    if v == 0.0:
        raise ValueError(f"{name} = 0 makes the optimal peak LR degenerate (0 or infinite); pass {name} > 0")
    return v


def optimal_peak_lr(
    shape: ArrayLike,
    D: float | ArrayLike = 1.0,
    G: float | ArrayLike = 1.0,
    grad_sq: ArrayLike | None = None,
    L_star: float | ArrayLike = 0.0,
    backend: str | None = None,
) -> tuple[float, float] | tuple[FloatArray, FloatArray]:
    """Peak learning rate minimising the last-iterate bound, and the minimal bound.

    Parameters
    ----------
    shape : array_like, shape (T,) or (..., T)
        Schedule shape ``s`` (``lr = eta_peak * s``), finite, >= 0, last entry > 0.
        Leading axes stack shapes (one answer each); a ``dask.array`` chunked along
        them gives lazy results.
    D, G : float or array_like
        Distance to the optimum and gradient bound, both > 0; arrays broadcast
        against the leading shape.
    grad_sq : array_like, shape (T,) or (..., T), optional
        Per-step G_t^2 (then G scales them), as in :func:`cdfast.bound_terms`.
    L_star : float or array_like
        Optimal loss, added to the bound.
    backend : {None, "auto", "numba", "c"}

    Returns
    -------
    (eta_peak, bound) : tuple of float, or of ndarray of the leading shape
        ``eta_peak = (D / G) sqrt(a / b)`` and ``bound = L_* + 2 D G sqrt(a b)``;
        each row equals the 1-D call bit for bit.

    Notes
    -----
    With ``(a, b) = bound_terms(shape)``, eq. (2.4) for ``lr = eta * shape`` is
    ``L_* + D^2 a / eta + G^2 b eta`` (docs/math.md section 2), a convex function of
    ``eta > 0`` minimised in closed form.  For a qualified schedule this is the
    paper's eq. (2.5) optimum ``eta* = q1 / (q2 sqrt(T))``, ``L_* + 2 q1 q2 / sqrt(T)``.
    """
    from ._kernels import _stacked

    D = _stacked.scalar(D, "D", positive=True)
    G = _stacked.scalar(G, "G", positive=True)
    L_star = _stacked.scalar(L_star, "L_star", nonneg=False)
    a, b = bound_terms(shape, grad_sq, backend)
    if all(np.ndim(v) == 0 and not _stacked.is_dask(v) for v in (a, b, D, G, L_star)):
        return (D / G) * math.sqrt(a / b), L_star + 2.0 * D * G * math.sqrt(a * b)
    if any(_stacked.is_dask(v) for v in (a, b, D, G, L_star)):
        import dask.array as da

        return (D / G) * da.sqrt(a / b), L_star + 2.0 * D * G * da.sqrt(a * b)
    return (np.asarray((D / G) * np.sqrt(a / b), dtype=np.float64),
            np.asarray(L_star + 2.0 * D * G * np.sqrt(a * b), dtype=np.float64))


def bound_vs_peak_lr(
    shape: ArrayLike,
    peak_lrs: ArrayLike,
    D: float = 1.0,
    G: float = 1.0,
    L_star: float = 0.0,
    grad_sq: ArrayLike | None = None,
    backend: str | None = None,
) -> FloatArray:
    """The last-iterate bound of ``eta * shape`` for every ``eta`` in ``peak_lrs``.

    One kernel pass, however many peak LRs: ``L_* + D^2 a / eta + G^2 b eta``.

    Parameters
    ----------
    shape : array_like, shape (T,)
        Schedule shape (finite, >= 0, last entry > 0).
    peak_lrs : array_like, shape (n,)
        Peak learning rates, finite and > 0.
    D, G, L_star, grad_sq, backend
        As in :func:`cdfast.last_iterate_bound`.

    Returns
    -------
    ndarray, shape (n,)

    Notes
    -----
    Eq. (2.4) with the scaling ``a(eta s) = a(s) / eta``, ``b(eta s) = eta b(s)``.
    """
    etas = V.as_vector(peak_lrs, "peak_lrs")
    V.check_values(etas, "peak_lrs")
    if not etas.all():
        i = int(np.argmin(etas != 0))
        raise ValueError(f"peak_lrs[{i}] is 0, which makes the bound infinite; peak learning rates must be > 0")
    D = V.check_scalar(D, "D")
    G = V.check_scalar(G, "G")
    L_star = V.check_scalar(L_star, "L_star", nonneg=False)
    a, b = bound_terms(shape, grad_sq, backend)
    return L_star + (D * D * a) / etas + (G * G * b) * etas


# ---------------------------------------------------------------------------
# Schedules given by name or callable


def _check_shape_values(s: FloatArray, what: str) -> FloatArray:
    bad = ~np.isfinite(s) | (s < 0) | (s > 1.0 + 1e-9)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{what}[{i}] = {float(s[i])!r}; schedule shapes must be finite and lie in [0, 1] "
            "(the learning rate is eta_peak * s): fix the callable or divide it by its maximum"
        )
    return s


def _eval_x(fn: Callable, x: FloatArray, what: str) -> FloatArray:
    """``fn`` at the points ``x``: vectorised if it can be, else element by element."""
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(fn(x), dtype=np.float64)
    except Exception:  # a scalar-only callable (math.cos, ...): evaluate point by point
        out = None
    if out is None or out.shape != x.shape:
        try:
            out = np.array([float(fn(float(v))) for v in x])
        except Exception as exc:
            raise TypeError(f"{what} must map x in [0, 1] to a number; calling it failed: {exc}") from exc
    return _check_shape_values(out, what)


def _detect_kind(fn: Callable) -> str:
    """``continuous`` if ``fn(x_array)`` returns an array like x, ``family`` if ``fn(8)`` has
    length 8, else ``continuous`` if ``fn(0.5)`` is a number (a scalar-only s(x))."""
    x = np.linspace(0.0, 1.0, 5)
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = np.asarray(fn(x))
        if out.shape == x.shape:
            return "continuous"
    except Exception:
        pass
    try:
        out = np.asarray(fn(8))
        if out.shape == (8,):
            return "family"
    except Exception:
        pass
    try:  # a scalar-only s(x), e.g. built on math.sqrt
        if np.asarray(fn(0.5)).shape == ():
            return "continuous"
    except Exception:
        pass
    raise TypeError(
        "cannot tell what the schedule callable is: it neither maps an array of x in [0, 1] "
        "to an array of the same shape (a shape s(x)) nor maps T = 8 to a length-8 array "
        "(a family T -> s); pass kind='continuous' or kind='family'"
    )


@dataclass(frozen=True)
class _Resolved:
    """A schedule as both a discrete family and, when known, its continuous limit."""

    label: str
    discrete: Callable[[int], FloatArray]
    continuous: Callable | None  # s(x) on [0, 1], called at single points by the integrals


def _resolve(schedule: Schedule, kind: Kind = "auto", **params) -> _Resolved:
    if isinstance(schedule, str):
        fam = S.family(schedule, **params)  # raises for an unknown name or parameter
        try:
            cont = S.continuous(schedule, **params)
        except ValueError:  # inverse_sqrt: no horizon-free limit
            cont = None
        label = schedule + ("(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")" if params else "")
        return _Resolved(label, fam, cont)
    if not callable(schedule):
        raise TypeError(
            f"schedule must be a family name {sorted(S.FAMILIES)}, a callable s(x) on [0, 1] "
            f"or a callable T -> array, got {type(schedule).__name__}"
        )
    if params:
        raise TypeError(f"schedule parameters {sorted(params)} only apply to named families; bind them in the callable")
    if kind not in ("auto", "continuous", "family"):
        raise ValueError(f"kind = {kind!r} must be 'auto', 'continuous' (s(x) on [0, 1]) or 'family' (T -> array)")
    if kind == "auto":
        kind = _detect_kind(schedule)
    label = getattr(schedule, "__name__", "callable")
    if kind == "continuous":
        grid = lambda T: _eval_x(schedule, np.arange(T, dtype=np.float64) / T, "s(t/T)")  # noqa: E731
        return _Resolved(label, grid, schedule)

    def fam(T: int) -> FloatArray:
        s = np.asarray(schedule(T))
        if s.shape != (T,):
            raise ValueError(f"the schedule family returned shape {s.shape} for T = {T}; it must return a length-T 1-D array")
        return _check_shape_values(V.as_vector(s, "schedule(T)"), f"schedule(T={T})")

    return _Resolved(label, fam, None)


def _discrete_terms(res: _Resolved, T: int) -> tuple[float, float, float]:
    """(T a, b, s[-1]) of the unit-peak shape at horizon T."""
    s = res.discrete(T)
    if s[-1] == 0.0:
        raise ValueError(
            f"schedule {res.label} ends at 0 for T = {T}: a final LR of 0 makes eq. (2.4) infinite; "
            "end the decay above 0 (the paper's linear decay ends at eta_peak / T)"
        )
    a, b = bound_terms(s)
    return T * a, b, float(s[-1])


# ---------------------------------------------------------------------------
# Continuous integrals (T -> infinity)


@dataclass(frozen=True)
class _Integrals:
    q1_sq: float
    q2_sq: float  # inf when the integral diverges
    finite: bool
    log_rate: float  # d q2^2 / d ln(1/eps) of the truncated integral over the last decade


def _quad(f: Callable[[float], float], lo: float, hi: float, epsrel: float = 1e-10) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return integrate.quad(f, lo, hi, limit=200, epsabs=0.0, epsrel=epsrel)[0]


def _scalar(s: Callable) -> Callable[[float], float]:
    """``s`` at one point as a float, refusing NaN, inf and negative values."""

    def sx(x: float) -> float:
        v = float(np.asarray(s(x)).reshape(-1)[0])
        if not (0.0 <= v < math.inf):
            raise ValueError(f"s({x!r}) = {v!r}; schedule shapes must be finite and >= 0")
        return v

    return sx


def _continuous_integrals(s: Callable, decades: int = 8) -> _Integrals:
    """q1^2 = 1 / (2 int s), q2^2 = (1/2) int_0^1 s(x)^2 / R(x) dx with R(x) = int_x^1 s.

    R is a tail integral, never a difference: R at a fixed grid of knots (uniform on
    [0, 0.9], geometric in 1 - x towards 1) is a suffix sum of adaptive integrals
    over the knot intervals, and R(x) = int_x^{next knot} s + R(next knot), so each
    inner integral spans one short interval.  The outer integral runs over decades
    [1 - 10^-k, 1 - 10^-(k+1)] approaching x = 1, where s^2 / R may be singular:
    if the decade contributions shrink geometrically it converges (the remainder
    [1 - 10^-K, 1] is extrapolated); if they stay constant it diverges like a logarithm
    (a schedule that does not decay to 0: s^2 / R ~ s(1) / (1 - x)).
    """
    sx = _scalar(s)
    knots = np.concatenate([np.linspace(0.0, 0.9, 91)[:-1], 1.0 - np.logspace(-1.0, -decades - 1.0, 20 * decades + 1)])
    seg = np.array([_quad(sx, lo, hi) for lo, hi in zip(knots[:-1], knots[1:])] + [_quad(sx, knots[-1], 1.0)])
    tail = np.cumsum(seg[::-1])[::-1]  # tail[i] = int_{knots[i]}^1 s, all terms >= 0
    mass = float(tail[0])
    if not mass > 0.0:
        raise ValueError("the schedule s(x) integrates to 0 on [0, 1]; it needs positive learning rates")

    def R(x: float) -> float:
        k = int(np.searchsorted(knots, x, side="left"))
        if k == knots.shape[0]:
            return _quad(sx, x, 1.0)
        return (_quad(sx, x, knots[k]) if knots[k] > x else 0.0) + float(tail[k])

    def integrand(x: float) -> float:
        v = sx(x)
        if v == 0.0:
            return 0.0
        r = R(x)  # 0 only within rounding of x = 1, where the integrand's mass is negligible
        return v * v / r if r > 0.0 else 0.0

    edges = [0.0] + [1.0 - 10.0**-k for k in range(1, decades + 1)]
    pieces = np.array([_quad(integrand, lo, hi, 1e-9) for lo, hi in zip(edges[:-1], edges[1:])])
    last, prev = pieces[-1], pieces[-2]
    finite = last == 0.0 or (prev > 0.0 and last / prev < _SHRINK)
    # Remainder [1 - 10^-K, 1]: geometric extrapolation of the decade contributions
    # (exact for integrands ~ (1 - x)^p near 1; quadrature there would only see
    # rounding noise in 1 - x).
    ratio = last / prev if prev > 0.0 else 0.0
    total = pieces.sum() + last * ratio / (1.0 - ratio)
    return _Integrals(
        q1_sq=1.0 / (2.0 * mass),
        q2_sq=0.5 * float(total) if finite else math.inf,
        finite=bool(finite),
        log_rate=0.5 * float(last) / math.log(10.0),
    )


# ---------------------------------------------------------------------------
# Asymptotic constants and Table 1


def asymptotic_constants(
    schedule: Schedule,
    T: int | None = None,
    *,
    kind: Kind = "auto",
    **params,
) -> tuple[float, float]:
    """The constants ``(q1^2, q2^2)`` of eq. (2.5), per unit D^2 and G^2.

    Parameters
    ----------
    schedule : str or callable
        A family name (``"linear"``, ``"cosine"``, ``"wsd"``, ``"constant"``,
        ``"inverse_sqrt"``) with its ``params`` (e.g. ``decay_frac=0.2``; the paper's
        WSD parameter is ``c = 1 - decay_frac``), a callable ``s(x)`` on [0, 1], or
        (with ``T``) a callable ``T -> array``.
    T : int, optional
        Horizon.  Given: exact discrete values at T, ``q1^2 = T a``, ``q2^2 = b`` with
        ``(a, b) = bound_terms(s_T)`` for the unit-peak shape, so that
        ``bound = L_* + D^2 q1^2 / (T eta) + G^2 q2^2 eta`` holds exactly.  None: the
        T -> infinity limits from the continuous integrals.
    kind : {"auto", "continuous", "family"}
        How to read a callable: ``"continuous"`` is ``s(x)`` on [0, 1] (discretised as
        ``s(t / T)``), ``"family"`` is ``T -> array``.  ``"auto"`` calls it with an array
        of x values and takes it for ``s(x)`` if an array of the same shape comes
        back, else for a family if ``T = 8`` gives a length-8 array.

    Returns
    -------
    (q1_sq, q2_sq) : tuple of float
        ``q2_sq`` is ``inf`` when the continuous integral diverges (a schedule that
        does not decay to 0, such as ``"constant"``, whose discrete ``q2^2`` grows
        like ``ln(T) / 2``).

    Notes
    -----
    Eq. (2.5) and Table 1 of Bu, Xu, Mao (2026); docs/math.md section 3.  Continuous form:
    ``q1^2 = 1 / (2 int_0^1 s)``, ``q2^2 = (1/2) int_0^1 s(x)^2 / (int_x^1 s(y) dy) dx``
    by scipy.integrate.quad, the inner integral taken as a tail (no cancellation),
    the outer split into decades towards the integrable singularity at x = 1.
    """
    res = _resolve(schedule, kind, **params)
    if T is not None:
        T = S._check_T(T)
        q1, q2, _ = _discrete_terms(res, T)
        return q1, q2
    if res.continuous is None:
        raise ValueError(
            f"schedule {res.label} has no horizon-free continuous limit s(x); pass a horizon T "
            "for the exact discrete constants"
        )
    out = _integrals(schedule, res, params)
    return out.q1_sq, out.q2_sq


@functools.lru_cache(maxsize=64)
def _named_integrals(name: str, params: tuple) -> _Integrals:
    return _continuous_integrals(S.continuous(name, **dict(params)))


def _integrals(schedule: Schedule, res: _Resolved, params: dict) -> _Integrals:
    """The continuous integrals; a named family's are computed once per parameter set (Q, sweeps)."""
    if isinstance(schedule, str):
        try:
            return _named_integrals(schedule, tuple(sorted(params.items())))
        except TypeError:  # an unhashable parameter value: no caching
            pass
    return _continuous_integrals(res.continuous)


@dataclass(frozen=True)
class Table1Row:
    """One row of Table 1: ``bound = L_* + D^2 q1_sq / (T eta) + G^2 q2_sq eta`` at horizon T.

    ``q1_sq, q2_sq`` are exact at ``T`` (so :meth:`eta_peak` and :meth:`bound` are the
    exact optimum of eq. (2.4) for this schedule at T); ``q1_sq_limit, q2_sq_limit``
    are the T -> infinity integrals (``inf`` when divergent, None without a continuous
    limit).  ``qualified`` says whether the limit is finite (Condition 2.5).
    """

    schedule: str
    params: dict
    T: int
    q1_sq: float
    q2_sq: float
    q1_sq_limit: float | None
    q2_sq_limit: float | None
    qualified: bool

    def eta_peak(self, D: float = 1.0, G: float = 1.0) -> float:
        """Optimal peak LR ``(D / G) sqrt(q1^2 / (T q2^2))``."""
        return (D / G) * math.sqrt(self.q1_sq / (self.T * self.q2_sq))

    def bound(self, D: float = 1.0, G: float = 1.0, L_star: float = 0.0) -> float:
        """Optimal bound ``L_* + 2 D G sqrt(q1^2 q2^2 / T)``."""
        return L_star + 2.0 * D * G * math.sqrt(self.q1_sq * self.q2_sq / self.T)

    def expression(self) -> str:
        """The row's bound as text, e.g. ``L* + 1.000 D^2/(T eta) + 1.061 G^2 eta``."""
        return f"L* + {self.q1_sq:.4g} D^2/(T eta) + {self.q2_sq:.4g} G^2 eta"


#: The schedules of Table 1: (label, family name, parameters).  WSD's c = 1 - decay_frac.
TABLE1_SCHEDULES: tuple[tuple[str, str, dict], ...] = (
    ("linear", "linear", {}),
    ("cosine", "cosine", {}),
    ("wsd(c=0.5)", "wsd", {"decay_frac": 0.5}),
    ("wsd(c=0.8)", "wsd", {"decay_frac": 0.2}),
    ("wsd(c=0.9)", "wsd", {"decay_frac": 0.1}),
    ("constant", "constant", {}),
    ("inverse_sqrt", "inverse_sqrt", {}),
)


def table1(T: int = 10**6, continuous: bool = True) -> list[Table1Row]:
    """The paper's Table 1, computed: one :class:`Table1Row` per schedule.

    Parameters
    ----------
    T : int
        Horizon of the exact discrete constants (default 10^6).
    continuous : bool
        Also compute the T -> infinity integrals (a few hundred ms).

    Returns
    -------
    list of Table1Row
        Linear, cosine, WSD with c in {0.5, 0.8, 0.9}, constant, inverse square root.
        ``row.eta_peak(D, G)`` and ``row.bound(D, G, L_star)`` give the optimal peak
        LR and bound at T; see :meth:`Table1Row.expression`.

    Notes
    -----
    Table 1 and eq. (2.5) of Bu, Xu, Mao (2026).  At T = 10^6 the rows read
    linear (1, 1), cosine (1, 1.061), WSD (1/(1+c), 1 + ln((1+c)/(1-c))/2),
    constant (1/2, ~ ln(T)/2 + 0.79); inverse square root has ``q1^2 ~ sqrt(T)/4``.
    """
    T = S._check_T(T)
    rows = []
    for label, name, params in TABLE1_SCHEDULES:
        q1, q2 = asymptotic_constants(name, T, **params)
        lim1 = lim2 = None
        qualified = False
        if continuous and name != "inverse_sqrt":
            lim1, lim2 = asymptotic_constants(name, **params)
            qualified = math.isfinite(lim2)
        elif name in ("linear", "cosine", "wsd"):
            qualified = True
        rows.append(Table1Row(label, dict(params), T, q1, q2, lim1, lim2, qualified))
    return rows


# ---------------------------------------------------------------------------
# Corollary 2.4


def _qualified_constants(schedule: Schedule, T: int | None, kind: Kind, params: dict) -> tuple[float, float]:
    q1, q2 = asymptotic_constants(schedule, T, kind=kind, **params)
    if not math.isfinite(q2):
        raise ValueError(
            f"schedule {schedule!r} is not qualified: q2^2 = int s^2 / int_x^1 s diverges, so Q grows "
            "with T; pass a horizon T for the constants at that T, or use a schedule that decays to 0"
        )
    return q1, q2


def Q(
    eta_ref: ArrayLike,
    schedule: Schedule,
    D: float = 1.0,
    G: float = 1.0,
    T: int | None = None,
    *,
    kind: Kind = "auto",
    **params,
) -> float | FloatArray:
    """``Q(eta_ref) = D^2 q1^2 / eta_ref + G^2 q2^2 eta_ref`` of Corollary 2.4.

    With ``eta_peak = eta_ref / sqrt(T)`` a qualified schedule gets
    ``L - L_* ~ Q(eta_ref) / sqrt(T)``.  ``eta_ref`` may be a scalar or an array (> 0).
    The constants are the continuous limits, or exact at ``T`` if given (then
    ``Q / sqrt(T)`` is exactly eq. (2.4) minus L_*).  Other arguments as in
    :func:`asymptotic_constants`.

    Notes
    -----
    Corollary 2.4 of Bu, Xu, Mao (2026); docs/math.md section 3.
    """
    D = V.check_scalar(D, "D")
    G = V.check_scalar(G, "G")
    e = np.asarray(eta_ref, dtype=np.float64)
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError(f"eta_ref = {eta_ref!r} must be finite and > 0 (eta_peak = eta_ref / sqrt(T))")
    q1, q2 = _qualified_constants(schedule, T, kind, params)
    out = D * D * q1 / e + G * G * q2 * e
    return float(out) if out.ndim == 0 else out


def optimal_eta_ref(
    schedule: Schedule,
    D: float = 1.0,
    G: float = 1.0,
    T: int | None = None,
    *,
    kind: Kind = "auto",
    **params,
) -> tuple[float, float]:
    """The minimiser of :func:`Q` and the minimum: ``(D q1 / (G q2), 2 D G q1 q2)``.

    Notes
    -----
    Corollary 2.4 of Bu, Xu, Mao (2026): ``eta_ref* = q1 / q2`` (per unit D, G), so the
    optimal peak LR is ``eta_ref* / sqrt(T)`` and the bound ``L_* + 2 q1 q2 / sqrt(T)``.
    """
    D = _positive(D, "D")
    G = _positive(G, "G")
    q1, q2 = _qualified_constants(schedule, T, kind, params)
    return (D / G) * math.sqrt(q1 / q2), 2.0 * D * G * math.sqrt(q1 * q2)


# ---------------------------------------------------------------------------
# The qualifying exam (Condition 2.5)


@dataclass(frozen=True)
class Growth:
    """How a sequence z(T) behaves on a geometric grid of T.

    ``kind`` is ``"bounded"`` (``limit`` = last value), ``"log"`` (``z ~ offset + coef ln T``)
    or ``"power"`` (``z ~ offset + coef T^exponent``).
    """

    kind: str
    coef: float = 0.0
    exponent: float = 0.0
    offset: float = 0.0
    limit: float = math.inf

    def describe(self) -> str:
        if self.kind == "bounded":
            return f"stays bounded (~{self.limit:.4g})"
        if self.kind == "log":
            return f"grows like {self.coef:.2g} ln T"
        return f"grows like {self.coef:.2g} T^{self.exponent:.2f}"


def _classify(T: NDArray[np.int64], z: FloatArray) -> Growth:
    """Bounded, logarithmic or power growth of z(T), from its increments per unit ln T.

    Bounded: the last increment is negative (a positive sequence decreasing to its
    limit), below ``_FLAT_RTOL * z``, or shrinking geometrically.  Otherwise the
    increments are near constant (log) or growing (power); the parameters are
    least-squares fits over the last five points.
    """
    lnT = np.log(T.astype(np.float64))
    d = np.diff(z) / np.diff(lnT)
    if d[-1] <= _FLAT_RTOL * abs(z[-1]) or (d[-2] > 0 and d[-1] / d[-2] < _SHRINK):
        return Growth("bounded", limit=float(z[-1]))
    x, y = lnT[-5:], z[-5:]
    # Exponent implied by the last two increments; a non-positive earlier increment
    # (discretisation noise at small T) gives no evidence of a power.
    p_hat = math.log(d[-1] / d[-2]) / (lnT[-1] - lnT[-2]) if d[-2] > 0 else 0.0
    if p_hat <= _MIN_POWER:
        (offset, coef), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(x), x]), y, rcond=None)
        return Growth("log", coef=float(coef), offset=float(offset))

    def fit(p: float) -> tuple[float, np.ndarray]:
        A = np.column_stack([np.ones_like(x), np.exp(p * (x - x[-1]))])  # scaled for conditioning
        c, *_ = np.linalg.lstsq(A, y, rcond=None)
        return float(np.sum((A @ c - y) ** 2)), c

    p = optimize.minimize_scalar(lambda p: fit(p)[0], bounds=(1e-3, 3.0), method="bounded").x
    offset, c = fit(p)[1]
    return Growth("power", coef=float(c * math.exp(-p * x[-1])), exponent=float(p), offset=float(offset))


@dataclass(frozen=True, eq=False)
class ExamResult:
    """Outcome of :func:`qualifying_exam`.

    Attributes
    ----------
    qualified : bool
        Whether ``sqrt(T) * bound(eta_peak = 1/sqrt(T))`` stays bounded (Condition 2.5)
        and, where a continuous ``s(x)`` is known, its integral is finite.
    growth : str
        ``"bounded"``, ``"log"`` or ``"power"``: the growth of :attr:`values` in T.
    coef, exponent, offset : float
        Fitted growth, ``values ~ offset + coef ln T`` (log) or
        ``offset + coef T^exponent`` (power); 0 when bounded.
    limit : float
        For a bounded schedule, the value at the largest T (~ Q(1) = q1^2 + q2^2);
        ``inf`` otherwise.
    T : ndarray of int
        Horizons examined.
    values : ndarray
        ``sqrt(T) * bound`` at each T (D = G = 1, L_* = 0); equals ``q1_sq + q2_sq``.
    q1_sq, q2_sq : ndarray
        The two parts at each T: ``T a`` (grows when the LRs sum to less than ~T) and
        ``b`` (grows when the LR does not decay to 0).
    final_lr : float
        Last LR as a fraction of the peak, at the largest T.
    continuous_q1_sq, continuous_q2_sq : float or None
        The T -> infinity integrals (``q2`` is ``inf`` if divergent), None when the
        schedule has no continuous form.
    reason : str
        One line a person can read.
    """

    qualified: bool
    growth: str
    coef: float
    exponent: float
    offset: float
    limit: float
    T: NDArray[np.int64]
    values: FloatArray
    q1_sq: FloatArray
    q2_sq: FloatArray
    final_lr: float
    continuous_q1_sq: float | None
    continuous_q2_sq: float | None
    reason: str

    def __bool__(self) -> bool:
        return self.qualified


def _exam_grid(T: ArrayLike | None) -> NDArray[np.int64]:
    if T is None:
        return EXAM_T.copy()
    arr = np.asarray(T)
    if arr.ndim != 1 or arr.size < 4 or arr.dtype.kind not in "iu":
        raise ValueError(f"T = {T!r} must be a 1-D integer array of at least 4 horizons")
    ratios = np.diff(np.log(arr.astype(np.float64)))
    if np.any(arr < 2) or np.any(ratios <= 0) or np.ptp(ratios) > 0.05 * ratios.mean():
        raise ValueError(
            f"T = {arr.tolist()} must be increasing horizons >= 2 on a geometric grid "
            "(e.g. np.round(np.logspace(3, 7, 9)).astype(int))"
        )
    return arr.astype(np.int64)


def qualifying_exam(
    schedule: Schedule,
    T: ArrayLike | None = None,
    *,
    kind: Kind = "auto",
    continuous: bool = True,
    **params,
) -> ExamResult:
    """Training-free test of Condition 2.5: is the bound O(1/sqrt(T)) at eta_peak = 1/sqrt(T)?

    Parameters
    ----------
    schedule : str or callable
        A family name with ``params`` (``qualifying_exam("wsd", decay_frac=0.2,
        decay="sqrt")``), a callable ``s(x)`` on [0, 1], or a callable ``T -> array``
        of length T with values in [0, 1].
    T : array_like of int, optional
        Geometric grid of horizons; default 10^3 .. 10^7, two per decade
        (:data:`EXAM_T`).  The exact bound at each T is one O(T) pass.
    kind : {"auto", "continuous", "family"}
        How to read a callable (see :func:`asymptotic_constants`).
    continuous : bool
        Also evaluate the continuous integral ``int s^2 / int_x^1 s`` when ``s(x)`` is
        known (a named family or a ``continuous`` callable).

    Returns
    -------
    ExamResult
        ``.qualified``, ``.growth`` with fitted parameters, the per-T ``.values`` and
        a one-line ``.reason``.

    Raises
    ------
    ValueError
        The schedule ends at 0 (an infinite bound), or returns values outside [0, 1],
        non-finite values or the wrong length.

    Notes
    -----
    Condition 2.5 and Corollary 2.4 of Bu, Xu, Mao (2026).  With ``eta_peak = 1/sqrt(T)``,
    ``sqrt(T) * bound = T a + b = q1^2(T) + q2^2(T)`` exactly (D = G = 1, L_* = 0).
    Its growth is read off the increments per unit ln T (bounded: they vanish or
    shrink geometrically; log: constant; power: growing geometrically).  The two
    parts name the cause: ``T a = T / (2 sum s)`` grows when the LRs decay too early,
    ``b`` grows when the LR does not decay to 0 at the end.
    """
    res = _resolve(schedule, kind, **params)
    grid = _exam_grid(T)
    terms = np.array([_discrete_terms(res, int(t)) for t in grid])
    q1, q2, final = terms[:, 0], terms[:, 1], float(terms[-1, 2])
    y = q1 + q2
    growth = _classify(grid, y)
    causes = []
    if _classify(grid, q2).kind != "bounded":
        if final > 1e-3:
            causes.append(f"the LR does not decay to 0 (it ends at {100 * final:.3g}% of the peak)")
        else:
            causes.append("the LR does not decay to 0 fast enough at the end")
    if _classify(grid, q1).kind != "bounded":
        causes.append("the LR decays too early (the sum of the LRs grows slower than T)")

    c1 = c2 = None
    cont_ok = True
    if continuous and res.continuous is not None:
        ints = _integrals(schedule, res, params)
        c1, c2, cont_ok = ints.q1_sq, ints.q2_sq, ints.finite

    qualified = growth.kind == "bounded" and cont_ok
    if qualified:
        reason = (
            f"passes: sqrt(T)*bound stays bounded ({y[-1]:.4f} at T = {grid[-1]:,}; "
            f"q1^2 = {q1[-1]:.4f}, q2^2 = {q2[-1]:.4f})"
        )
    elif growth.kind != "bounded":
        why = ", ".join(causes) or "the bound decays slower than 1/sqrt(T)"
        reason = f"fails: {why}, sqrt(T)*bound {growth.describe()}"
    else:
        reason = (
            "fails: the continuous integral int s(x)^2 / int_x^1 s diverges (like "
            f"{2 * ints.log_rate:.2g} ln(1/eps) near x = 1) although sqrt(T)*bound looks bounded up to "
            f"T = {grid[-1]:,}"
        )
    return ExamResult(
        qualified=bool(qualified),
        growth=growth.kind,
        coef=growth.coef,
        exponent=growth.exponent,
        offset=growth.offset,
        limit=growth.limit if growth.kind == "bounded" else math.inf,
        T=grid,
        values=y,
        q1_sq=q1,
        q2_sq=q2,
        final_lr=final,
        continuous_q1_sq=c1,
        continuous_q2_sq=c2,
        reason=reason,
    )


__all__ = [
    "optimal_peak_lr",
    "bound_vs_peak_lr",
    "asymptotic_constants",
    "table1",
    "Table1Row",
    "TABLE1_SCHEDULES",
    "Q",
    "optimal_eta_ref",
    "qualifying_exam",
    "ExamResult",
    "Growth",
    "EXAM_T",
]
