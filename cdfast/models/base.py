"""The interface every loss model implements.

A loss model maps a learning-rate sequence ``eta_1 .. eta_T`` and the 1-based steps at
which a loss was logged to predicted losses.  Every model in cdfast is *separable*:

    L(tau) = sum_k c_k phi_k(tau; theta),

linear in a few coefficients ``c`` (an offset such as ``L_inf``, amplitudes) and
nonlinear in a few shape parameters ``theta`` (exponents, time scales).  One fitting
routine serves all of them (variable projection: for fixed ``theta`` the best ``c`` is a
bounded linear least-squares problem), so a new model is one small class:

* ``coefs`` and ``shape`` name the parameters and their bounds (:class:`Param`);
* :meth:`LossModel.prepare` does the parameter-free work for one run once (cumulative
  LR, decrements, ...);
* :meth:`LossModel.basis` returns the columns ``phi_k`` at the logged steps for given
  ``theta``; it is called many times inside the optimiser and must be cheap relative
  to ``prepare`` (O(T) at most, ideally O(len(steps)) after ``prepare``).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

__all__ = ["Param", "LossModel"]


@dataclass(frozen=True)
class Param:
    """A named model parameter with bounds.

    Attributes
    ----------
    name : str
        Identifier, used in results (``fit.params[name]``) and messages.
    lo, hi : float
        Bounds (``-inf``/``inf`` allowed for coefficients; shape parameters need finite
        bounds).  ``lo == hi`` fixes the parameter.
    start : tuple of float
        Starting values for the multi-start search (shape parameters only); the first
        is the default guess.
    doc : str
        One line: what the parameter means.
    log : bool
        Search this (positive) shape parameter on a log scale (scales spanning decades).
    prior : (center, width) or None
        A Gaussian prior on the shape parameter (on the log scale when ``log``): the fit
        minimises the misfit plus ``((value - center) / width)**2`` (see
        :mod:`cdfast.models.fitting` for the weighting).  It keeps a parameter that the data
        barely constrain (half a run, one short run) at a value validated on many runs,
        and is negligible where the data decide.  None: no prior.
    """

    name: str
    lo: float
    hi: float
    start: tuple[float, ...] = ()
    doc: str = ""
    log: bool = False
    prior: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        where = f"Param {self.name!r}"
        for attr in ("lo", "hi"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or math.isnan(v):
                raise ValueError(f"{where}: {attr} = {v!r} must be a real number (-inf/inf allowed for coefficients)")
        if self.lo > self.hi:
            raise ValueError(f"{where}: lo = {self.lo!r} > hi = {self.hi!r}; the bounds must satisfy lo <= hi")
        for k, v in enumerate(self.start):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not self.lo <= v <= self.hi:
                raise ValueError(f"{where}: start[{k}] = {v!r} must be a number in [lo, hi] = "
                                 f"[{self.lo!r}, {self.hi!r}]")
        if self.log and not self.lo > 0:
            raise ValueError(f"{where}: log=True needs lo > 0 (a log-scale search), got lo = {self.lo!r}")
        if self.prior is not None:
            if len(self.prior) != 2 or not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in self.prior) \
                    or not self.prior[1] > 0:
                raise ValueError(f"{where}: prior = {self.prior!r} must be (center, width) with finite numbers "
                                 "and width > 0")

    @property
    def fixed(self) -> bool:
        return self.lo == self.hi


class LossModel(ABC):
    """A separable loss law ``L(tau) = basis(theta) @ c`` (see the module docstring).

    Subclasses set the class attributes and implement :meth:`prepare` and :meth:`basis`.
    Instances may carry options (e.g. a fixed constant); two instances with equal
    options are interchangeable.
    """

    #: registry name, e.g. "annealing"
    name: ClassVar[str]
    #: one line for leaderboards and ``--help``
    summary: ClassVar[str] = ""
    #: linear coefficients c_k, one per basis column, in column order
    coefs: ClassVar[tuple[Param, ...]]
    #: nonlinear shape parameters theta (may be empty; an instance may narrow them)
    shape: tuple[Param, ...] = ()

    @abstractmethod
    def prepare(self, lr: FloatArray, steps: IntArray, grad_sq: FloatArray | None = None) -> Any:
        """Parameter-free precomputation for one run.

        ``lr`` is validated float64 ``eta_1 .. eta_T`` (``lr[i] = eta_{i+1}``), ``steps``
        strictly increasing 1-based int64 steps ``<= T`` at which losses are wanted (the
        loss at step ``tau`` is that of ``w_tau``, after ``tau`` updates), ``grad_sq`` an
        optional per-step ``G_t^2`` (models that cannot use it ignore it).
        """

    def prepare_predict(self, lr: FloatArray, steps: IntArray, grad_sq: FloatArray | None = None) -> Any:
        """:meth:`prepare` for :meth:`predict` and :meth:`basis` alone, no search: by default
        :meth:`prepare` itself; a model whose preparation builds a search surrogate skips it."""
        return self.prepare(lr, steps, grad_sq)

    @abstractmethod
    def basis(self, theta: FloatArray, prep: Any) -> FloatArray:
        """Columns ``phi_k(tau; theta)`` at the prepared steps, shape ``(len(steps), len(coefs))``."""

    #: how many of the best start values the fit runs a local search from
    local_starts: ClassVar[int] = 2
    #: whether :meth:`search_basis` is a surrogate of :meth:`basis` (the fit then polishes
    #: its optimum on the exact basis)
    has_surrogate: ClassVar[bool] = False
    #: how a surrogate's optimum is polished (cdfast.models.fitting): "defect" (defect
    #: correction, for a cheap surrogate: one exact evaluation per round) or "exact"
    #: (trust-region steps on the exact basis, for a surrogate as costly as the basis)
    polish: ClassVar[str] = "exact"

    def search_basis(self, theta: FloatArray, prep: Any) -> FloatArray:
        """The basis used while searching ``theta``; by default :meth:`basis`.

        A model whose exact basis is costly may return a cheap surrogate here (e.g. an
        interpolant precomputed in :meth:`prepare`); the fit then finishes with one exact
        evaluation at the optimum, so predictions never depend on the surrogate.
        """
        return self.basis(theta, prep)

    def final_value_and_grad(self, params: FloatArray, lr: FloatArray,
                             grad_sq: FloatArray | None = None) -> tuple[float, FloatArray]:
        """The predicted loss at the last step ``T = len(lr)`` and its gradient with respect
        to every LR, for optimising a schedule against a fitted model.  Models that
        cannot differentiate through their basis raise NotImplementedError."""
        raise NotImplementedError(f"model {self.name!r} gives no gradient with respect to the learning rates; "
                                  "use a convex-bound model (bound, bound-alpha, power-bound, sat-bound)")

    def predict(self, params: FloatArray, prep: Any) -> FloatArray:
        """Losses for the full parameter vector ``params = (*theta, *c)``."""
        k = len(self.shape)
        return self.basis(np.asarray(params[:k], dtype=np.float64), prep) @ np.asarray(params[k:], dtype=np.float64)

    def shape_defaults(self) -> FloatArray:
        """A default shape vector: each parameter's first start value (its value if fixed)."""
        return np.array([p.lo if p.fixed else (p.start[0] if p.start else 0.5 * (p.lo + p.hi)) for p in self.shape],
                        dtype=np.float64)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of ``(*shape, *coefs)``, the order of a full parameter vector."""
        return tuple(p.name for p in (*self.shape, *self.coefs))
