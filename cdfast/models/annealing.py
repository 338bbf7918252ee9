"""The scaling law with learning-rate annealing of Tissue et al. (2024) as a cdfast loss model.

    L(s) = L0 + A S1^-alpha - C S2
    S1 = eta_1 + ... + eta_s                      (forward area)
    S2 = m_1 + ... + m_s,  m_i = lam m_{i-1} + (eta_{i-1} - eta_i)   (annealing area, momentum form)

(Tissue, Wang, Wang, "Scaling Law with Learning Rate Annealing", arXiv 2408.11029.)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._kernels._numba_peers import _annealing_area
from ._peers import check_theta, check_warmup, last_warmup_step, run_inputs
from .base import FloatArray, IntArray, LossModel, Param

__all__ = ["AnnealingLaw", "AnnealingPrep"]

_INF = math.inf
LAM = 0.999  # the paper's decay factor
LAM_RANGE = (0.99, 0.9999)  # bounds when lam is fitted


@dataclass(frozen=True)
class AnnealingPrep:
    """Parameter-free data of one run (from :meth:`AnnealingLaw.prepare`)."""

    lr: FloatArray
    steps: IntArray
    #: S1 at the steps
    P: FloatArray
    #: last warmup step (1-based); eta_K is the papers' eta_0
    K: int
    #: S2 at the steps for lam = S2_lam (None when lam is fitted)
    S2: FloatArray | None
    S2_lam: float


class AnnealingLaw(LossModel):
    """Tissue et al. (2024) annealing law, separable as ``L0 * 1 + A * S1^-alpha + C * (-S2)``.

    Parameters
    ----------
    lam : float or (float, float), default 0.999
        The decay factor of the annealing momentum.  A number fixes it (the paper uses
        0.999); a pair ``(lo, hi)`` inside (0, 1) makes it a fitted shape parameter with
        those bounds (``(0.99, 0.9999)`` is a sensible range).
    warmup : int or None, default None
        Number of warmup steps ``W``; the momentum starts at the end of warmup.  ``None``
        takes the warmup to end at the first step where the LR reaches its maximum;
        ``0`` runs the momentum from step 1 with ``eta_0 := eta_1``, so that warmup
        increases count as negative annealing.

    Notes
    -----
    **Indexing.**  cdfast's ``lr[i] = eta_{i+1}``; the loss at step ``tau`` (the paper's
    ``s``) is that of ``w_tau``, after the updates with ``eta_1 .. eta_tau``, so

    * ``S1(tau) = eta_1 + ... + eta_tau``: the whole area under the LR curve, warmup
      included;
    * ``S2(tau) = sum_{i<=tau} m_i`` with ``m_i = lam m_{i-1} + d_i``, ``m_0 = 0``,
      ``d_i = eta_{i-1} - eta_i`` for ``i > K`` and ``d_i = 0`` up to the last warmup
      step ``K``; ``eta_K`` (the peak) is the paper's ``eta_0``.  Equivalently
      ``S2(tau) = sum_{k<=tau} d_k (1 - lam^(tau-k+1)) / (1 - lam)``: every decrement's
      area builds up at rate ``1 - lam`` per step.

    Counting warmup increases as negative annealing would make the law predict a
    loss increase after warmup that decays over ``1 / (1 - lam)`` steps; ``S2`` is the
    area of LR *decreases* (annealing), hence the default.

    **Parameters.**  The fitted constants are ``L0, A, C, alpha``, as in the paper,
    with ``lam`` a fixed hyperparameter (0.999) unless a range is given.  LRs enter
    unnormalised, as in the paper.  Scaling every LR by ``c`` is absorbed exactly by
    ``A -> A c^alpha`` and ``C -> C / c`` (``lam`` is a per-step factor and does not
    change), so normalising changes the parameters, not the fit.  ``L0, A, C >= 0``
    (``C`` is the loss drop per unit of annealing area); the starting values of
    ``alpha`` (0.5 first) cover the usual range of power-law exponents of loss curves.
    The warmup convention above (momentum from the peak) is cdfast's reading of "LR
    annealing area"; ``warmup=0`` gives the recursion applied to every step.

    **Fitting.**  The model prescribes no objective: cdfast's shared fitting routine
    applies, as for every model.  (The public reference code of the multi-power law,
    which compares with this law, minimises the Huber loss, ``delta = 1e-3``, of
    ``log(loss) - log(prediction)``.)

    **Cost and accuracy.**  ``prepare`` is O(T); with ``lam`` fixed it also computes
    ``S2`` once, and ``basis`` costs O(len(steps)); with ``lam`` fitted every ``basis``
    call runs the O(T) recursion.  The recursion (not the closed form above, which
    cancels right after a decay starts when ``lam ~ 1``) adds terms of one sign for a
    monotone decay, so ``S2`` carries a relative error of at most about
    ``2 tau`` ulp; ``S1`` is a running sum (at most ``tau`` ulp).
    """

    name = "annealing"
    summary = "Tissue et al. (2024) annealing law: L0 + A S1^-alpha - C S2"
    coefs = (
        Param("L0", 0.0, _INF, doc="irreducible loss"),
        Param("A", 0.0, _INF, doc="amplitude of the forward-area power law"),
        Param("C", 0.0, _INF, doc="loss drop per unit of annealing area S2"),
    )
    shape = (
        Param("alpha", 0.01, 3.0, (0.5, 0.3, 1.0), doc="exponent of the forward-area power law",
              prior=(0.45, 0.2)),
        Param("lam", LAM, LAM, (LAM,), doc="decay factor of the annealing momentum"),
    )

    def __init__(self, lam: float | tuple[float, float] = LAM, warmup: int | None = None) -> None:
        self.warmup = check_warmup(warmup)
        if isinstance(lam, tuple):
            if len(lam) != 2:
                raise ValueError(f"lam = {lam!r}: give one number (fixed) or a pair (lo, hi) of bounds to fit it")
            lo, hi = (self._check_lam(x) for x in lam)
            if not lo <= hi:
                raise ValueError(f"lam = {lam!r}: the lower bound exceeds the upper one; pass (lo, hi) with lo <= hi")
            starts = tuple(x for x in (LAM, math.sqrt(lo * hi), lo, hi) if lo <= x <= hi)
            self.lam: float | tuple[float, float] = (lo, hi)
        else:
            lo = hi = self._check_lam(lam)
            starts = (lo,)
            self.lam = lo
        # the bounds of lam are an option of the instance
        self.shape = (self.shape[0], Param("lam", lo, hi, tuple(dict.fromkeys(starts)),  # type: ignore[misc]
                                            doc="decay factor of the annealing momentum"))

    @staticmethod
    def _check_lam(x: Any) -> float:
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or not 0.0 < float(x) < 1.0:
            raise ValueError(f"lam = {x!r} must be a number in (0, 1) (the paper uses 0.999)")
        return float(x)

    @property
    def fixed_lam(self) -> bool:
        return self.shape[1].fixed

    def __repr__(self) -> str:
        return f"AnnealingLaw(lam={self.lam!r}, warmup={self.warmup!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AnnealingLaw):
            return NotImplemented
        return (self.lam, self.warmup) == (other.lam, other.warmup)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.lam, self.warmup))

    def prepare(self, lr: FloatArray, steps: IntArray, grad_sq: FloatArray | None = None) -> AnnealingPrep:
        """Validate one run and compute ``S1`` (and ``S2`` when ``lam`` is fixed); ``grad_sq`` is unused."""
        lr, steps, P = run_inputs(lr, steps)
        K = last_warmup_step(lr, self.warmup)
        lam = self.shape[1].lo
        S2 = self._area(lr, K, steps, lam) if self.fixed_lam else None
        return AnnealingPrep(lr, steps, P, K, S2, lam if S2 is not None else math.nan)

    @staticmethod
    def _area(lr: FloatArray, K: int, steps: IntArray, lam: float) -> FloatArray:
        out = np.empty(steps.shape[0])
        _annealing_area(lr, K, lam, steps, out)
        return out

    def annealing_area(self, theta: FloatArray, prep: AnnealingPrep) -> FloatArray:
        """``S2`` at the prepared steps for ``theta = (alpha, lam)``."""
        th = check_theta(theta, self.shape, self.name)
        if prep.S2 is not None and th[1] == prep.S2_lam:
            return prep.S2
        return self._area(prep.lr, prep.K, prep.steps, float(th[1]))

    def basis(self, theta: FloatArray, prep: AnnealingPrep) -> FloatArray:
        """Columns ``[1, S1^-alpha, -S2]`` at the prepared steps."""
        S2 = self.annealing_area(theta, prep)
        out = np.empty((prep.steps.shape[0], 3))
        out[:, 0] = 1.0
        out[:, 1] = prep.P ** -float(theta[0])
        out[:, 2] = -S2
        return out
