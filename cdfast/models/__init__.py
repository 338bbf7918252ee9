"""Loss models: learning-rate sequence in, predicted loss curve out.

Every model implements :class:`LossModel` (separable: linear coefficients times a basis
that depends on a few shape parameters) and is fitted by one routine
(:func:`cdfast.models.fitting.fit_separable`).  The registry :data:`MODELS` maps names to
factories; :data:`DEFAULT_MODEL` is the model that predicts best on held-out data (see
docs/models.md and ``bench/validate_predictions.py``).

============  ===========================================================================
name          model
============  ===========================================================================
bound         the paper's Generalization 1: ``L_inf + D~^2 a_tau + G~^2 b_tau`` (eq. 2.4)
bound-alpha   the same with a power on the distance term, ``D~^2 a_tau^alpha``
power-bound   the convex bound on the effective LR ``eta^p`` with ``D~^2 a'^alpha``
sat-bound     the same on the saturating effective LR ``eta / (1 + eta / eta_c)``
effective-bound  the mean prediction of power-bound and sat-bound (the default); the paper's
              form instead when the data do not need their extra parameters
annealing     Tissue et al. (2024): ``L0 + A S1^-alpha - C S2``
mpl           Luo et al. (ICLR 2025), the multi-power law (seven parameters)
============  ===========================================================================
"""

from __future__ import annotations

from typing import Callable

from .annealing import AnnealingLaw
from .average import Averaged
from .base import LossModel, Param
from .convex import Bound, PowerBound
from .mpl import MultiPowerLaw

__all__ = ["LossModel", "Param", "MODELS", "DEFAULT_MODEL", "get_model", "names", "compare_models", "Leaderboard",
           "Bound", "PowerBound", "Averaged", "AnnealingLaw", "MultiPowerLaw"]

#: name -> factory of a model with its default options
MODELS: dict[str, Callable[[], LossModel]] = {
    "bound": Bound,
    "bound-alpha": lambda: PowerBound(alpha="fit", p=1.0),
    "power-bound": lambda: PowerBound(alpha="fit", p="fit"),
    "sat-bound": lambda: PowerBound(alpha="fit", lr_map="saturating"),
    "effective-bound": lambda: Averaged(
        [PowerBound(alpha="fit", p="fit"), PowerBound(alpha="fit", lr_map="saturating")], "effective-bound",
        "the convex bound on the effective LR: the mean of power-bound and sat-bound, or the paper's form "
        "when the data follow it", nested=PowerBound(alpha=1.0, p=1.0)),
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


from .compare import Leaderboard, compare_models  # noqa: E402  (compare imports the registry above)
