"""How far a prediction reaches beyond what the fitted runs show (``CurveFit.extrapolation``).

A fitted loss model predicts any schedule, but it has only seen the fitted runs.  Three ways
a schedule can leave them, each widening :meth:`CurveFit.interval` and each stated in
words by :meth:`Extrapolation.notes` (``cdfast predict`` prints them):

* **horizon**: steps beyond the last fitted step (the log of the ratio);
* **peak LR**: the schedule's peak away from every fitted run's (the log of the ratio);
* **an abrupt fall**: the LR falling within a short window (``ABRUPT_WINDOW`` of the
  horizon) by more of its peak than in any fitted run, e.g. a step decay predicted from
  cosine and WSD runs.  Right after such a fall the convex-bound models keep the
  pre-fall noise for too long (eq. 2.4's ``1 / (P_tau - P_j)`` memory): on the noisy
  quadratic of ``bench/synthetic_cases.py`` the bound's members predict the loss 0.7-0.9%
  too high for a few hundred steps after a 10x drop, and runs without such falls cannot
  show how fast a network forgets.  The default model therefore hands the steps after
  such a fall to a law whose loss drop saturates in the size of the fall
  (:func:`drop_weight`, :func:`peak_taper`; ``CurveFit.predict``).  A fall the fitted runs
  contain is not named as an extrapolation, but it still widens the interval: no model
  here follows it exactly.  A fit whose only decays are abrupt falls warns
  (:func:`abrupt_decays_only`).

Nothing here fits anything: it compares schedules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import grey_closing, maximum_filter1d

FloatArray = NDArray[np.float64]

__all__ = ["Extrapolation", "lr_falls", "abrupt_falls", "extrapolation", "drop_weight", "peak_taper",
           "abrupt_decays_only", "decayed_at"]

#: the window of an abrupt fall, as a fraction of the schedule's horizon T (40 of 20k steps).  A
#: step decay falls within one step.  Falls over 1% of T are not abrupt to a network: the real
#: two-stage runs of shared/data (the LR falling to 0.375x over 2000 of 200k steps) are
#: predicted from a plain WSD run within 0.12% at the end of the fall by the default's own
#: memory (3000 steps after it), and handing their steps after the fall to the multi-power law
#: (as drop_weight would with a 1% window) moved their final-loss error from 0.26% at most to 1.4%
ABRUPT_WINDOW = 0.002
#: Extrapolation.notes names an abrupt fall when it exceeds the fitted runs' largest by this
#: much of the peak, and drop_weight starts here: a linear cooldown over 1% (5%) of the run falls
#: 0.2 (0.04) per window and is not named, a step decay by 10x falls 0.9
ABRUPT_NOTE = 0.3
#: ... a horizon when it exceeds the last fitted step by this factor, a peak LR when it is
#: this factor away from the nearest fitted peak
HORIZON_NOTE = 1.05
PEAK_NOTE = 1.1
#: ... and a schedule that decays when it ends this factor before the shortest fitted run that
#: decays: on the real runs (protocol C of bench/validate_predictions.py), runs 1.4x shorter than
#: the fitted ones were predicted as well as runs of their length (worst 0.20%, 18 of 18 inside
#: their 90% intervals), 2x shorter a little worse (0.34%, 31 of 33), 3.3x shorter much worse
#: (0.56%, 8 of 15)
SHORT_NOTE = 1.5


def lr_falls(lr: FloatArray, window: int | None = None) -> FloatArray:
    """``fall[t]``: how far the LR at step ``t + 1`` lies below the largest LR of the ``window``
    steps before it, as a fraction of the schedule's peak (0 where it does not fall).

    ``window`` defaults to ``ABRUPT_WINDOW * T`` (at least 1).  A linear cooldown over a
    fraction ``c`` of the run falls ``ABRUPT_WINDOW / c`` per window, a step decay by a
    factor ``k`` from the peak ``1 - 1/k`` at once.
    """
    x = np.asarray(lr, dtype=np.float64)
    top = float(x.max()) if x.size else 0.0
    if x.size < 2 or top <= 0.0:
        return np.zeros(x.shape)
    w = max(1, int(round(ABRUPT_WINDOW * x.shape[0]))) if window is None else int(window)
    # trailing maximum over x[t - w + 1 .. t] (scipy's centred filter shifted by its origin), then
    # compare step t + 1 with the window ending at t
    trailing = maximum_filter1d(x, size=w, origin=(w - 1) // 2, mode="nearest")
    fall = np.zeros(x.shape)
    fall[1:] = np.maximum(trailing[:-1] - x[1:], 0.0) / top
    return fall


def abrupt_falls(lr: FloatArray) -> FloatArray:
    """:func:`lr_falls` of ``lr`` with every dip narrower than the window filled first: the falls
    that count.  A skipped step (one zero LR) leaves the iterate where it was, and the bound
    predicts it exactly; a greyscale closing fills such dips and keeps steps down.  The end is
    padded with the last LR, so that a fall in the last steps stays a fall, not a dip."""
    x = np.asarray(lr, dtype=np.float64)
    if x.size < 2:
        return np.zeros(x.shape)
    w = max(1, int(round(ABRUPT_WINDOW * x.shape[0])))
    closed = grey_closing(np.r_[x, np.full(w + 1, x[-1])], size=w + 1, mode="nearest")[:x.shape[0]]
    return lr_falls(closed, w)


@dataclass(frozen=True)
class Extrapolation:
    """How a schedule's prediction reaches beyond the fitted runs (:func:`extrapolation`).

    Attributes
    ----------
    T : int
        The schedule's horizon.
    fitted_T : int
        The last fitted step of any fitted run.
    own_schedule : bool
        The schedule is a fitted run's own (the refits of ``CurveFit.interval`` already vary
        its continuation, so its horizon adds nothing).
    peak_lr, nearest_peak : float
        The schedule's peak LR and the nearest peak among the fitted runs (nan when no run's
        LRs are known).
    n_peaks : int
        How many different peak LRs the fitted runs have.
    fall, fall_step : float, int
        The schedule's largest abrupt fall (:func:`abrupt_falls`, a fraction of its peak) and
        the 1-based step it reaches (0 when none).
    seen_fall : float
        The fitted runs' largest abrupt fall over their fitted steps.
    after_fall : str
        What predicts the loss after an abrupt fall, when not the model itself (the default
        model's multi-power law, ``CurveFit.predict``), or why that could not be fitted.
    decay_T : int
        The horizon of the shortest fitted run whose LR decays (below ``DECAY_LEVEL`` of its
        peak, after it, by its last fitted step), when the schedule decays too; 0 otherwise.
    """

    T: int
    fitted_T: int
    own_schedule: bool
    peak_lr: float
    nearest_peak: float
    n_peaks: int
    fall: float
    fall_step: int
    seen_fall: float
    after_fall: str = ""
    decay_T: int = 0

    @property
    def horizon_ratio(self) -> float:
        """``T / fitted_T`` (1 for a fitted run's own schedule or a horizon inside the fit)."""
        return 1.0 if self.own_schedule else max(self.T / self.fitted_T, 1.0)

    @property
    def short_ratio(self) -> float:
        """``decay_T / T`` for a decaying schedule that ends before the shortest decaying fitted run
        (1 otherwise, and for a fitted run's own schedule)."""
        return 1.0 if self.own_schedule or self.decay_T <= self.T else self.decay_T / self.T

    @property
    def peak_distance(self) -> float:
        """``|log(peak_lr / nearest_peak)|`` (0 when unknown)."""
        if not (self.peak_lr > 0 and self.nearest_peak > 0):
            return 0.0
        return abs(math.log(self.peak_lr / self.nearest_peak))

    @property
    def abrupt(self) -> float:
        """How much more abruptly than any fitted run the schedule falls (fraction of its peak)."""
        return max(self.fall - self.seen_fall, 0.0)

    @property
    def any(self) -> bool:
        """Whether :meth:`notes` has something to say."""
        return bool(self.notes())

    def notes(self) -> list[str]:
        """One sentence per way the prediction extrapolates (empty inside the fitted runs)."""
        out = []
        if self.horizon_ratio > HORIZON_NOTE:
            out.append(f"horizon: step {self.T} is {self.horizon_ratio:.3g}x the last fitted step ({self.fitted_T}); "
                       "the loss beyond it is an extrapolation (the interval widens with the ratio)")
        if self.short_ratio > SHORT_NOTE:
            out.append(f"horizon: the schedule ends at step {self.T}, {self.short_ratio:.3g}x before the shortest fitted "
                       f"run that decays ({self.decay_T} steps), so it decays earlier in training than any fitted run "
                       "shows; the interval does not widen for that (on real runs, 3.3x shorter runs were missed by up "
                       "to 0.56% and fell outside their 90% intervals 7 times in 15): fit a run of about this length")
        ratio = math.exp(self.peak_distance)
        if ratio > PEAK_NOTE:
            side = "above" if self.peak_lr > self.nearest_peak else "below"
            if self.n_peaks == 1:
                out.append(f"peak LR: {self.peak_lr:.4g} is {ratio:.3g}x {side} the fitted runs' single peak "
                           f"({self.nearest_peak:.4g}); with one peak how the loss moves with it is the model's "
                           "assumption, not measured: fit runs at two or more peaks")
            else:
                out.append(f"peak LR: {self.peak_lr:.4g} is {ratio:.3g}x {side} the nearest fitted peak "
                           f"({self.nearest_peak:.4g}); the interval widens with the ratio")
        if self.abrupt > ABRUPT_NOTE:
            then = (f"the loss after it is {self.after_fall}" if self.after_fall else
                    "the loss right after it is likely predicted too high for a while (the model forgets the noise "
                    "of the larger LR slowly)")
            out.append(f"abrupt fall: the LR falls by {100 * self.fall:.3g}% of its peak within {ABRUPT_WINDOW:.1%} "
                       f"of the run by step {self.fall_step}, more abruptly than in any fitted run "
                       f"({100 * self.seen_fall:.2g}% at most); {then}; an extrapolation either way (a fitted run "
                       "with such a fall shows how the loss follows it)")
        return out

    def per_step(self, lr: FloatArray, steps: NDArray[np.int64]) -> tuple[FloatArray, float, FloatArray]:
        """``(h, rho, e)`` at ``steps`` for ``CurveFit.interval``: the log horizon ratio per step,
        the log peak distance, and the largest abrupt fall reached by each step.

        The fall counts whether or not a fitted run shows one: the bound's memory cannot
        follow it either way.  On the quadratic with a 10x step-decay run among the fitted
        ones, the fit misses that run's own losses right after its fall by up to 0.7% and
        other drop schedules by up to 0.66% (from 0.75% without it); measuring the fall
        does not remove the model's error there, so it does not narrow the interval.
        """
        if self.own_schedule:
            h = np.zeros(steps.shape)
        else:
            h = np.log(np.maximum(steps / float(self.fitted_T), 1.0))
        reached = np.maximum.accumulate(abrupt_falls(lr))[steps - 1] if lr.size else np.zeros(steps.shape)
        return h, self.peak_distance, reached


def drop_weight(lr: FloatArray, steps: NDArray[np.int64]) -> FloatArray:
    """The weight, at each of ``steps``, of a loss-drop law in the default model's prediction:
    0 until the LR has fallen abruptly by ``ABRUPT_NOTE`` of its peak (:func:`abrupt_falls`), then
    rising linearly with the largest fall reached, to 1 for a fall to zero (6/7 after a 10x
    step decay).  It counts falls whether or not a fitted run shows one: the bound's memory
    cannot follow them either way (:meth:`Extrapolation.per_step`).

    Why a law takes over there: after a fall the convex bound forgets the larger LR's noise
    as ``1 / (P_tau - P_j)``, slower than a network or a quadratic does, and cooldown-only
    runs cannot show it otherwise (docs/models.md: a learnt memory was measured and
    rejected).  The multi-power law's loss drop saturates in the size of the fall, the
    transient Luo et al. (2025) validated on real step decays.  On the noisy quadratic
    (protocol S of bench/validate_predictions.py) the weighted mean predicts the final loss
    and the transient better than either model alone (docs/models.md).
    """
    if np.asarray(lr).size < 2:
        return np.zeros(steps.shape)
    reached = np.maximum.accumulate(abrupt_falls(lr))[steps - 1]
    return np.clip((reached - ABRUPT_NOTE) / (1.0 - ABRUPT_NOTE), 0.0, 1.0)


#: a run "decays" when its LR at the fitted steps goes below this fraction of its peak
DECAY_LEVEL = 0.5


def decayed_at(lr: FloatArray, steps: NDArray[np.int64]) -> int | None:
    """The first of the (1-based, increasing) ``steps`` where ``lr`` is below ``DECAY_LEVEL`` of its
    peak, or None when it never is there."""
    x = np.asarray(lr, dtype=np.float64)
    low = x[np.asarray(steps) - 1] < DECAY_LEVEL * x.max() if len(steps) else np.zeros(0, bool)
    return int(steps[int(np.argmax(low))]) if low.any() else None


def abrupt_decays_only(lrs: list, steps: list, masks: list, runs: list | None = None) -> str | None:
    """A warning when every fitted run whose LR decays (below ``DECAY_LEVEL`` of its peak at a
    fitted step) does so through an abrupt fall (:func:`drop_weight`), and at least one does.

    The convex bound cannot follow such a fall (its memory forgets the larger LR's noise too
    slowly), so what a convex-bound model learns about decays then comes from a fall it
    does not describe, and its parameters bend to it.  On the noisy quadratic of
    bench/synthetic_cases.py, the default fitted on a constant and a 10x step-decay run fits
    both within 0.35% yet predicts a cosine's final loss 1.1% too low and a WSD's 0.37% (the
    multi-power law 0.10% and 0.10%); with a cosine run in the fit too, 0.16-0.23%.
    ``runs`` are the runs' indices for the message (default 0, 1, ...).
    """
    runs = list(range(len(lrs))) if runs is None else list(runs)
    abrupt = []
    for i, (x, s, m) in enumerate(zip(lrs, steps, masks)):
        first = None if x is None else decayed_at(x, s[m])
        if first is None:
            continue
        if drop_weight(x, np.array([first]))[0] == 0.0:
            return None  # a gradual decay among the fitted runs
        abrupt.append((runs[i], first))
    if not abrupt:
        return None
    where = ", ".join(f"run {i} by step {t}" for i, t in abrupt) if len(runs) > 1 else f"by step {abrupt[0][1]}"
    return (f"the fitted runs decay their LR only abruptly ({where}): a convex-bound model cannot follow such a fall "
            "and bends its parameters to it, so its predictions of gradual decays (cosine, WSD cooldowns) may err by "
            "1% or more (docs/models.md); fit a run with a gradual decay too, or compare with model='mpl'")


#: the hand-over to a loss-drop law after an abrupt fall tapers off with the distance of the
#: schedule's peak LR from the fitted peak, to nothing at this factor (the trust region of a plan
#: from one run): the law does not transfer across peak LRs (protocol D)
DROP_PEAK_RANGE = 1.25


def peak_taper(peak: float, fitted_peak: float) -> float:
    """``max(0, 1 - |log(peak / fitted_peak)| / log(DROP_PEAK_RANGE))``: 1 at the fitted peak, 0 from
    ``DROP_PEAK_RANGE`` times away, linear in the log between, so that a prediction moves
    continuously with the peak LR."""
    if not (peak > 0 and fitted_peak > 0):
        return 0.0
    return max(0.0, 1.0 - abs(math.log(peak / fitted_peak)) / math.log(DROP_PEAK_RANGE))


def extrapolation(lr: FloatArray, fit_lrs: tuple, fitted_T: tuple) -> Extrapolation:
    """The :class:`Extrapolation` of a prediction under ``lr`` from runs with LRs ``fit_lrs``
    (None where unknown) fitted up to steps ``fitted_T``."""
    x = np.asarray(lr, dtype=np.float64)
    own = any(v is not None and v.shape == x.shape and np.array_equal(v, x) for v in fit_lrs)
    known = [(v, t) for v, t in zip(fit_lrs, fitted_T) if v is not None]
    peaks = np.array(sorted({float(v.max()) for v, _ in known if float(v.max()) > 0}))
    eta = float(x.max()) if x.size else 0.0
    nearest = float(peaks[np.argmin(np.abs(np.log(eta / peaks)))]) if peaks.size and eta > 0 else math.nan
    seen = max((float(abrupt_falls(v)[:t].max()) for v, t in known if t > 0), default=0.0)
    falls = abrupt_falls(x)
    i = int(np.argmax(falls)) if falls.size else 0
    fall = float(falls[i]) if falls.size else 0.0
    # peaks within 1% of each other are one peak (a cosine's largest discrete value is not quite its peak)
    n_peaks = int(peaks.size and 1 + np.count_nonzero(np.diff(np.log(peaks)) > 0.01))
    decaying = [int(v.shape[0]) for v, t in known if _decays(v, t)]
    decay_T = min(decaying) if decaying and _decays(x, x.shape[0]) else 0
    return Extrapolation(T=int(x.shape[0]), fitted_T=max(int(t) for t in fitted_T) if fitted_T else int(x.shape[0]),
                         own_schedule=own, peak_lr=eta, nearest_peak=nearest, n_peaks=n_peaks,
                         fall=fall, fall_step=i + 1 if fall > 0 else 0, seen_fall=seen, decay_T=decay_T)


def _decays(lr: FloatArray, last: int) -> bool:
    """Whether ``lr`` falls below ``DECAY_LEVEL`` of its peak after reaching it, by step ``last``
    (a warmup's low start does not count)."""
    k = int(np.argmax(lr)) if lr.size else 0
    return bool(lr.size) and k < last and bool(np.any(lr[k:last] < DECAY_LEVEL * lr[k]))
