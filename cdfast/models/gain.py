"""The prior on the size of the convex bound's noise term (the default model's and the forecaster's).

While the LR stays near its peak the bound's noise term ``G~^2 b'`` is nearly constant,
so a fit to the first part of a run (or to a constant-LR run) cannot tell it from the
loss floor ``L_inf``: the two trade off freely, and so does the gain a later cooldown is
predicted to bring.  What the runs in shared/data do say is how large that term is
relative to the loss: with ``f`` the member's effective-LR map,

    G~^2 f(eta_max) / L  ~  GAIN_PRIOR[0] * (eta_max / 1e-3)^GAIN_SLOPE,

the loss share a cooldown from the peak could remove (up to the log factor of ``b'``),
measured on full-run fits of both members on every second run (median 0.014-0.016, the
slope 0.24-0.32; docs/forecast.md scores the other half).  The prior is linear in the
coefficients, so it joins the bounded linear solve of variable projection as one more
relative residual per run (:class:`cdfast.models.fitting.CoefPrior`): ``G~^2 f(eta_max)``
against ``centre * L``, where ``L`` is the loss at the run's last fitted points.

It yields to the data: its width grows by ``GAIN_YIELD`` times the share by which the LR
has come down from its peak by the last fitted step (a decay is what separates the noise
term from the floor), taken over all the runs of a fit since they share the coefficient.
A fit to half a WSD run keeps it at full strength; a fit to a whole cosine run, whose
decay shows the term, holds it five times more loosely.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .fitting import PRIOR_NOISE, CoefPrior

__all__ = ["GAIN_PRIOR", "GAIN_SLOPE", "GAIN_PEAK_RANGE", "GAIN_YIELD", "gain_centre", "gain_weight", "gain_priors"]

#: centre (at a peak LR of 1e-3) and relative width of the prior on G~^2 f(eta_max) / L.
#: Estimated from full-run fits of both members on every second run of shared/data (validation
#: losses: median 0.014-0.016 at 25, 50 and 75% of a run, log-sd 0.27-0.35; training losses
#: 0.016-0.020, log-sd 0.45-0.50; the width, 0.2, is the spread left once the centre follows the
#: peak LR).
GAIN_PRIOR = (0.015, 0.2)
#: The centre grows with the peak LR as (eta_max / 1e-3)^GAIN_SLOPE (slopes 0.24-0.32 for both
#: members and both kinds of loss; it halves the log-sd of the centre's residual, 0.35 -> 0.19),
#: within the peak LRs it was measured on; outside them it stays at the range's edge.
GAIN_SLOPE = 0.27
GAIN_PEAK_RANGE = (1e-4, 3e-3)
#: The width grows by this factor times the LR's decay from its peak (2, 4 and 5 forecast alike
#: on subsets of the real runs; 0 held the prior against a visible cooldown).
GAIN_YIELD = 4.0


def gain_centre(eta_max: float) -> float:
    """The prior's centre for a run of peak LR ``eta_max`` (held at the measured range's edges)."""
    peak = min(max(float(eta_max), GAIN_PEAK_RANGE[0]), GAIN_PEAK_RANGE[1])
    return GAIN_PRIOR[0] * (peak / 1e-3) ** GAIN_SLOPE


def gain_weight(decay: float, noise: float = PRIOR_NOISE) -> float:
    """The prior residual's weight relative to one run's data (whose weights square-sum to 1).

    One prior width costs as much as an RMS misfit of ``noise`` over the run (the
    convention of the shape priors, :data:`cdfast.models.fitting.PRIOR_NOISE`); ``decay``
    in [0, 1] is how far the LR has come down from its peak (the prior yields).
    """
    return max(PRIOR_NOISE, noise) / (GAIN_PRIOR[1] * (1.0 + GAIN_YIELD * decay))


def gain_priors(model: Any, lrs: Sequence[np.ndarray], steps: Sequence[np.ndarray], ys: Sequence[np.ndarray],
                masks: Sequence[np.ndarray], noise: float = PRIOR_NOISE) -> list[CoefPrior]:
    """One :class:`CoefPrior` per run with fitted points, for a member with ``gain_row`` (a
    :class:`cdfast.models.convex.PowerBound`): ``G~^2 f(eta_max) ~ gain_centre(eta_max) * L``,
    ``L`` the median of the run's last five fitted losses, all weighted by the fit's largest decay
    (:func:`gain_weight`; ``noise`` is the losses' relative noise, for noisy training losses)."""
    decays, rows = [], []
    for x, s, y, m in zip(lrs, steps, ys, masks):
        if not np.any(m):
            continue
        seen = x[s[m] - 1]
        decays.append(1.0 - float(seen[-1]) / float(seen.max()) if seen.max() > 0 else 0.0)
        eta_max = float(x.max())
        rows.append((eta_max, gain_centre(eta_max) * float(np.median(y[m][-5:]))))
    w = gain_weight(max(decays, default=0.0), noise)
    return [CoefPrior(lambda theta, eta=eta_max: model.gain_row(theta, eta), target, w) for eta_max, target in rows]
