"""The multi-power law of Luo et al. (ICLR 2025) as a cdfast loss model.

    L(t) = L0 + A (S1(t) + S_W)^-alpha - LD(t)
    LD(t) = B sum_{k=1..t} (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t)),   G(x) = 1 - (C x + 1)^-beta
    S_k(t) = eta_k + ... + eta_t,   S1(t) = S_1(t),   S_W = the LR area of the warmup

(Luo, Wen, Hu, Sun, Liu, Sun, Lyu, Chen, "A Multi-Power Law for Loss Curve Prediction
Across Learning Rate Schedules", ICLR 2025, arXiv 2503.12811; reference code
github.com/thu-yao-01-luo/MultiPowerLaw.)  The loss-drop sum is evaluated at every
requested step in O(T M) time by a quadrature of the power function, with a stated
relative error (see :class:`MultiPowerLaw`), instead of the reference code's O(T^2) loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from .._kernels._numba_peers import _mpl_drop
from ._peers import check_theta, check_warmup, last_warmup_step, run_inputs
from .base import FloatArray, IntArray, LossModel, Param

SEARCH_RTOL = 1e-4  # accuracy of the loss-drop sum while a fit searches (ample for the search)

__all__ = ["MultiPowerLaw", "MPLPrep", "quadrature_nodes"]

_INF = math.inf
#: strip half-widths tried for the trapezoid rule (the integrand is analytic for |Im u| < pi/2)
_STRIPS = np.linspace(0.3, 1.55, 26)


@dataclass(frozen=True)
class MPLPrep:
    """Parameter-free data of one run (from :meth:`MultiPowerLaw.prepare`)."""

    lr: FloatArray
    steps: IntArray
    #: P_tau = S1(tau) + S_W at the steps
    P: FloatArray
    #: last warmup step (1-based); eta_K is the papers' eta_0
    K: int
    #: largest and smallest positive eta_k with d_k != 0 among the summed k (nan if none)
    eta_hi: float
    eta_lo: float
    #: S_{K+1}(last step): the largest S_k(t) the sum meets
    x_max: float


def quadrature_nodes(beta: float, gamma: float, C: float, rtol: float, eta_lo: float, eta_hi: float,
                     x_max: float) -> tuple[FloatArray, float, FloatArray]:
    """Nodes ``u_m = log v_m``, step ``h`` and per-term windows of the loss-drop quadrature.

    Every term ``G_k = 1 - (1 + C y_k x)^-beta`` (``y_k = eta_k^-gamma``,
    ``eta_lo <= eta_k <= eta_hi``, ``0 < x <= x_max``) is approximated by the trapezoid
    rule in ``u = log v`` to relative error at most ``rtol`` (before rounding); see
    :class:`MultiPowerLaw` for the derivation.  The grid covers every term's window
    ``s = v / (C y_k) in [s_lo(z_k), s_hi]``; ``win = (log s_hi, log s_lo for z <= 1,
    a, log x_max)`` lets the kernel find a term's window, with
    ``log s_lo(z) = min(win[1], (win[2] - log z) / (beta + 1))``.
    """
    b = beta
    eps_d, eps_lo, eps_hi = 0.5 * rtol, 0.25 * rtol, 0.25 * rtol
    g1 = -math.expm1(-b * math.log(2.0))  # 1 - 2^-beta = G(1), the least G for z >= 1
    # discretisation: |error| <= 2 M(a) / (exp(2 pi a / h) - 1) relative to G, for the
    # half-width a of the strip of analyticity and M(a) bounding int |f(u + ib)| du / G
    c = np.cos(_STRIPS)
    m_rel = np.maximum((2.0 / c) ** (b + 1.0), 2.0 * c ** (-b) / g1)
    h = float(np.max(2.0 * np.pi * _STRIPS / np.log1p(2.0 * m_rel / eps_d)))
    # upper tail in s = v / (C y): beyond s_hi it is below eps_hi relative to G (and the
    # integrand decreases there, s_hi >= beta + 2)
    s_hi = max(float(special.gammainccinv(b + 1.0, eps_hi / 2.0 ** (b + 1.0))),
               float(special.gammainccinv(b, eps_hi * g1)), b + 2.0)
    # lower tail: below s_lo(z) it is below eps_lo relative to G (z s^(beta+1) bound; the
    # integrand increases there, s_lo <= beta / 2)
    ls_small = min((math.log(eps_lo) + float(special.gammaln(b + 2.0))) / (b + 1.0) - math.log(2.0),
                   math.log(0.5 * b))
    a = math.log(eps_lo * (b + 1.0) * g1) + float(special.gammaln(b))
    log_x = math.log(x_max)
    win = np.array([math.log(s_hi), ls_small, a, log_x])
    # the lowest v is needed by the largest eta (smallest y), the highest by the smallest
    lg_hi = gamma * math.log(eta_hi) - math.log(C)  # log(eta^gamma / C) = -log(C y)
    lg_lo = gamma * math.log(eta_lo) - math.log(C)
    u_lo = min(ls_small, (a - (log_x - lg_hi)) / (b + 1.0)) - lg_hi
    u_hi = win[0] - lg_lo
    M = int(math.ceil((u_hi - u_lo) / h)) + 1
    return u_lo + h * np.arange(M, dtype=np.float64), h, win


class MultiPowerLaw(LossModel):
    """Luo et al. (2025) multi-power law, separable as ``L0 * 1 + A * P^-alpha + B * (-sum d G)``.

    Parameters
    ----------
    warmup : int or None, default None
        Number of warmup steps ``W``.  ``None`` takes the warmup to end at the first step
        where the LR reaches its maximum.  ``0`` applies the loss-drop sum to every step
        from the start (``eta_0 := eta_1``), which is what the reference code's fitting
        routine does (see Notes).
    rtol : float, default 1e-9
        Relative accuracy of the loss-drop quadrature (``1e-15 <= rtol <= 1e-2``).

    Notes
    -----
    **Indexing.**  cdfast's ``lr[i] = eta_{i+1}``; the loss at step ``tau`` is that of
    ``w_tau``, after the updates with ``eta_1 .. eta_tau``.  The paper's law counts
    post-warmup steps; with ``K`` the last warmup step (the paper's ``eta_0`` is
    ``eta_K``, the peak LR), its ``t`` is our ``tau - K`` and

    * ``S1(t) + S_W = P_tau = eta_1 + ... + eta_tau`` (the whole area, warmup included);
    * ``LD = B sum_{k=K+1..tau} (eta_{k-1} - eta_k) G(eta_k^-gamma (eta_k + ... + eta_tau))``.

    Before the end of warmup (``tau <= K``) the loss-drop term is 0 and the law is
    ``L0 + A P_tau^-alpha``.  The reference code indexes ``lrs`` from 0 with the warmup
    included, sums ``lrs[0..s]`` for its step ``s`` and runs its loss-drop sum over
    ``k = 1..s`` with ``lrs[k] - lrs[k-1]``: that is exactly ``warmup=0`` here at
    ``tau = s + 1``, with warmup increases entering as negative decrements (its LR
    schedule optimiser, in contrast, starts the sum at the peak, as the paper and the
    default here do).

    **Parameters.**  LRs enter unnormalised, as in the paper (its fits use peak
    3e-4).  Scaling every LR by ``c`` is absorbed exactly by ``A -> A c^alpha``,
    ``B -> B / c``, ``C -> C c^(gamma - 1)``, so normalising changes the parameters,
    not the fit; the bounds on ``C`` are wide for this reason.  The starting values are
    the reference code's initialisation (``alpha`` from its log-log regression, about
    0.5; ``C = 1``, ``beta = gamma = 0.5``) followed by its published fits (25M-400M
    models: ``alpha`` 0.43-0.51, ``beta`` 0.58-0.60, ``gamma`` 0.63-0.66, ``C`` 2.0-2.1).
    The reference code fits all seven parameters with AdamW on the Huber loss
    (``delta = 1e-3``) of ``log(loss) - log(prediction)``; the linear ones (``L0, A, B``)
    are bounded below by 0 here as there.

    **Zero LR.**  A post-warmup step with ``eta_k = 0`` makes ``eta_k^-gamma``
    infinite; its ``G`` is taken as 1 once a later LR is positive and 0 before (no
    progress since the decrement: the limit of the formula for ``gamma < 1``).

    **Fast sum and its error.**  With ``phi(s) = s^beta e^-s / Gamma(beta)``,
    ``G(x) = int_0^inf phi(v / (C y)) (1 - e^{-v x}) dv / v`` (``y = eta_k^-gamma``):
    the rate ``v`` is the same for every ``k``, so on a grid ``v_m = e^{u_m}`` the sum over
    ``k`` becomes ``M`` first-order recursions over ``t`` (``_numba_peers._mpl_drop``),
    O(T M) for all steps at once.  Per term, in ``u = log v`` (the integrand is a shift
    of one function, analytic in the strip ``|Im u| < pi/2``), the relative error of the
    truncated trapezoid rule is below ``rtol``:

    * discretisation (Trefethen and Weideman 2014, Thm. 5.1): at most
      ``2 M(a) / (exp(2 pi a / h) - 1) <= rtol/2`` with
      ``M(a) = max((2 / cos a)^(beta+1), 2 cos(a)^-beta / (1 - 2^-beta))``, which bounds
      ``int |f(u + ib)| du / G`` for ``|b| < a`` (using ``|1 - e^-w| <= min(2, |w|)``,
      ``G(z) >= beta z / 2^(beta+1)`` for ``z <= 1`` and ``G(z) >= 1 - 2^-beta`` above);
      ``h`` is the best over ``a``;
    * tails: every term uses the nodes with ``s = v / (C y) in [s_lo(z), s_hi]`` plus
      one beyond each end, where the incomplete-gamma tail above ``s_hi`` and the
      ``z s^(beta+1)`` tail below ``s_lo`` are each at most ``rtol/4`` relative to ``G``
      (``z = C y x_max``); the integrand is monotone beyond, so the omitted nodes sum to
      less than the tails.

    Positive and negative decrements are summed separately (warmup increases,
    cyclic schedules), so the computed loss-drop column ``-sum d_k G_k`` satisfies

        |error| <= (rtol + (6 tau + 4 M + 100) u) sum_k |d_k| G_k(tau),   u = 2^-53

    for ``M`` nodes.  Rounding: a weight ``phi`` is an exp of an argument below ~60 in
    magnitude, or a product along the grid (one rounding per node); each step multiplies
    the states by ``q, p`` in [0, 1] (correct to 2 ulp, from expm1 or a Taylor series)
    and adds non-negative terms, at most about 5 ulp per step.  ``M`` is typically
    60-100 at ``rtol = 1e-9``.  ``tests/test_peer_models.py`` checks the bound against
    the literal O(T^2) sum.
    """

    name = "mpl"
    summary = "Luo et al. (ICLR 2025) multi-power law: L0 + A (S1 + S_W)^-alpha - LD(t)"
    coefs = (
        Param("L0", 0.0, _INF, doc="irreducible loss"),
        Param("A", 0.0, _INF, doc="amplitude of the LR-area power law"),
        Param("B", 0.0, _INF, doc="amplitude of the loss drop (per unit LR decrement)"),
    )
    shape = (
        Param("alpha", 0.01, 3.0, (0.5, 0.45, 0.3, 0.8), doc="exponent of the LR-area power law",
              prior=(0.45, 0.2)),
        Param("beta", 0.05, 5.0, (0.5, 0.6, 1.0), doc="exponent of the loss-drop saturation G",
              prior=(0.6, 0.3)),
        Param("gamma", 0.0, 2.0, (0.5, 0.65, 0.3), doc="LR exponent in the loss-drop argument eta^-gamma S",
              prior=(0.65, 0.3)),
        Param("C", 1e-6, 1e6, (1.0, 2.0, 0.1), doc="scale of the loss-drop argument", log=True,
              prior=(0.7, 2.0)),
    )

    def __init__(self, warmup: int | None = None, rtol: float = 1e-9) -> None:
        self.warmup = check_warmup(warmup)
        if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 1e-15 <= rtol <= 1e-2:
            raise ValueError(
                f"rtol = {rtol!r} must be a number in [1e-15, 1e-2] (relative accuracy of the loss-drop sum)"
            )
        self.rtol = float(rtol)

    def __repr__(self) -> str:
        return f"MultiPowerLaw(warmup={self.warmup!r}, rtol={self.rtol!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MultiPowerLaw):
            return NotImplemented
        return (self.warmup, self.rtol) == (other.warmup, other.rtol)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.warmup, self.rtol))

    def prepare(self, lr: FloatArray, steps: IntArray, grad_sq: FloatArray | None = None) -> MPLPrep:
        """Validate one run and collect what every evaluation needs (O(T)); ``grad_sq`` is unused."""
        lr, steps, P = run_inputs(lr, steps)
        K = last_warmup_step(lr, self.warmup)
        last = int(steps[-1])
        eta_hi = eta_lo = math.nan
        x_max = 0.0
        if last > K:
            seg = lr[K - 1:last]  # eta_K .. eta_last
            d = seg[:-1] - seg[1:]
            live = seg[1:][(d != 0.0) & (seg[1:] > 0.0)]
            if live.size:
                eta_hi, eta_lo = float(live.max()), float(live.min())
            x_max = math.fsum(seg[1:])
        return MPLPrep(lr, steps, P, K, eta_hi, eta_lo, x_max)

    def drop_parts(self, theta: FloatArray, prep: MPLPrep, rtol: float | None = None) -> tuple[FloatArray, FloatArray]:
        """``sum d_k G_k`` at the steps, split into its positive and negative parts.

        ``sum_k d_k G_k(tau) = pos - neg`` and ``sum_k |d_k| G_k(tau) = pos + neg`` (the
        scale of the error bound in the class Notes).
        """
        alpha, beta, gamma, C = check_theta(theta, self.shape, self.name)
        n = prep.steps.shape[0]
        pos = np.empty(n)
        neg = np.empty(n)
        if math.isnan(prep.eta_hi):
            u, h, win = np.empty(0), 1.0, np.zeros(4)
        else:
            u, h, win = quadrature_nodes(beta, gamma, C, self.rtol if rtol is None else rtol,
                                         prep.eta_lo, prep.eta_hi, prep.x_max)
        work = np.empty((6, u.shape[0]))
        scale = h / math.gamma(beta) if u.shape[0] else 0.0
        _mpl_drop(prep.lr, prep.K, prep.steps, gamma, beta, math.log(C), u, np.exp(u), h, scale, win, work, pos, neg)
        return pos, neg

    def basis(self, theta: FloatArray, prep: MPLPrep, rtol: float | None = None) -> FloatArray:
        """Columns ``[1, P_tau^-alpha, -sum_k d_k G_k(tau)]`` at the prepared steps."""
        pos, neg = self.drop_parts(theta, prep, rtol)
        out = np.empty((prep.steps.shape[0], 3))
        out[:, 0] = 1.0
        out[:, 1] = prep.P ** -float(theta[0])
        out[:, 2] = neg - pos
        return out

    has_surrogate = True
    local_starts = 1  # every evaluation is an O(T M) sum: one local search, from the best of the starts

    def search_basis(self, theta: FloatArray, prep: MPLPrep) -> FloatArray:
        """:meth:`basis` at the looser ``SEARCH_RTOL`` (fewer nodes) while the fit searches;
        the fit's final evaluation uses ``rtol``."""
        return self.basis(theta, prep, rtol=max(self.rtol, SEARCH_RTOL))
