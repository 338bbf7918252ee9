"""cdfast: convex-optimisation loss bounds for learning-rate schedules.

Bu, Xu, Mao (ICLR 2026), "Convex Dominance in Deep Learning I"; Defazio et al. (2023)
Cor. 12; Schaipp et al. (2025).  See README.md for a tour.
"""

from . import schedules
from ._kernels._backends import available_backends
from .bounds import average_iterate_bound, bound_terms, last_iterate_bound
from .curve import bound_curve, bound_curve_terms
from .asymptotics import ExamResult, Q, asymptotic_constants, bound_vs_peak_lr, optimal_eta_ref, optimal_peak_lr, qualifying_exam, table1
from . import io
from . import data  # the sample run shipped with cdfast (cdfast/data/README.md)
from . import models
from .models import compare_models
from .fit import CurveFit, FitWarning, fit_loss_curve, fit_loss_curves
from .laws import (ChinchillaFit, HorizonFit, PeakLRFit, fit_chinchilla_law, fit_horizon_law, fit_horizon_law_by_group,
                   fit_peak_lr_law)
from .scaling import ScalingLaw2D
from .sweep import sweep
from .gradient import average_bound_gradient, bound_gradient
from .optimize import OptimalSchedule, optimal_schedule
from .plan import RefinedSchedule, SchedulePlan, plan_schedule, refine_schedule
from .reporting import Report, report
from .forecasting import Forecast, Forecaster, forecast

__version__ = "0.1.0"

__all__ = [
    "schedules",
    "available_backends",
    "average_iterate_bound",
    "bound_terms",
    "bound_curve",
    "bound_curve_terms",
    "last_iterate_bound",
    "io",
    "data",
    "CurveFit",
    "FitWarning",
    "models",
    "compare_models",
    "fit_loss_curve",
    "fit_loss_curves",
    "PeakLRFit",
    "fit_peak_lr_law",
    "HorizonFit",
    "fit_horizon_law",
    "fit_horizon_law_by_group",
    "ChinchillaFit",
    "fit_chinchilla_law",
    "ScalingLaw2D",
    "optimal_peak_lr",
    "bound_vs_peak_lr",
    "asymptotic_constants",
    "table1",
    "qualifying_exam",
    "ExamResult",
    "Q",
    "optimal_eta_ref",
    "sweep",
    "bound_gradient",
    "average_bound_gradient",
    "optimal_schedule",
    "OptimalSchedule",
    "plan_schedule",
    "SchedulePlan",
    "refine_schedule",
    "RefinedSchedule",
    "report",
    "Report",
    "forecast",
    "Forecast",
    "Forecaster",
]
