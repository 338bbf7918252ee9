"""The learning rates a run really used: ``eta_1 .. eta_T`` (``lr[i] = eta_{i+1}``).

Logs give the LR every ``k`` steps; eq. (2.4) needs every step.  Three sources, in
order of preference:

1. **The run's config** (llm-baselines / epfml schedules-and-scaling trainer):
   :func:`lr_from_config` rebuilds the schedule with the trainer's own formulas, and
   :func:`check_logged` compares it with *every* logged LR.  A difference beyond
   :data:`LR_RTOL` (relative) refuses the run with the run name, the step and both
   values: a config that does not describe the run must not silently corrupt a fit.
2. **The logged LR** where no formula is known (unknown scheduler, generic logs):
   :func:`fill_logged` interpolates linearly between logged steps (exact wherever the
   schedule is linear between two logged steps: warmup ramps, constant stretches, linear
   cooldowns, with kinks at logged steps) and holds the first/last logged value before
   the first/after the last logged step.  For a smooth schedule the error of linear
   interpolation with spacing ``k`` is at most ``k^2/8 max|eta''|``; for a cosine decay
   from ``eta`` over ``T`` steps that is ``eta pi^2 k^2 / (16 T^2)``.
3. **The user** (``read_log(..., lr=ARRAY)``).

Missing cosine floors (``cos_final_lr`` null or -1: the trainer then used its built-in
floor) are inferred from the logged LR by least squares (:func:`infer_cos_floor`) and
checked like everything else.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from numpy.typing import NDArray

from .. import schedules

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Relative tolerance of the check of a rebuilt LR against a logged one.  The logged
#: values of the trainer's float64 arithmetic agree with the rebuild to ~1e-12 (see
#: docs/io.md); 1e-6 also admits LRs logged in float32 (TensorBoard).
LR_RTOL = 1e-6
#: How :func:`fill_logged` fills the steps between logged LRs (stated in ``meta["lr"]``).
FILL_RULE = "linear between logged steps; first/last logged value held outside them"

KNOWN_SCHEDULERS = ("cos", "linear", "cos_inf", "wsd", "none")
WSD_DECAYS = ("linear", "sqrt", "cosine", "square", "miror_cosine", "exp")


def _number(config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    v = config.get(key, default)
    return default if v is None else v


def _floor_given(config: Mapping[str, Any]) -> float | None:
    """The absolute cosine floor ``cos_final_lr`` when the config sets one (> 0)."""
    v = config.get("cos_final_lr")
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def describe(config: Mapping[str, Any]) -> str:
    kind = config.get("scheduler")
    T, W, peak = config.get("iterations"), config.get("warmup_steps"), config.get("lr")
    if kind == "wsd":
        return (f"wsd(lr={peak}, T={T}, warmup={W}, fract_decay={config.get('wsd_fract_decay')}, "
                f"decay={config.get('decay_type') or 'linear'})")
    if kind in ("cos", "linear"):
        return f"{kind}(lr={peak}, T={T}, warmup={W}, final={config.get('cos_final_lr')})"
    return f"{kind}(lr={peak}, T={T}, warmup={W})"


def lr_from_config(config: Mapping[str, Any], *, cos_floor: float | None = None) -> FloatArray:
    """Rebuild ``eta_1 .. eta_T`` (``lr[t] = eta_{t+1}``) from an llm-baselines run config.

    The trainer (epfml/schedules-and-scaling, llm-baselines) steps a PyTorch scheduler
    after every update; ``lr[t]`` is its value after ``t`` steps.  Keys: ``lr`` (peak),
    ``iterations`` (T), ``warmup_steps`` (W), ``scheduler``:

    * ``"cos"`` / ``"linear"``: ``OneCycleLR(div_factor=100, pct_start=W/T)``: a cosine
      (linear) ramp from 1% of the peak reaching it at step ``W - 1``, then a cosine
      (linear) decay reaching the floor at step ``T - 1``
      (:func:`cdfast.schedules.cosine_onecycle`).  The floor is ``cos_final_lr``
      (absolute); when it is missing, null or negative the trainer used a built-in floor
      that this function cannot know: pass ``cos_floor=`` (absolute), or read the run
      with :func:`cdfast.io.read_log`, which infers it from the logged LR.
    * ``"wsd"``: linear warmup ``t/W + (1 - t/W)/100`` for ``t < W``, then 1 until
      ``T - int(wsd_fract_decay * T)``, then the cooldown ``decay_type`` (``linear``,
      ``sqrt``, ``cosine``, ``square``, ``miror_cosine``, ``exp``) down to
      ``wsd_final_lr_scale`` at step ``T``; the last LR, at ``T - 1``, stays positive.
    * ``"cos_inf"``: the same warmup, a cosine down to 10% of the peak at
      ``T - cos_inf_steps``, then 10% constant.
    * ``"none"``: no scheduler, the peak LR at every step.

    Decays are evaluated without cancellation (integer numerators ``T - t``), so they
    agree with the trainer's own arithmetic to ~1e-12 relative and are accurate where
    the bound is most sensitive.
    """
    try:
        peak = float(config["lr"])
        T = int(config["iterations"])
        W = int(_number(config, "warmup_steps", 0))
        kind = str(_number(config, "scheduler", "none"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"config lacks a usable lr/iterations entry ({exc!r}); cannot rebuild the LR sequence") from None
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError(f"config['lr'] = {peak!r} must be a positive peak learning rate")
    if T < 1:
        raise ValueError(f"config['iterations'] = {T} must be >= 1")
    if T > 1 << 24:  # size before allocating (a few arrays of T floats): one clear line, not a MemoryError
        from .._memory import check_fits

        check_fits(T, what=f"config['iterations'] = {T}", arrays=3,
                   fix="check the config's iterations, or pass the LRs with lr=")
    if not 0 <= W < T and kind != "none":
        raise ValueError(f"config['warmup_steps'] = {W} must lie in [0, iterations = {T})")
    t = np.arange(T, dtype=np.float64)
    warm = t / W + (1.0 - t / W) / 100.0 if W else None

    if kind in ("cos", "linear"):
        floor = _floor_given(config) if cos_floor is None else float(cos_floor)
        if floor is None:
            raise ValueError(
                f"config['cos_final_lr'] = {config.get('cos_final_lr')!r}: the {kind} schedule's floor is not in "
                "the config (the trainer used its built-in one); pass cos_floor= or read the run with "
                "cdfast.io.read_log, which infers the floor from the logged LR and checks it")
        if not (math.isfinite(floor) and 0 <= floor <= peak):
            raise ValueError(f"cos_floor = {floor!r} must lie in [0, peak lr = {peak}]")
        if W < 2:
            raise ValueError(f"config['warmup_steps'] = {W}: OneCycleLR schedules need warmup_steps >= 2")
        if kind == "cos":
            return peak * schedules.cosine_onecycle(T, W, init=0.01, final=floor / peak)
        out = np.empty(T)
        out[:W] = peak * (0.01 + 0.99 * (t[:W] / (W - 1)))
        out[W:] = floor + (peak - floor) * (np.arange(T - 1 - W, -1, -1, dtype=np.float64) / (T - W))
        return out
    if kind == "cos_inf":
        n_inf = int(_number(config, "cos_inf_steps", 0))
        end = T - n_inf
        if not W < end <= T:
            raise ValueError(f"config['cos_inf_steps'] = {n_inf} leaves no cosine phase after the warmup of {W}")
        s = np.full(T, 0.1)
        x = t[W:end]
        s[W:end] = 0.1 + 0.9 * np.sin((end - x) * (math.pi / (2.0 * (end - W)))) ** 2
        if W:
            s[:W] = warm[:W]
        return peak * s
    if kind == "wsd":
        if config.get("wsd_exponential_decay"):
            raise ValueError("config['wsd_exponential_decay'] is set: that cooldown's formula is not known here")
        frac = float(_number(config, "wsd_fract_decay", 0.0))
        decay = str(_number(config, "decay_type", "linear"))
        final = float(_number(config, "wsd_final_lr_scale", 0.0))
        if decay not in WSD_DECAYS:
            raise ValueError(f"config['decay_type'] = {decay!r} is not one of {WSD_DECAYS}")
        n_anneal = int(frac * T)  # the trainer's own rounding
        n_hold = T - n_anneal
        s = np.ones(T)
        if n_anneal > 0:
            left = np.arange(T - n_hold, 0, -1, dtype=np.float64)  # T - t for t = n_hold .. T-1
            u = left / n_anneal  # 1 at the start of the cooldown
            x = (n_anneal - left) / n_anneal  # (t - n_hold) / n_anneal, exact numerator
            if decay == "linear":
                f = u
            elif decay == "sqrt":  # 1 - sqrt(x)
                f = u / (1.0 + np.sqrt(x))
            elif decay == "cosine":  # (1 + cos(pi x)) / 2
                f = np.sin(u * (math.pi / 2.0)) ** 2
            elif decay == "square":  # 1 - x^2
                f = u * (1.0 + x)
            elif decay == "miror_cosine":  # 2 linear - cosine
                f = 2.0 * u - np.sin(u * (math.pi / 2.0)) ** 2
            else:  # exp: final ** x (the final factor carries the whole shape)
                f = None
            s[n_hold:] = final ** x if f is None else final + (1.0 - final) * f
        if W:
            s[:W] = warm[:W]
        return peak * s
    if kind == "none":
        return np.full(T, peak)
    raise ValueError(f"config['scheduler'] = {kind!r} is not supported; expected one of {KNOWN_SCHEDULERS}")


def fill_logged(T: int, idx: IntArray, values: FloatArray, *, what: str = "logged LR") -> tuple[FloatArray, bool]:
    """``lr[0 .. T-1]`` from LRs logged at indices ``idx`` (strictly increasing, >= 0).

    Linear interpolation between logged indices; the first (last) logged value is held
    before (after) them.  A value logged at index ``T`` or later (the schedule's value
    after the last update, which some trainers log) is used for interpolation only.
    Returns ``(lr, exact)`` with ``exact`` True when every index ``0 .. T-1`` was logged.
    """
    idx = np.asarray(idx, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if idx.size == 0 or idx[0] >= T:
        raise ValueError(f"{what}: no logged learning rate inside steps 1..{T}")
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{what}: the LR logged for update {idx[i] + 1} is {float(values[i])!r}; "
                         "learning rates must be finite and >= 0")
    lr = np.interp(np.arange(T, dtype=np.float64), idx.astype(np.float64), values)
    return lr, bool(np.count_nonzero(idx < T) == T)


def check_logged(lr: FloatArray, idx: IntArray, values: FloatArray, *, name: str, what: str,
                 rtol: float = LR_RTOL, step_offset: int = 0) -> dict[str, Any]:
    """Compare ``lr[idx]`` with logged ``values``; raise ValueError past ``rtol``.

    The test is ``|lr - logged| <= rtol * |logged| + 1e-12 * max|logged|`` (the absolute
    part admits an LR logged as exactly 0).  ``step_offset`` converts an LR index to the
    logged step for the message.  Returns ``{"checked": n, "max_rel_diff": ...}``.
    """
    idx = np.asarray(idx, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if idx.size == 0:
        return {"checked": 0, "max_rel_diff": None, "rtol": rtol}
    got = lr[idx]
    diff = np.abs(got - values)
    scale = np.abs(values)
    atol = 1e-12 * float(scale.max())
    bad = diff > rtol * scale + atol
    rel = diff / np.maximum(scale, np.finfo(np.float64).tiny)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(
            f"run {name!r}: the LR {what} differs from the logged LR at step {int(idx[k]) + step_offset}: "
            f"rebuilt {float(got[k])!r}, logged {float(values[k])!r} (relative difference {rel[k]:.3g} > {rtol:g}); "
            f"{int(bad.sum())} of {idx.size} logged values disagree. Pass lr= (an array or an LR column) "
            "to read_log to override")
    return {"checked": int(idx.size), "max_rel_diff": float(rel.max()), "rtol": rtol}


def infer_cos_floor(config: Mapping[str, Any], idx: IntArray, values: FloatArray) -> float:
    """The absolute floor ``f`` of a OneCycle cosine from logged LRs, by least squares.

    In the decay (``t >= W``) the LR is ``f + (peak - f) c_t`` with the known shape
    ``c_t = sin^2(pi (T-1-t) / (2 (T-W)))``, linear in ``f``:
    ``f = sum (v - peak c)(1 - c) / sum (1 - c)^2``.
    """
    peak, T, W = float(config["lr"]), int(config["iterations"]), int(_number(config, "warmup_steps", 0))
    idx = np.asarray(idx, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    decay = (idx >= W) & (idx < T)
    if W < 2 or not decay.any():
        raise ValueError("no logged LR in the cosine decay to infer its floor from")
    c = np.sin((T - 1 - idx[decay]) * (math.pi / (2.0 * (T - W)))) ** 2
    w = 1.0 - c
    den = float(np.dot(w, w))
    if den < 1e-6:
        raise ValueError("the logged LRs all lie at the start of the cosine decay; its floor cannot be inferred")
    f = float(np.dot(values[decay] - peak * c, w) / den)
    return min(max(f, 0.0), peak)


def resolve_from_config(config: Mapping[str, Any], idx: IntArray, values: FloatArray, *, name: str,
                        branch_step: int = 0, parent_lr: FloatArray | None = None, parent_name: str | None = None,
                        rtol: float = LR_RTOL) -> tuple[FloatArray, str, dict[str, Any]]:
    """The LR of an llm-baselines run: its config (checked), or its logged LR.

    ``idx, values``: logged LRs as ``lr[idx] = values`` (the trainer logs ``lr[t]`` at
    iteration ``t``).  ``branch_step`` N > 0: the run was resumed from a checkpoint at
    step N of another run (``resume_from``), whose LR it used for ``lr[0 .. N-1]``;
    ``parent_lr`` is that run's resolved LR when its export was found.
    """
    T = int(config["iterations"])
    idx, values = np.asarray(idx, dtype=np.int64), np.asarray(values, dtype=np.float64)
    all_idx, all_values = idx[idx >= 0], values[idx >= 0]  # the value logged at t = T helps interpolate
    inside = (idx >= 0) & (idx < T)
    idx, values = idx[inside], values[inside]
    meta: dict[str, Any] = {"schedule": describe(config)}
    N = int(branch_step)
    if N:
        meta["branch_step"] = N
        meta["parent"] = parent_name
    source: str
    lr: FloatArray | None = None
    known = str(config.get("scheduler")) in KNOWN_SCHEDULERS and not config.get("wsd_exponential_decay")
    if known:
        floor = None
        if config.get("scheduler") in ("cos", "linear") and _floor_given(config) is None:
            try:
                floor = infer_cos_floor(config, idx, values)
            except ValueError as exc:
                raise ValueError(f"run {name!r}: config['cos_final_lr'] = {config.get('cos_final_lr')!r} does not "
                                 f"give the cosine floor, and {exc}; pass lr= to read_log") from None
            meta["cos_floor_inferred"] = floor
        lr = lr_from_config(config, cos_floor=floor)
        meta["check"] = check_logged(lr, idx, values, name=name, what=f"rebuilt from its config {describe(config)}",
                                     rtol=rtol)
        source = "config" + (" (floor inferred from the logged LR)" if floor is not None else "")
        if meta["check"]["checked"] == 0:
            source += " (unchecked: no logged LR)"
        if N:
            if parent_lr is None:
                source += f"; steps 1..{N} (before the branch) rebuilt from this config: parent run not found"
            else:
                n = min(N, parent_lr.shape[0])
                try:
                    meta["parent_check"] = check_logged(lr, np.arange(n), parent_lr[:n], name=name,
                                                        what="rebuilt from its config, before the branch,",
                                                        rtol=rtol, step_offset=0)
                    source += f"; steps 1..{N} checked against the parent run"
                except ValueError:
                    lr = lr.copy()
                    lr[:n] = parent_lr[:n]
                    source = f"parent run (steps 1..{N}) + " + source
        return lr, source, meta

    # unknown scheduler: the logged LR, with the parent's prefix for a branched run
    if idx.size == 0:
        raise ValueError(f"run {name!r}: scheduler {config.get('scheduler')!r} is not known here and the log has "
                         "no train_lr; pass lr= to read_log")
    if N:
        if parent_lr is None:
            raise ValueError(
                f"run {name!r} (scheduler {config.get('scheduler')!r}, not known here) branches from step {N} of "
                f"another run (resume_from = {config.get('resume_from')!r}): its LR before step {N} is not in this "
                "log and the parent's export was not found next to it; put the parent's export beside it or pass lr=")
        n = min(N, parent_lr.shape[0])
        after = all_idx >= n
        knots_i = np.r_[np.arange(n)[-1:], all_idx[after]]  # anchor: the parent's last LR before the branch
        knots_v = np.r_[parent_lr[n - 1:n], all_values[after]]
        lr, exact = fill_logged(T, knots_i, knots_v, what=f"run {name!r}")
        lr[:n] = parent_lr[:n]
        source = f"parent run (steps 1..{N}) + logged (interpolated)"
    else:
        lr, exact = fill_logged(T, all_idx, all_values, what=f"run {name!r}")
        source = "logged" if exact else "logged (interpolated)"
    meta["fill"] = FILL_RULE
    meta["knots"] = int(idx.size)
    return lr, source, meta
