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

from ._registry import DEFAULT_MODEL, MODELS, get_model, names
from .annealing import AnnealingLaw
from .average import Averaged
from .base import LossModel, Param
from .compare import Leaderboard, compare_models
from .convex import Bound, PowerBound
from .mpl import MultiPowerLaw

__all__ = ["LossModel", "Param", "MODELS", "DEFAULT_MODEL", "get_model", "names", "compare_models", "Leaderboard",
           "Bound", "PowerBound", "Averaged", "AnnealingLaw", "MultiPowerLaw"]
