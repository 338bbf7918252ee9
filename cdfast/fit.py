"""Fitting loss models to logged loss curves; predicting other schedules.

The public home of the fitting API (``cdfast.fit.fit_loss_curve`` and friends).  The code
lives in :mod:`cdfast.models._curvefit`, inside the models package, so that the model
comparison (:mod:`cdfast.models.compare`) can fit models without importing upwards.
"""

from .models._curvefit import (BURN_FRAC, COEF_PRIOR_DRAW, HUBER_DELTA, K_ABRUPT, K_HORIZON, K_PEAK, MODEL_ERROR,
                               PEAK_POWER_BOUNDS, POOR_RMS, PRIOR_DRAW, WEIGHT_POWER, CurveFit, FitWarning,
                               fit_loss_curve, fit_loss_curves, r_squared)
from .models.transfer import Extrapolation

__all__ = ["CurveFit", "Extrapolation", "FitWarning", "fit_loss_curve", "fit_loss_curves", "r_squared"]
