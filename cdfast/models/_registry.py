"""The registry of loss models: names -> factories, the default model, lookup by name.

Below :mod:`cdfast.models._curvefit` (the fitting) and :mod:`cdfast.models.compare`
(the comparison), which both look models up here; a new model is one class in its own
module plus one entry in :data:`MODELS`.
"""

from __future__ import annotations

from typing import Callable

from .annealing import AnnealingLaw
from .average import Averaged
from .base import LossModel
from .convex import Bound, PowerBound
from .mpl import MultiPowerLaw

__all__ = ["MODELS", "DEFAULT_MODEL", "get_model", "names"]

#: name -> factory of a model with its default options
MODELS: dict[str, Callable[[], LossModel]] = {
    "bound": Bound,
    "bound-alpha": lambda: PowerBound(alpha="fit", p=1.0),
    "power-bound": lambda: PowerBound(alpha="fit", p="fit"),
    "sat-bound": lambda: PowerBound(alpha="fit", lr_map="saturating"),
    "effective-bound": lambda: Averaged(
        [PowerBound(alpha="fit", p="fit", gain_prior=True), PowerBound(alpha="fit", lr_map="saturating", gain_prior=True)],
        "effective-bound",
        "the convex bound on the effective LR: the mean of power-bound and sat-bound (with the prior on the noise "
        "term's size), or the paper's form when the data follow it; the multi-power law after an abrupt LR fall",
        nested=PowerBound(alpha=1.0, p=1.0), drop_peer=MultiPowerLaw()),
    "annealing": AnnealingLaw,
    "mpl": MultiPowerLaw,
}
#: the model fit_loss_curve(s) use when none is named (chosen by cross-validation)
DEFAULT_MODEL = "effective-bound"


def names() -> tuple[str, ...]:
    """Registered model names, the default first."""
    return (DEFAULT_MODEL, *(n for n in MODELS if n != DEFAULT_MODEL))


def get_model(model: str | LossModel | None) -> LossModel:
    """A model instance from a registry name, an instance, or None (the default)."""
    if model is None:
        model = DEFAULT_MODEL
    if isinstance(model, LossModel):
        return model
    if not isinstance(model, str):
        raise TypeError(f"model must be a name ({', '.join(MODELS)}) or a LossModel, got {type(model).__name__}")
    key = model.strip().lower().replace("_", "-")
    if key not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(names())} "
                         "(or pass a cdfast.models.LossModel instance)")
    return MODELS[key]()
