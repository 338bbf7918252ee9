"""A model that combines the predictions of several models, each fitted on its own.

No single effective-LR map of the convex bound is best on every kind of held-out
prediction (docs/models.md): the power map ``eta^p`` and the saturating map
``eta / (1 + eta / eta_c)`` err in different directions when they extrapolate, and their
mean predicts better than either (Bayesian model averaging with equal weights).  The
members keep their own parameters; :func:`cdfast.fit_loss_curves` fits each and the
combination is taken over predictions (and over bootstrap replicates for intervals, over
gradients for ``value_and_grad``).

A combination may also carry a *nested* model: a special case of its members (the
paper's form, ``alpha = p = 1``) that is fitted too and replaces the members when the
data show that the members' priors hold them away from it.  The members' priors are
calibrated on deep networks and keep their shapes near what such runs show; on curves
that follow eq. (2.4) itself they pull the fit away from the truth, and the members then
fit worse than the nested form.  The rule (Bayesian information criterion on the fitted
points' relative residuals): the nested model is used when, for every member,
``n log(RSS_nested / RSS_member) <= -(k_member - k_nested) log n`` (``n`` fitted points,
``k`` free parameters), i.e. when it fits better than the member by more than the
member's extra parameters' penalty.  Where both fit equally well (half of a run whose LR
decays linearly from the start, which the paper's form fits as well as any), the members
are kept: a rule that took the nested form unless it fit worse chose it on 2 of the 68
within-run predictions of bench/validate_predictions.py and made both worse (1.9% and
2.6% against 0.7% and 1.5%).  On eq. (2.4) data with 0.1% noise the nested form fits
better by far more than the penalty (protocol E of the bench; tests/test_default_model.py).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import FloatArray, IntArray, LossModel

__all__ = ["Averaged"]


class Averaged(LossModel):
    """The weighted mean prediction of ``members`` (each a :class:`LossModel`, fitted separately).

    Parameters
    ----------
    members : sequence of LossModel
        At least two models, none itself an ``Averaged``.
    name, summary : str
        Registry name and one line.
    nested : LossModel, optional
        A special case of the members (module docstring), fitted as well and used alone
        when the data do not need the members' extra parameters.
    weights : sequence of float, optional
        One weight per model of :attr:`all_members` (members, then ``nested``), non-negative,
        summing to 1.  Default: equal over the members, 0 for ``nested``.  A fit sets them.
    drop_peer : LossModel, optional
        A model fitted on the same points when a prediction meets an abrupt LR fall, and
        weighted in after it (:func:`cdfast.models.transfer.drop_weight`;
        ``CurveFit.predict``).  The default model's is the multi-power law.
    """

    coefs = ()
    shape = ()

    def __init__(self, members: Sequence[LossModel], name: str, summary: str = "",
                 nested: LossModel | None = None, weights: Sequence[float] | None = None,
                 drop_peer: LossModel | None = None) -> None:
        members = tuple(members)
        if len(members) < 2 or not all(isinstance(m, LossModel) and not isinstance(m, Averaged) for m in members):
            raise ValueError("an averaged model needs at least two (non-averaged) member models")
        if nested is not None and (not isinstance(nested, LossModel) or isinstance(nested, Averaged)):
            raise ValueError("nested must be a (non-averaged) LossModel")
        if drop_peer is not None and (not isinstance(drop_peer, LossModel) or isinstance(drop_peer, Averaged)):
            raise ValueError("drop_peer must be a (non-averaged) LossModel")
        self.drop_peer = drop_peer
        self.members = members
        self.nested = nested
        n = len(self.all_members)
        if weights is None:
            w = np.array([1.0 / len(members)] * len(members) + [0.0] * (n - len(members)))
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or abs(w.sum() - 1.0) > 1e-9:
                raise ValueError(f"weights = {np.asarray(weights).tolist()} must be {n} non-negative numbers "
                                 "summing to 1, one per member (and one for the nested model)")
        self.weights = tuple(float(v) for v in w)
        self.name = name
        self.summary = summary or "mean of " + ", ".join(m.name for m in members)

    @property
    def all_members(self) -> tuple[LossModel, ...]:
        """The members, then the nested model if any: the models a fit fits."""
        return self.members + ((self.nested,) if self.nested is not None else ())

    def with_weights(self, weights: Sequence[float]) -> "Averaged":
        """The same combination with other weights (what a fit returns)."""
        return Averaged(self.members, self.name, self.summary, self.nested, weights, self.drop_peer)

    def __repr__(self) -> str:
        return (f"Averaged({list(self.members)!r}, name={self.name!r}, nested={self.nested!r}, weights={self.weights}, "
                f"drop_peer={self.drop_peer!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Averaged):
            return NotImplemented
        return ((self.members, self.nested, self.weights, self.drop_peer)
                == (other.members, other.nested, other.weights, other.drop_peer))

    def __hash__(self) -> int:
        return hash(("Averaged", self.members, self.nested, self.weights, self.drop_peer))

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(f"{m.name}:{n}" for m in self.all_members for n in m.param_names)

    def split(self, params: FloatArray) -> list[FloatArray]:
        """The members' parameter vectors from the concatenated one."""
        out, i = [], 0
        for m in self.all_members:
            k = len(m.param_names)
            out.append(np.asarray(params[i:i + k], dtype=np.float64))
            i += k
        return out

    @property
    def nested_only(self) -> bool:
        """Whether the nested model alone predicts (a fit found the data follow it)."""
        return self.nested is not None and self.weights[-1] == 1.0

    def _used(self) -> list[int]:
        return [i for i, w in enumerate(self.weights) if w > 0.0]

    def prepare(self, lr: FloatArray, steps: IntArray, grad_sq: FloatArray | None = None) -> tuple[Any, ...]:
        used = self._used()
        return tuple(m.prepare(lr, steps, grad_sq) if i in used else None for i, m in enumerate(self.all_members))

    def prepare_predict(self, lr: FloatArray, steps: IntArray, grad_sq: FloatArray | None = None) -> tuple[Any, ...]:
        used = self._used()
        return tuple(m.prepare_predict(lr, steps, grad_sq) if i in used else None
                     for i, m in enumerate(self.all_members))

    def basis(self, theta: FloatArray, prep: Any) -> FloatArray:
        raise TypeError(f"model {self.name!r} averages separately fitted models and has no common basis; "
                        "fit it with cdfast.fit_loss_curves")

    def predict(self, params: FloatArray, prep: tuple[Any, ...]) -> FloatArray:
        parts = self.split(params)
        return sum(self.weights[i] * self.all_members[i].predict(parts[i], prep[i]) for i in self._used())

    def final_value_and_grad(self, params: FloatArray, lr: FloatArray,
                             grad_sq: FloatArray | None = None) -> tuple[float, FloatArray]:
        parts = self.split(params)
        value, grad = 0.0, 0.0
        for i in self._used():
            v, g = self.all_members[i].final_value_and_grad(parts[i], lr, grad_sq)
            value, grad = value + self.weights[i] * v, grad + self.weights[i] * g
        return float(value), np.asarray(grad, dtype=np.float64)
