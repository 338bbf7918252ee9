"""Loss models built on the convex last-iterate bound (eq. 2.4).

``bound`` is the paper's Generalization 1, unchanged:

    L(tau) = L_inf + D~^2 a_tau + G~^2 b_tau,
    a_tau = 1 / (2 P_tau),   b_tau = (1/2) [eta_tau G_tau^2 + sum_{j<tau} eta_j^2 G_j^2 / (P_tau - P_j)].

``power-bound`` is cdfast's generalisation, the same two terms evaluated on an *effective*
learning rate ``eta' = eta^p`` (``P'``, ``a'``, ``b'`` are those of ``eta'``), with the
distance term decaying as a power of the effective LR area:

    L(tau) = L_inf + D~^2 a'_tau^alpha + G~^2 b'_tau.

``alpha = p = 1`` is the paper's form.  Why the two exponents (both chosen on held-out
runs, see docs/models.md and ``bench/validate_predictions.py``):

* ``alpha``: on deep networks the loss falls as a power of the LR area (both peer laws
  use ``S1^-alpha``), not as ``1 / P``; the fitted exponent is about 0.4-0.5, and with
  it the whole-curve error of the bound drops several-fold.
* ``p``: the bound's noise term follows the LR linearly, but with AdamW (whose update is
  normalised per coordinate) the loss responds to a decay sub-linearly: most of a
  cooldown's gain comes at its end.  Evaluating the bound on ``eta^p`` (p about 0.6-0.9
  on the runs we have, lower for larger peak LRs) captures that, and it keeps the bound's
  exact structure (the single-sum ``b`` of docs/math.md section 2 on another sequence).

``bound-alpha`` fixes ``p = 1`` (only the distance exponent), the simplest change from the
paper's form.  Per-step gradient bounds (``grad_sq``, e.g. squared gradient norms read from
a log) enter every model as in eq. (2.4): ``w_j = eta'_j^2 G_j^2`` and ``eta'_tau G_tau^2``.

Cost.  ``b'`` needs one O(T M) pass of :func:`cdfast.bound_curve_terms` per value of ``p``.
``power-bound`` precomputes ``log a'`` and ``log b'`` at a few Chebyshev nodes of ``p`` in
:meth:`PowerBound.prepare` and searches on their barycentric interpolant
(:meth:`PowerBound.search_basis`); the fit then evaluates the exact basis once at the
optimum, so fitted coefficients and predictions never depend on the interpolant.  The
interpolant errs by 1e-3 to 1e-2, so its nodes are computed to 1e-7 by block moments
(:func:`cdfast.curve.curve_terms_moments`, several times cheaper than the exact passes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._validate import as_steps, as_vector, check_grad_sq, check_values
from ..curve import bound_curve_terms, curve_terms_moments
from ..gradient import bound_gradient
from .base import FloatArray, IntArray, LossModel, Param

__all__ = ["Bound", "PowerBound", "ConvexPrep"]

_INF = math.inf
#: Relative accuracy of the fast curve method inside the models (the fit needs far less).
CURVE_RTOL = 1e-10
#: Chebyshev nodes of p for the search interpolant of ``power-bound``.
P_NODES = 6
#: ... and of log eta_c for the saturating map (a wider range)
SAT_NODES = 10
#: Centre of the distance exponent's prior for a member fitted with the noise term's prior
#: (``gain_prior=True``, the default's members): the median alpha of full-run fits of that member
#: (shape priors off) on every second run of shared/data logged from the start (34 runs; IQR
#: 0.44-0.67 for the power map, 0.39-0.49 for the saturating one).  The class's own 0.45 is
#: the value for fits without that prior.
ALPHA_WITH_GAIN_PRIOR = {"power": 0.52, "saturating": 0.44}


def _inputs(lr: Any, steps: Any, grad_sq: Any) -> tuple[FloatArray, IntArray, FloatArray | None]:
    x = as_vector(lr, "lr")
    check_values(x, "lr")
    s = as_steps(steps, "steps", x.shape[0])
    g = check_grad_sq(grad_sq, x.shape[0])
    if g is not None:
        check_values(g, "grad_sq")
    return x, s, g


def moved_steps(lr: FloatArray, steps: IntArray) -> tuple[IntArray, IntArray | None]:
    """``(at, expand)``: the step at which the iterate last moved, for every step.

    A step whose LR is 0 does not move the iterate (``w_tau = w_{tau-1}``), so its loss
    is that of the last step ``t <= tau`` with ``eta_t > 0``; eq. (2.4) itself is
    infinite there (a zero gap ``P_tau - P_j``).  ``at`` holds those steps once each,
    sorted, and ``values_at(at)[expand]`` gives one value per entry of ``steps``;
    ``expand`` is None when no step has a zero LR (``at`` is then ``steps``).  Steps
    before the first positive LR keep their own index (no prediction exists there: the
    iterate is still ``w_0``).
    """
    if lr[steps - 1].all():
        return steps, None
    pos = np.flatnonzero(lr > 0.0) + 1  # 1-based steps with a positive LR
    k = np.searchsorted(pos, steps, side="right") - 1
    moved = np.where(k >= 0, pos[np.maximum(k, 0)] if pos.size else steps, steps)
    at, expand = np.unique(moved, return_inverse=True)
    return at.astype(np.int64), expand


def _terms(x: FloatArray, steps: IntArray, g: FloatArray | None,
           rtol: float = CURVE_RTOL) -> tuple[FloatArray, FloatArray]:
    """``bound_curve_terms`` at ``steps``, a zero-LR step taking the terms of the last
    step that moved the iterate (:func:`moved_steps`)."""
    at, expand = moved_steps(x, steps)
    a, b = bound_curve_terms(x, g, at=at, rtol=rtol)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a, b) if expand is None else (a[expand], b[expand])


class Bound(LossModel):
    """The paper's Generalization 1: ``L_inf + D~^2 a_tau + G~^2 b_tau`` (eq. 2.4, 3.1)."""

    name = "bound"
    summary = "the paper's form: L_inf + D~^2 a_tau + G~^2 b_tau (eq. 2.4 with fitted constants)"
    coefs = (
        Param("L_inf", -_INF, _INF, doc="loss floor (the bound's L_*)"),
        Param("D_sq", 0.0, _INF, doc="D~^2, coefficient of the distance term a_tau = 1/(2 P_tau)"),
        Param("G_sq", 0.0, _INF, doc="G~^2, coefficient of the gradient term b_tau"),
    )
    shape = ()

    def prepare(self, lr: FloatArray, steps: IntArray, grad_sq: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
        return _terms(*_inputs(lr, steps, grad_sq))

    def basis(self, theta: FloatArray, prep: tuple[FloatArray, FloatArray]) -> FloatArray:
        a, b = prep
        return np.column_stack([np.ones_like(a), a, b])

    def final_value_and_grad(self, params: FloatArray, lr: FloatArray,
                             grad_sq: FloatArray | None = None) -> tuple[float, FloatArray]:
        """eq. (2.4) at T with the fitted constants: exactly :func:`cdfast.bound_gradient`."""
        L_inf, D_sq, G_sq = (float(v) for v in params)
        value, grad = bound_gradient(lr, D=math.sqrt(D_sq), G=math.sqrt(G_sq), L_star=L_inf, grad_sq=grad_sq)
        return float(value), grad

    def __repr__(self) -> str:
        return "Bound()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bound)

    def __hash__(self) -> int:
        return hash("Bound")


@dataclass
class ConvexPrep:
    """Parameter-free data of one run for :class:`PowerBound`."""

    lr: FloatArray
    steps: IntArray
    grad_sq: FloatArray | None
    #: Chebyshev nodes of p and log a'(p), log b'(p) at the steps (rows = nodes)
    p_nodes: FloatArray
    log_a: FloatArray
    log_b: FloatArray
    #: exact (a', b') per p evaluated so far
    exact: dict[float, tuple[FloatArray, FloatArray]] = field(default_factory=dict)
    #: derived once, not per search evaluation: the nodes' barycentric weights; log a' and log b'
    #: side by side (one interpolation for both); the entries of that row that are not finite at
    #: some node (kept infinite by the interpolant), or None if there are none
    node_weights: FloatArray = field(init=False, repr=False)
    log_ab: FloatArray = field(init=False, repr=False)
    bad: NDArray[np.bool_] | None = field(init=False, repr=False)
    #: log of the LRs, taken once for every eta^p of this run (:func:`effective_lr`)
    _log_lr: FloatArray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.node_weights = _chebyshev(-1.0, 1.0, self.p_nodes.shape[0])[1]
        self.log_ab = np.concatenate([self.log_a, self.log_b], axis=1)
        bad = ~np.isfinite(self.log_ab).all(axis=0)
        self.bad = bad if bad.any() else None

    @property
    def log_lr(self) -> FloatArray:
        if self._log_lr is None:
            with np.errstate(divide="ignore"):
                self._log_lr = np.log(self.lr)
        return self._log_lr

    @classmethod
    def without_nodes(cls, lr: FloatArray, steps: IntArray, grad_sq: FloatArray | None) -> "ConvexPrep":
        """A run with no search interpolant (:meth:`PowerBound.basis` evaluates the exact terms)."""
        n = steps.shape[0]
        return cls(lr, steps, grad_sq, np.empty(0), np.empty((0, n)), np.empty((0, n)))

    def select(self, idx: Any) -> "ConvexPrep":
        """The preparation at ``steps[idx]`` only (no kernel pass)."""
        return ConvexPrep(self.lr, self.steps[idx], self.grad_sq, self.p_nodes, self.log_a[:, idx], self.log_b[:, idx])


def _chebyshev(lo: float, hi: float, n: int) -> tuple[FloatArray, FloatArray]:
    """Chebyshev points of the first kind on [lo, hi] and their barycentric weights."""
    k = np.arange(n)
    theta = (2 * k + 1) * math.pi / (2 * n)
    x = 0.5 * (lo + hi) + 0.5 * (hi - lo) * np.cos(theta)
    w = (-1.0) ** k * np.sin(theta)  # independent of [lo, hi] (a common factor cancels)
    return x, w


def _barycentric(x: float, nodes: FloatArray, weights: FloatArray, values: FloatArray) -> FloatArray:
    """Interpolate the rows of ``values`` (one per node) at ``x`` (second barycentric form)."""
    d = x - nodes
    if not d.all():
        return values[int(np.argmin(np.abs(d)))]
    c = weights / d
    return (c @ values) / c.sum()


class PowerBound(LossModel):
    """``L_inf + D~^2 a'_tau^alpha + G~^2 b'_tau`` on an effective LR ``eta' = f(eta)`` (module docstring).

    Parameters
    ----------
    alpha : "fit" or float
        Exponent of the distance term; a number fixes it (1 = the paper's form).
    p : "fit" or float
        Effective-LR exponent, ``f(eta) = eta^p``; a number fixes it (1 = the paper's form).
    lr_map : {"power", "saturating"}
        ``"power"``: ``f(eta) = eta^p``.  ``"saturating"``: ``f(eta) = eta / (1 + eta / eta_c)``
        with a fitted ``eta_c`` (linear below ``eta_c``, capped above it); ``p`` is then unused.
    gain_prior : bool
        Fit with the prior on the noise term's size (:mod:`cdfast.models.gain`) and the loss
        floor bounded below by 0, as the default model's members and the forecaster do.
    """

    coefs = (
        Param("L_inf", -_INF, _INF, doc="loss floor"),
        Param("D_sq", 0.0, _INF, doc="coefficient of the distance term a'^alpha, a' = 1/(2 P'_tau)"),
        Param("G_sq", 0.0, _INF, doc="coefficient of the gradient term b' (eq. 2.4 on the effective LR)"),
    )
    ALPHA = Param("alpha", 0.05, 2.0, (0.45, 0.3, 0.7, 1.0), doc="exponent of the distance term",
                  prior=(0.45, 0.2))
    P = Param("p", 0.2, 1.5, (0.75, 0.5, 1.0), doc="effective-LR exponent: the bound is evaluated on eta^p",
              prior=(0.75, 0.4))
    has_surrogate = True
    polish = "defect"  # the Chebyshev surrogate costs nothing next to an exact kernel pass
    ETA_C = Param("eta_c", 1e-6, 1.0, (2e-3, 2e-4, 2e-2), doc="LR above which the effective LR saturates",
                  log=True, prior=(math.log(2e-3), 1.5))

    def __init__(self, alpha: float | str = "fit", p: float | str = "fit", lr_map: str = "power",
                 gain_prior: bool = False) -> None:
        if lr_map not in ("power", "saturating"):
            raise ValueError(f"lr_map = {lr_map!r}; choose 'power' (eta^p) or 'saturating' (eta / (1 + eta/eta_c))")
        if not isinstance(gain_prior, (bool, np.bool_)):
            raise TypeError(f"gain_prior must be True or False, got {gain_prior!r}")
        self.lr_map = lr_map
        self.gain_prior = bool(gain_prior)
        if self.gain_prior:  # a loss (a cross-entropy) has a floor >= 0
            self.coefs = (Param("L_inf", 0.0, _INF, doc="loss floor (>= 0)"), *self.coefs[1:])
        self.alpha = self._option(alpha, self.ALPHA)
        second = self.P if lr_map == "power" else self.ETA_C
        self.p = self._option(p, self.P) if lr_map == "power" else "fit"
        self.shape = tuple(
            par if val == "fit" else Param(par.name, float(val), float(val), (float(val),), par.doc)
            for par, val in ((self.ALPHA, self.alpha), (second, self.p))
        )
        if self.gain_prior and self.alpha == "fit":  # the distance exponent's prior as measured with the gain prior
            c = ALPHA_WITH_GAIN_PRIOR[lr_map]
            self.shape = (replace(self.ALPHA, prior=(c, self.ALPHA.prior[1]), start=(c, *self.ALPHA.start[1:])),
                          self.shape[1])
        if lr_map == "saturating":
            self.name = "sat-bound"
            self.summary = ("L_inf + D~^2 a'^alpha + G~^2 b' on the effective LR eta / (1 + eta/eta_c): "
                            "the convex bound with a power-law distance term and a saturating LR response")
        elif self.alpha == "fit" and self.p == 1.0:
            self.name = "bound-alpha"
            self.summary = "L_inf + D~^2 a_tau^alpha + G~^2 b_tau: the paper's form with a power on the distance term"
        elif self.alpha == "fit" and self.p == "fit":
            self.name = "power-bound"
            self.summary = ("L_inf + D~^2 a'_tau^alpha + G~^2 b'_tau on the effective LR eta^p: "
                            "the convex bound with a power-law distance term and AdamW's sub-linear LR response")
        elif self.alpha == 1.0 and self.p == 1.0:
            self.name = "paper-form"
            self.summary = ("L_inf + D~^2 a_tau + G~^2 b_tau: the paper's form (eq. 2.4) fitted as the other "
                            "convex-bound models are (relative residuals, burn-in)")
        else:
            self.name = f"power-bound(alpha={self.alpha}, p={self.p})"
            self.summary = "the convex bound on eta^p with a power on the distance term, some exponents fixed"

    @staticmethod
    def _option(value: float | str, par: Param) -> float | str:
        if isinstance(value, str):
            if value != "fit":
                raise ValueError(f"{par.name} = {value!r}; give 'fit' or a number in [{par.lo}, {par.hi}]")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not par.lo <= float(value) <= par.hi:
            raise ValueError(f"{par.name} = {value!r} must be 'fit' or a number in [{par.lo}, {par.hi}]")
        return float(value)

    def __repr__(self) -> str:
        extra = ", gain_prior=True" if self.gain_prior else ""
        return f"PowerBound(alpha={self.alpha!r}, p={self.p!r}, lr_map={self.lr_map!r}{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PowerBound):
            return NotImplemented
        return (self.alpha, self.p, self.lr_map, self.gain_prior) == (other.alpha, other.p, other.lr_map,
                                                                      other.gain_prior)

    def __hash__(self) -> int:
        return hash(("PowerBound", self.alpha, self.p, self.lr_map, self.gain_prior))

    # -- evaluation ---------------------------------------------------------

    def effective_lr(self, lr: FloatArray, q: float, log_lr: FloatArray | None = None) -> FloatArray:
        """``f(eta)`` for the second shape parameter ``q`` (``p`` or ``eta_c``).

        ``eta^p`` is computed as ``exp(p log eta)``, so that a run's ``log_lr`` (``np.log(lr)``,
        given when known) is taken once for all its ``p``: ``lr ** p`` costs twice an ``exp``.
        The rounding of ``p log eta`` makes the relative error about ``(|p log eta| + 2) u``
        (``u = 1.1e-16``), under ``4e-15`` for the exponents a fit meets (``|p log eta| < 30``);
        measured 2.2e-15 at most against ``lr ** p`` on a cosine from 1e-3.
        """
        if self.lr_map == "power":
            if q == 1.0:
                return lr
            if log_lr is None:
                with np.errstate(divide="ignore"):
                    log_lr = np.log(lr)
            return np.exp(q * log_lr)
        return lr / (1.0 + lr / q)

    def gain_row(self, theta: FloatArray, eta_max: float) -> FloatArray:
        """The coefficient row of the noise term's size ``G~^2 f(eta_max)`` (:mod:`cdfast.models.gain`)."""
        row = np.zeros(len(self.coefs))
        row[2] = float(self.effective_lr(np.array([float(eta_max)]), float(theta[1]))[0])
        return row

    def _exact(self, q: float, prep: ConvexPrep) -> tuple[FloatArray, FloatArray]:
        got = prep.exact.get(q)
        if got is None:
            got = _terms(self.effective_lr(prep.lr, q, prep.log_lr if self.lr_map == "power" else None),
                         prep.steps, prep.grad_sq)
            prep.exact[q] = got
        return got

    def final_value_and_grad(self, params: FloatArray, lr: FloatArray,
                             grad_sq: FloatArray | None = None) -> tuple[float, FloatArray]:
        """The predicted loss at ``T = len(lr)`` and its gradient, in O(T).

        ``L = L_inf + D~^2 a'^alpha + G~^2 b'`` with ``a' = 1/(2 P')`` and ``b'`` eq. (2.4)'s
        gradient coefficient on ``eta' = f(eta)``: ``d b'/d eta'`` is
        :func:`cdfast.bound_gradient` (D = 0, G = 1), ``d a'/d eta'_k = -1/(2 P'^2)`` for
        every k, and the chain rule multiplies by ``f'(eta_k)``.
        """
        alpha, q, L_inf, D_sq, G_sq = (float(v) for v in params)
        x = as_vector(lr, "lr")
        power = self.lr_map == "power" and q != 1.0
        with np.errstate(divide="ignore"):
            log_x = np.log(x) if power else None
        xe = self.effective_lr(x, q, log_x)
        b, gb = bound_gradient(xe, D=0.0, G=1.0, grad_sq=grad_sq)
        # positive terms: numpy's pairwise sum is within a few ulp, and math.fsum (which makes a Python float of
        # every element) was 40% of an evaluation at T = 1e6, the inner loop of optimal_schedule
        P = float(np.sum(xe))
        a = 1.0 / (2.0 * P)
        da = -D_sq * alpha * a ** (alpha - 1.0) / (2.0 * P * P)
        if self.lr_map == "power":
            df = q * np.exp((q - 1.0) * log_x) if power else np.ones_like(x)  # q eta^(q-1), inf at eta = 0 if q < 1
        else:
            df = 1.0 / (1.0 + x / q) ** 2
        return L_inf + D_sq * a ** alpha + G_sq * float(b), (da + G_sq * gb) * df

    def _search_range(self) -> tuple[float, float, bool]:
        par = self.shape[1]
        return (math.log(par.lo), math.log(par.hi), True) if par.log else (par.lo, par.hi, False)

    def prepare(self, lr: FloatArray, steps: IntArray, grad_sq: FloatArray | None = None) -> ConvexPrep:
        x, s, g = _inputs(lr, steps, grad_sq)
        if self.shape[1].fixed:  # nothing to search: the exact terms only
            return ConvexPrep.without_nodes(x, s, g)
        lo, hi, logscale = self._search_range()
        nodes, _ = _chebyshev(lo, hi, self.n_nodes)
        # every node's effective LR in one stacked call: the rows run in parallel
        with np.errstate(divide="ignore"):
            log_x = np.log(x) if self.lr_map == "power" else None
        X = np.stack([self.effective_lr(x, float(math.exp(z) if logscale else z), log_x) for z in nodes])
        at, expand = moved_steps(x, s)
        # the nodes only guide the search (module docstring): b' to 1e-7 by block moments, at a
        # fraction of the exact passes' cost
        a, b = curve_terms_moments(X, g, at)
        with np.errstate(divide="ignore"):
            log_a = np.log(np.asarray(a, dtype=np.float64))
            log_b = np.log(np.asarray(b, dtype=np.float64))
        if expand is not None:
            log_a, log_b = log_a[:, expand], log_b[:, expand]
        prep = ConvexPrep(x, s, g, nodes, log_a, log_b)
        prep._log_lr = log_x
        return prep

    def prepare_predict(self, lr: FloatArray, steps: IntArray, grad_sq: FloatArray | None = None) -> ConvexPrep:
        """The run without the search interpolant's nodes: :meth:`basis` (a prediction) needs only
        the exact terms at the fitted shape, one kernel pass, where :meth:`prepare` costs one pass
        per node more."""
        return ConvexPrep.without_nodes(*_inputs(lr, steps, grad_sq))

    @property
    def n_nodes(self) -> int:
        return P_NODES if self.lr_map == "power" else SAT_NODES

    def _columns(self, alpha: float, a: FloatArray, b: FloatArray) -> FloatArray:
        out = np.empty((a.shape[0], 3))
        out[:, 0] = 1.0
        out[:, 1] = a if alpha == 1.0 else a ** alpha
        out[:, 2] = b
        return out

    def basis(self, theta: FloatArray, prep: ConvexPrep) -> FloatArray:
        alpha, q = float(theta[0]), float(theta[1])
        a, b = self._exact(q, prep)
        return self._columns(alpha, a, b)

    def search_basis(self, theta: FloatArray, prep: ConvexPrep) -> FloatArray:
        alpha, q = float(theta[0]), float(theta[1])
        if prep.p_nodes.shape[0] == 0:
            return self.basis(theta, prep)
        z = math.log(q) if self.shape[1].log else q
        with np.errstate(invalid="ignore"):
            log_ab = _barycentric(z, prep.p_nodes, prep.node_weights, prep.log_ab)
        if prep.bad is not None:  # steps where the bound is infinite (eta_tau = 0) stay infinite
            log_ab[prep.bad] = np.inf
        ab = np.exp(log_ab)
        m = prep.steps.shape[0]
        return self._columns(alpha, ab[:m], ab[m:])
