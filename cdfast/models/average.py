"""A model that averages the predictions of several models, each fitted on its own.

No single effective-LR map of the convex bound is best on every kind of held-out
prediction (docs/models.md): the power map ``eta^p`` and the saturating map
``eta / (1 + eta / eta_c)`` err in different directions when they extrapolate, and their
mean predicts better than either (Bayesian model averaging with equal weights).  The
members keep their own parameters; :func:`cdfast.fit_loss_curves` fits each and the
average is taken over predictions (and over bootstrap replicates for intervals, over
gradients for ``value_and_grad``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import FloatArray, IntArray, LossModel

__all__ = ["Averaged"]


class Averaged(LossModel):
    """The mean prediction of ``members`` (each a :class:`LossModel`, fitted separately)."""

    coefs = ()
    shape = ()

    def __init__(self, members: Sequence[LossModel], name: str, summary: str = "") -> None:
        members = tuple(members)
        if len(members) < 2 or not all(isinstance(m, LossModel) and not isinstance(m, Averaged) for m in members):
            raise ValueError("an averaged model needs at least two (non-averaged) member models")
        self.members = members
        self.name = name
        self.summary = summary or "mean of " + ", ".join(m.name for m in members)

    def __repr__(self) -> str:
        return f"Averaged({list(self.members)!r}, name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Averaged):
            return NotImplemented
        return self.members == other.members

    def __hash__(self) -> int:
        return hash(("Averaged", self.members))

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(f"{m.name}:{n}" for m in self.members for n in m.param_names)

    def split(self, params: FloatArray) -> list[FloatArray]:
        """The members' parameter vectors from the concatenated one."""
        out, i = [], 0
        for m in self.members:
            k = len(m.param_names)
            out.append(np.asarray(params[i:i + k], dtype=np.float64))
            i += k
        return out

    def prepare(self, lr: FloatArray, steps: IntArray, grad_sq: FloatArray | None = None) -> tuple[Any, ...]:
        return tuple(m.prepare(lr, steps, grad_sq) for m in self.members)

    def basis(self, theta: FloatArray, prep: Any) -> FloatArray:
        raise TypeError(f"model {self.name!r} averages separately fitted models and has no common basis; "
                        "fit it with cdfast.fit_loss_curves")

    def predict(self, params: FloatArray, prep: tuple[Any, ...]) -> FloatArray:
        preds = [m.predict(p, q) for m, p, q in zip(self.members, self.split(params), prep)]
        return np.mean(preds, axis=0)

    def final_value_and_grad(self, params: FloatArray, lr: FloatArray,
                             grad_sq: FloatArray | None = None) -> tuple[float, FloatArray]:
        parts = [m.final_value_and_grad(p, lr, grad_sq) for m, p in zip(self.members, self.split(params))]
        return float(np.mean([v for v, _ in parts])), np.mean([g for _, g in parts], axis=0)
