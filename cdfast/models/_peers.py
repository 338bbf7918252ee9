"""What the two peer laws share: input checks, the warmup convention, the run's prefix sums."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .._validate import as_steps, as_vector, check_values
from .base import FloatArray, IntArray, Param


def check_warmup(warmup: Any) -> int | None:
    """``None`` (find the peak) or a whole number of warmup steps >= 0."""
    if warmup is None:
        return None
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral):
        raise TypeError(f"warmup must be None or a whole number of steps, got {type(warmup).__name__} {warmup!r}")
    if warmup < 0:
        raise ValueError(f"warmup = {warmup} is negative; give the number of warmup steps (0 for none) or None")
    return int(warmup)


def last_warmup_step(lr: FloatArray, warmup: int | None) -> int:
    """The 1-based step ``K >= 1`` whose LR is the papers' ``eta_0``.

    ``warmup=None``: the first step at which the LR reaches its maximum (the peak that
    ends the warmup).  ``warmup=W``: step ``W`` (``W = 0`` means step 1: no warmup,
    ``eta_0 := eta_1``).
    """
    T = lr.shape[0]
    if warmup is None:
        return int(np.argmax(lr)) + 1
    if warmup > T:
        raise ValueError(f"warmup = {warmup} exceeds the {T} steps of lr; it counts steps inside the run")
    return max(warmup, 1)


def run_inputs(lr: Any, steps: Any) -> tuple[FloatArray, IntArray, FloatArray]:
    """Validated ``lr``, ``steps`` and ``P_tau = eta_1 + ... + eta_tau`` at the steps.

    ``P_tau`` is a running (prefix) sum, never a difference of two, so its relative error
    is at most ``tau`` ulp.  A step with ``P_tau = 0`` (no progress yet) has no loss in
    either law (``P^-alpha`` is infinite) and is refused.
    """
    lr = as_vector(lr, "lr")
    check_values(lr, "lr")
    steps = as_steps(steps, "steps", lr.shape[0])
    P = np.cumsum(lr)[steps - 1]
    if not P[0] > 0.0:
        i = int(np.argmax(P > 0.0)) if (P > 0.0).any() else len(P)
        raise ValueError(
            f"steps[0] = {steps[0]} comes before any progress: eta_1 + ... + eta_{steps[0]} = 0, "
            f"so S1^-alpha is infinite there; drop the first {i} step(s) (those before the first positive LR)"
        )
    return lr, steps, P


def check_theta(theta: Any, shape: tuple[Param, ...], model: str) -> FloatArray:
    """Shape parameters as float64, one per Param, finite and inside the bounds."""
    th = np.asarray(theta, dtype=np.float64)
    if th.shape != (len(shape),):
        names = ", ".join(p.name for p in shape)
        raise ValueError(f"{model}: theta must hold {len(shape)} values ({names}), got shape {th.shape}")
    for p, x in zip(shape, th.tolist()):
        if not math.isfinite(x):
            raise ValueError(f"{model}: {p.name} = {x} is not finite; pass a value in [{p.lo}, {p.hi}]")
        if p.fixed and x != p.lo:
            raise ValueError(
                f"{model}: {p.name} = {x!r} differs from its fixed value {p.lo!r} ({p.doc}); "
                "pass the fixed value, or build the model with bounds for it to fit it"
            )
        if not p.lo <= x <= p.hi:
            raise ValueError(
                f"{model}: {p.name} = {x!r} is outside its bounds [{p.lo}, {p.hi}] ({p.doc}); "
                "clip it into the bounds or widen them in the model's options"
            )
    return th
