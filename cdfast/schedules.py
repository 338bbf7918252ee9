"""Learning-rate schedule shapes s_t(T) in the paper's convention (docs/math.md section 1).

Every family returns a float64 array ``s`` of length T with ``s[t] = s_t(T)`` for
t = 0 .. T-1, values in [0, 1]; the learning rates are ``eta_{t+1} = eta_peak * s[t]``:

    >>> import cdfast
    >>> lr = 3e-4 * cdfast.schedules.cosine(10_000, warmup=100)

The final values of decaying schedules are tiny and dominate the last-iterate bound,
so every formula is evaluated without cancellation: ``(T - t) / T`` from an exact
integer numerator rather than ``1 - t/T``; ``sin(pi (T-t) / (2T))**2`` rather than
``(1 + cos(pi t/T)) / 2``; ``u / (1 + sqrt(1 - u))`` rather than ``1 - sqrt(1 - u)``.
Each element is within a few ulp of the exact value (tests compare with mpmath).

Besides the discrete families there are their continuous limits ``s(x)`` on [0, 1]
(:func:`continuous`), used by the asymptotic constants of Table 1, and a registry of
names (:data:`FAMILIES`, :func:`make`, :func:`family`) for the command line and the
qualifying exam.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
DECAYS = ("linear", "sqrt", "cosine")


def _check_T(T: object, name: str = "T") -> int:
    if isinstance(T, bool) or not isinstance(T, numbers.Integral):
        if isinstance(T, numbers.Real) and float(T).is_integer():
            T = int(T)
        else:
            raise TypeError(f"{name} must be a positive integer number of steps, got {T!r}")
    T = int(T)
    if T < 1:
        raise ValueError(f"{name} = {T} must be >= 1 (the number of training steps)")
    if T > 1 << 24:  # size before allocating: a horizon that cannot fit gets one clear line, not a MemoryError
        from ._memory import check_fits

        check_fits(T, what=f"{name} = {T}: one float64 array of {T} learning rates",
                   fix=f"choose a smaller {name}")
    return T


def _check_fraction(v: object, name: str, lo: float, hi: float, lo_open: bool, hi_open: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise TypeError(f"{name} must be a finite real number, got {v!r}")
    v = float(v)
    if (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"{name} = {v!r} must lie in {left}{lo}, {hi}{right}")
    return v


def _steps_left(T: int) -> FloatArray:
    """T - t for t = 0 .. T-1, exactly (integers below 2^53)."""
    return np.arange(T, 0, -1, dtype=np.float64)


def _finish(s: FloatArray, warmup: int) -> FloatArray:
    return with_warmup(s, warmup) if warmup else s


def with_warmup(shape: ArrayLike, warmup: int, init: float = 0.0) -> FloatArray:
    """Multiply the first ``warmup`` steps of ``shape`` by a linear ramp.

    ``s[t] *= init + (1 - init) * t / warmup`` for ``t < warmup`` (the schedule keeps
    its horizon T; the ramp reaches 1 at step ``warmup``).  ``init`` is the ramp's
    starting fraction (0 gives a first LR of exactly 0, which the bounds allow).
    """
    s = np.array(_real(shape, "shape"), dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"shape must be 1-D, got shape {s.shape}")
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral) or warmup < 0:
        raise ValueError(f"warmup = {warmup!r} must be a non-negative integer number of steps")
    if warmup > s.shape[0]:
        raise ValueError(f"warmup = {warmup} exceeds the schedule length T = {s.shape[0]}; use warmup <= T")
    init = _check_fraction(init, "init", 0.0, 1.0, False, False)
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"shape[{i}] is {s[i]}; a schedule shape must be finite (fill or drop the step)")
    if warmup:
        t = np.arange(warmup, dtype=np.float64)
        s[:warmup] *= init + (1.0 - init) * (t / warmup)
    return s


def constant(T: int, warmup: int = 0) -> FloatArray:
    """s_t = 1 (not qualified: the bound grows like ln T / sqrt(T))."""
    return _finish(np.ones(_check_T(T)), warmup)


def inverse_sqrt(T: int, warmup: int = 0) -> FloatArray:
    """s_t = 1 / sqrt(t + 1) (not qualified)."""
    T = _check_T(T)
    return _finish(1.0 / np.sqrt(np.arange(1, T + 1, dtype=np.float64)), warmup)


def _floor(s: FloatArray, final: float) -> FloatArray:
    return final + (1.0 - final) * s if final else s


def linear(T: int, warmup: int = 0, final: float = 0.0) -> FloatArray:
    """s_t = final + (1 - final) (T - t) / T: linear decay to ``final`` (default 0).

    In the paper's indexing the decay reaches ``final`` at t = T, one step past the
    last (so with ``final = 0`` the last LR is eta_peak / T, never 0: "linear decay to
    zero" whose last-iterate bound is finite).
    """
    T = _check_T(T)
    final = _check_fraction(final, "final", 0.0, 1.0, False, False)
    return _finish(_floor(_steps_left(T) / T, final), warmup)


def polynomial(T: int, power: float = 2.0, final: float = 0.0, warmup: int = 0) -> FloatArray:
    """Power decay s_t = final + (1 - final) (1 - t/T)^power, with (T - t)/T exact.

    ``power = 1`` is :func:`linear`; ``power > 1`` decays early, ``power < 1`` late
    (PyTorch's ``PolynomialLR``, Hugging Face's polynomial decay, in the paper's indexing).
    """
    T = _check_T(T)
    if isinstance(power, bool) or not isinstance(power, numbers.Real) or not 0.0 < float(power) < math.inf:
        raise ValueError(f"power = {power!r} must be a positive finite number (the exponent of 1 - t/T)")
    final = _check_fraction(final, "final", 0.0, 1.0, False, False)
    return _finish(_floor((_steps_left(T) / T) ** float(power), final), warmup)


def cosine(T: int, final: float = 0.0, warmup: int = 0) -> FloatArray:
    """s_t = final + (1 - final) (1 + cos(pi t / T)) / 2, evaluated as sin^2(pi (T-t) / (2T)).

    ``final`` is the floor as a fraction of the peak (0.1 = a 10% floor, which the
    qualifying exam fails: the LR must decay to 0).
    """
    T = _check_T(T)
    final = _check_fraction(final, "final", 0.0, 1.0, False, False)
    s = np.sin(_steps_left(T) * (math.pi / (2.0 * T))) ** 2
    return _finish(final + (1.0 - final) * s if final else s, warmup)


def _cooldown(u: FloatArray, decay: str) -> FloatArray:
    """Decay shape as a function of the remaining fraction u in (0, 1] (1 at the start)."""
    if decay == "linear":
        return u
    if decay == "sqrt":  # 1 - sqrt(1 - u) without cancellation as u -> 0
        return u / (1.0 + np.sqrt(1.0 - u))
    if decay == "cosine":  # (1 - cos(pi u)) / 2
        return np.sin(u * (math.pi / 2.0)) ** 2
    raise ValueError(f"decay = {decay!r} is not one of {DECAYS}")


def wsd(T: int, decay_frac: float = 0.2, decay: str = "linear", warmup: int = 0, final: float = 0.0) -> FloatArray:
    """Warmup-stable-decay: 1 until the last ``decay_frac * T`` steps, then a cooldown to ``final``.

    With ``c = 1 - decay_frac`` (the paper's decay start fraction, Table 1),
    ``s_t = 1`` for ``t < cT`` and ``s_t = final + (1 - final) f((T - t) / (T - cT))`` after,
    where ``f`` is ``u`` (linear, the paper's form), ``1 - sqrt(1 - u)`` ("sqrt", the 1-sqrt
    cooldown of Hägele et al.) or ``(1 - cos(pi u)) / 2`` ("cosine").  The last LR is positive.
    """
    T = _check_T(T)
    decay_frac = _check_fraction(decay_frac, "decay_frac", 0.0, 1.0, True, False)
    if decay not in DECAYS:
        raise ValueError(f"decay = {decay!r} is not one of {DECAYS}")
    final = _check_fraction(final, "final", 0.0, 1.0, False, False)
    u = np.minimum(_steps_left(T) / (decay_frac * T), 1.0)
    return _finish(_floor(_cooldown(u, decay), final), warmup)


def power_scheduler(T: int, a: float = 4.6, b: float = -0.51, lr_max: float = 0.02, batch_size: float = 1.0,
                    tokens_per_step: float = 1.0, decay_frac: float = 0.0, decay: str = "linear",
                    final: float = 0.0, warmup: int = 0) -> FloatArray:
    """The Power scheduler of Shen et al. (2024), as a shape relative to ``lr_max``.

    ``eta(n) = min(lr_max, batch_size * a * n^b)`` of the ``n = t * tokens_per_step``
    tokens trained before step t (their eq. for eta_power, b < 0; defaults a = 4.6,
    b = -0.51, lr_max = 0.02 are theirs), so ``s_t = eta(n_t) / lr_max``: horizon-free
    until the cooldown.  Their warmup ramps to the power law's value at its end,
    ``s_t = (t / W) s_W`` for t < W (``lr[0] = 0``, as :func:`with_warmup`); their decay
    phase, the last ``decay_frac * T`` steps from ``c = T - decay_frac T``, is
    ``s_t = final + (1 - final) f((T - t) / (T - c)) s(c)`` with ``f`` a cooldown of
    :data:`DECAYS` (as in :func:`wsd`).  Outside the cooldown a positive ``final`` floors
    the shape too: ``final + (1 - final) s``.
    """
    T = _check_T(T)
    for name, v in (("a", a), ("lr_max", lr_max), ("batch_size", batch_size), ("tokens_per_step", tokens_per_step)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0.0 < float(v) < math.inf:
            raise ValueError(f"{name} = {v!r} must be a positive finite number")
    if isinstance(b, bool) or not isinstance(b, numbers.Real) or not -math.inf < float(b) < 0.0:
        raise ValueError(f"b = {b!r} must be a negative finite number (the power law's exponent, e.g. -0.51)")
    decay_frac = _check_fraction(decay_frac, "decay_frac", 0.0, 1.0, False, False)
    if decay not in DECAYS:
        raise ValueError(f"decay = {decay!r} is not one of {DECAYS}")
    final = _check_fraction(final, "final", 0.0, 1.0, False, False)
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral) or not 0 <= warmup < T:
        raise ValueError(f"warmup = {warmup!r} must be an integer with 0 <= warmup < T = {T}")
    scale = float(batch_size) * float(a) / float(lr_max)

    def law(t: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore"):  # n = 0 at t = 0: the power law is infinite, the cap holds
            return np.minimum(1.0, scale * (np.asarray(t, dtype=np.float64) * float(tokens_per_step)) ** float(b))

    t = np.arange(T, dtype=np.float64)
    s = law(t)
    if decay_frac:
        c = T - decay_frac * T
        tail = t >= c
        u = np.minimum(_steps_left(T) / (decay_frac * T), 1.0)
        s[tail] = _cooldown(u[tail], decay) * law(np.array([c]))[0]
    s = _floor(s, final)
    if warmup:
        s[:warmup] = (t[:warmup] / warmup) * s[warmup]
    return s


def piecewise_constant(T: int, boundaries: ArrayLike, values: ArrayLike, warmup: int = 0) -> FloatArray:
    """Step decay: ``values[k]`` on steps ``boundaries[k-1] <= t < boundaries[k]``.

    ``boundaries`` are increasing 0-based step indices in (0, T); ``values`` has one
    more entry, each in [0, 1] (the shape is relative to the peak LR).
    """
    T = _check_T(T)
    b = np.asarray(boundaries)
    v = np.asarray(values, dtype=np.float64)
    if b.ndim != 1 or v.ndim != 1 or v.shape[0] != b.shape[0] + 1:
        raise ValueError(
            f"piecewise_constant needs len(values) == len(boundaries) + 1, got {v.shape[0]} values "
            f"and {b.shape[0]} boundaries"
        )
    if b.size and (b.dtype.kind not in "iu" or np.any(b <= 0) or np.any(b >= T) or np.any(np.diff(b) <= 0)):
        raise ValueError(f"boundaries = {b.tolist()} must be strictly increasing integers in (0, T={T})")
    if not np.all(np.isfinite(v)) or np.any(v < 0) or np.any(v > 1):
        raise ValueError(f"values = {v.tolist()} must lie in [0, 1] (fractions of the peak LR)")
    idx = np.searchsorted(b, np.arange(T), side="right")
    return _finish(v[idx], warmup)



def cosine_onecycle(T: int, warmup: int, init: float = 0.0, final: float = 0.0) -> FloatArray:
    """Cosine warmup then cosine decay, as PyTorch's ``OneCycleLR(anneal_strategy="cos")``.

    ``s_t = init + (1 - init) sin^2(pi t / (2 (W - 1)))`` for ``t < W`` and
    ``s_t = final + (1 - final) sin^2(pi (T - 1 - t) / (2 (T - W)))`` for ``t >= W``
    (``W = warmup``, the warmup ends at step ``W - 1``, the decay reaches ``final`` at
    the last step ``t = T - 1``).  ``init`` and ``final`` are fractions of the peak
    (``OneCycleLR``'s ``1/div_factor`` and ``1/(div_factor * final_div_factor)``).
    Unlike :func:`cosine`, the decay runs over the ``T - W`` steps after the warmup and
    ends exactly at ``final``: with ``final = 0`` the last LR is 0 and eq. (2.4) is
    infinite at the last step, so pass a positive floor for last-iterate bounds.
    """
    T = _check_T(T)
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral) or not 2 <= warmup < T:
        raise ValueError(f"warmup = {warmup!r} must be an integer with 2 <= warmup < T = {T}")
    init = _check_fraction(init, "init", 0.0, 1.0, False, False)
    final = _check_fraction(final, "final", 0.0, 1.0, False, False)
    s = np.empty(T)
    t = np.arange(warmup, dtype=np.float64)
    s[:warmup] = init + (1.0 - init) * np.sin(t * (math.pi / (2.0 * (warmup - 1)))) ** 2
    left = np.arange(T - 1 - warmup, -1, -1, dtype=np.float64)  # T - 1 - t, exact
    s[warmup:] = final + (1.0 - final) * np.sin(left * (math.pi / (2.0 * (T - warmup)))) ** 2
    return s


# ---------------------------------------------------------------------------
# Registry and continuous limits

FAMILIES: dict[str, Callable[..., FloatArray]] = {
    "constant": constant,
    "inverse_sqrt": inverse_sqrt,
    "linear": linear,
    "cosine": cosine,
    "wsd": wsd,
    "polynomial": polynomial,
    "power_scheduler": power_scheduler,
}


def make(name: str, T: int, **params) -> FloatArray:
    """The named family at horizon T: ``make("wsd", 1000, decay_frac=0.2)``."""
    try:
        fn = FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(FAMILIES)}") from None
    try:
        return fn(T, **params)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise TypeError(f"schedule {name!r}: {exc}") from None
        raise


def _spec_value(text: str):
    """A parameter value of a schedule spec: int, float or bare word."""
    try:
        v = float(text.replace("_", ""))
    except ValueError:
        return text
    return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v


def parse(spec: str) -> tuple[str, dict]:
    """A family and its parameters from a spec ``"NAME[:key=value,...]"`` (the command line's form).

    >>> parse("wsd:decay_frac=0.2,decay=sqrt")
    ('wsd', {'decay_frac': 0.2, 'decay': 'sqrt'})
    """
    name, _, rest = spec.partition(":")
    name = name.strip().lower().replace("-", "_")
    if name not in FAMILIES:
        raise ValueError(f"unknown schedule {spec!r}; choose one of {', '.join(sorted(FAMILIES))} "
                         "(parameters as NAME:key=value,..., e.g. wsd:decay_frac=0.2,decay=sqrt)")
    params: dict = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"schedule parameter {item!r} in {spec!r} is not key=value")
        params[key.strip()] = _spec_value(val.strip())
    return name, params


def label(name: str, params: dict) -> str:
    """The spec of a family and its parameters, the inverse of :func:`parse`: ``"wsd:decay_frac=0.2"``."""
    return name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")


def family(name: str, **params) -> Callable[[int], FloatArray]:
    """A family as a callable ``T -> s`` with fixed parameters (for the exam)."""
    make(name, max(2, params.get("warmup", 0) or 0), **params)  # fail now, not inside a sweep
    return lambda T: make(name, T, **params)


def _real(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as an array of real numbers (complex, text or object data raise TypeError
    instead of being cast, which would drop the imaginary part with a warning)."""
    from ._validate import _unmasked

    arr = np.asarray(_unmasked(x, name))
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must hold real numbers; it holds non-numeric objects") from None
    if arr.dtype.kind not in "iufb":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _unit_interval(x: ArrayLike) -> FloatArray:
    """``x`` as float64, every entry in [0, 1] (the fraction of training done)."""
    arr = np.asarray(_real(x, "x"), dtype=np.float64)
    bad = ~((arr >= 0.0) & (arr <= 1.0))  # also catches nan
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), arr.shape)
        idx = f"[{', '.join(map(str, i))}]" if arr.ndim else ""
        raise ValueError(f"x{idx} = {float(arr[i])!r} is outside [0, 1]; s(x) is defined for the fraction "
                         "x = t / T of training done")
    return arr


def continuous(name: str, **params) -> Callable[[FloatArray], FloatArray]:
    """The continuous limit ``s(x)`` on [0, 1] of a named family (x = t / T).

    ``inverse_sqrt`` has no T-independent limit (it is 1/sqrt(xT + 1)) and raises.
    Warmup vanishes in the limit (it lasts W/T -> 0 of training) and is accepted.
    """
    allowed = {"constant": set(), "linear": {"final"}, "cosine": {"final"}, "wsd": {"decay_frac", "decay", "final"},
               "polynomial": {"power", "final"}}
    unknown = set(params) - allowed.get(name, set(params)) - {"warmup"}
    if unknown:
        raise TypeError(
            f"schedule {name!r} takes no parameter(s) {sorted(unknown)}; "
            f"its parameters are {sorted(allowed[name]) or 'none'}"
        )
    if name == "constant":
        return lambda x: np.ones_like(_unit_interval(x))
    final = _check_fraction(params.get("final", 0.0), "final", 0.0, 1.0, False, False)
    if name == "linear":
        return lambda x: final + (1.0 - final) * (1.0 - _unit_interval(x))
    if name == "polynomial":
        power = float(params.get("power", 2.0))
        return lambda x: final + (1.0 - final) * (1.0 - _unit_interval(x)) ** power
    if name == "cosine":
        final = _check_fraction(params.get("final", 0.0), "final", 0.0, 1.0, False, False)
        return lambda x: final + (1.0 - final) * np.sin((1.0 - _unit_interval(x)) * math.pi / 2) ** 2
    if name == "wsd":
        frac = _check_fraction(params.get("decay_frac", 0.2), "decay_frac", 0.0, 1.0, True, False)
        decay = params.get("decay", "linear")
        if decay not in DECAYS:
            raise ValueError(f"decay = {decay!r} is not one of {DECAYS}")
        return lambda x: final + (1.0 - final) * _cooldown(np.minimum((1.0 - _unit_interval(x)) / frac, 1.0), decay)
    if name in ("inverse_sqrt", "power_scheduler"):
        raise ValueError(f"{name} has no horizon-free continuous limit s(x); use the discrete family")
    raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(FAMILIES)}")


__all__ = [
    "polynomial", "power_scheduler",
    "constant", "inverse_sqrt", "linear", "cosine", "wsd", "piecewise_constant", "with_warmup", "cosine_onecycle",
    "FAMILIES", "make", "family", "continuous", "DECAYS", "parse", "label",
]


# ---------------------------------------------------------------------------
# Adapters: the LR sequence eta_1 .. eta_T of another library's schedule object


def _checked_lr(values: ArrayLike, T: int, source: str) -> FloatArray:
    """Validate an adapter's output like any ``lr`` (1-D float64, length T, finite, >= 0)."""
    from ._validate import as_vector, check_values

    lr = as_vector(values, "lr")
    if lr.shape[0] != T:
        raise ValueError(f"{source} gave {lr.shape[0]} learning rates for T = {T} steps")
    check_values(lr, "lr")
    return lr


def from_torch(scheduler: object, T: int, *, group: int = 0) -> FloatArray:
    """The LRs a ``torch.optim.lr_scheduler`` scheduler will give the next ``T`` updates.

    Entry ``i`` is ``eta_{i+1}``, the LR that update ``i + 1`` uses: what
    ``scheduler.get_last_lr()[group]`` returns just before that ``optimizer.step()``, when
    the scheduler is stepped once after every update (the usual loop
    ``optimizer.step(); scheduler.step()``).  Counting starts from the scheduler's current
    state: for a freshly built scheduler, entry 0 is the LR of the first update.

    The scheduler is stepped on a deep copy of itself and its optimizer, so the objects
    passed in are left untouched.  The copy shares nothing large: parameters and optimizer
    state are replaced by empty tensors in it (a scheduler reads only ``param_groups``).
    Works for every scheduler driven by the step count (``LambdaLR`` -- which is what the
    schedules of ``transformers`` are --, ``OneCycleLR``, ``CosineAnnealingLR``,
    ``SequentialLR``, ``ChainedScheduler``, ...); ``ReduceLROnPlateau`` depends on the
    loss and is refused.

    Parameters
    ----------
    scheduler : torch.optim.lr_scheduler.LRScheduler
    T : int
        Number of updates.
    group : int
        The optimizer's param group whose LR is returned (param groups may have
        different LRs, e.g. no weight decay for biases; group 0 is the first one passed
        to the optimizer).

    Returns
    -------
    ndarray, shape (T,)
        ``eta_1 .. eta_T`` as float64 (torch keeps scheduler LRs as Python floats).
    """
    import copy
    import warnings

    try:
        import torch
    except ImportError:
        raise ImportError('from_torch needs PyTorch: pip install "cdfast[torch]"') from None
    T = _check_T(T)
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise TypeError("ReduceLROnPlateau lowers the LR when the loss stalls; its schedule is not known in "
                        "advance. Log the LR during training and read it with cdfast.io.read_log")
    optimizer = getattr(scheduler, "optimizer", None)
    if optimizer is None or not hasattr(scheduler, "step") or not hasattr(optimizer, "param_groups"):
        raise TypeError(f"scheduler must be a torch.optim.lr_scheduler scheduler bound to an optimizer, "
                        f"got {type(scheduler).__name__}")
    n_groups = len(optimizer.param_groups)
    if isinstance(group, bool) or not isinstance(group, numbers.Integral) or not 0 <= group < n_groups:
        raise ValueError(f"group = {group!r} must be an integer in [0, {n_groups}) (the optimizer has "
                         f"{n_groups} param group{'s' if n_groups != 1 else ''})")
    memo: dict[int, object] = {}
    for g in optimizer.param_groups:
        for p in g["params"]:
            memo[id(p)] = torch.empty(0)
    for state in optimizer.state.values():
        for v in state.values():
            if torch.is_tensor(v) and v.dim() > 0:
                memo[id(v)] = v.new_empty(0)
    sched = copy.deepcopy(scheduler, memo)
    opt = sched.optimizer
    out = np.empty(T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": nothing to optimise
        for i in range(T):
            out[i] = float(opt.param_groups[group]["lr"])
            if i + 1 < T:
                sched.step()
    return _checked_lr(out, T, f"scheduler {type(scheduler).__name__}")


def from_optax(schedule: Callable, T: int) -> FloatArray:
    """The LRs of an optax schedule (a callable ``count -> lr``) for ``T`` updates.

    optax calls the schedule with the number of updates done so far, so ``count = 0`` is
    the first update: entry ``i`` is ``schedule(i) = eta_{i+1}``.  The schedule is
    evaluated on the whole ``arange(T)`` at once when it accepts an array (optax's
    schedules do), else count by count.  JAX computes in float32 unless
    ``jax_enable_x64`` is set: the result then carries float32 rounding (relative error
    ~6e-8).
    """
    return from_callable(schedule, T, _name="optax schedule")


def from_callable(fn: Callable, T: int, *, vectorized: bool | None = None, _name: str = "fn") -> FloatArray:
    """``eta_1 .. eta_T`` from ``fn(step)`` for ``step = 0 .. T-1`` (entry ``i`` is ``fn(i)``).

    ``vectorized``: True calls ``fn(numpy.arange(T))`` once; False calls ``fn(i)`` for
    each step; None (default) tries the array call and falls back to the loop when it
    raises or does not return ``T`` values.  The result is validated like any ``lr``
    (finite, non-negative; errors name the step).
    """
    if not callable(fn):
        raise TypeError(f"{_name} must be callable (step -> learning rate), got {type(fn).__name__}")
    T = _check_T(T)
    steps = np.arange(T)
    values = None
    if vectorized is not False:
        try:
            got = np.asarray(_real(fn(steps), f"{_name}(arange(T))"), dtype=np.float64)
            if got.shape == (T,):
                values = got
            elif vectorized:
                raise ValueError(f"{_name}(arange(T)) returned shape {got.shape}, expected ({T},)")
        except (TypeError, ValueError) as exc:
            if vectorized:
                raise ValueError(f"{_name} could not be evaluated on an array of steps: {exc}") from None
    if values is None:
        values = np.empty(T)
        for i in range(T):
            v = fn(i)
            try:
                values[i] = float(np.asarray(_real(v, f"{_name}({i})"), dtype=np.float64))
            except (TypeError, ValueError):
                got = f"an array of shape {np.shape(v)}" if np.ndim(v) else repr(v)
                raise TypeError(f"{_name}({i}) returned {got}, not a real number") from None
    return _checked_lr(values, T, _name)


__all__ += ["from_torch", "from_optax", "from_callable"]


def refined(
    grad_norms: ArrayLike,
    *,
    smoothing: float = 0.0,
    peak_lr: float = 1.0,
    last: str = "extend",
) -> FloatArray:
    """Defazio et al.'s refined schedule from observed gradient norms, in closed form.

    Parameters
    ----------
    grad_norms : array_like, shape (T,)
        Observed gradient norms ``||g_t||`` of a previous run, one per step (> 0).
    smoothing : float
        Median-filter width as a fraction of T (their tau; 0 = no filter).  The series is
        reflected past its end before filtering, so the last steps are not biased.
    peak_lr : float
        The largest LR of the result (the shape is scaled to it).
    last : {"extend", "zero"}
        ``"zero"``: their formula verbatim, whose last LR is 0 (the last step does not
        move the iterate their bound is about); eq. (2.4) is then infinite.
        ``"extend"`` (default): the tail sums run one step further with the last norm,
        so the last LR is ``g_T^-4 > 0`` in the same units and eq. (2.4) is finite.

    Returns
    -------
    ndarray, shape (T,)

    Notes
    -----
    Defazio, Cutkosky, Mehta, Mishchenko (2023), "Optimal Linear Decay Learning Rate
    Schedules and Further Refinements", Algorithm 1 / the refined-schedule theorem:
    ``w_t = g_t^-2 sum_{p=t+1..T} g_p^-2``, normalised by its maximum.  For constant
    norms it is linear decay.  It minimises their regret-style bound, not eq. (2.4): the
    exact optimum of eq. (2.4) for ``grad_sq = grad_norms**2`` is
    ``cdfast.optimal_schedule(T, grad_sq=grad_norms**2, monotone=False)`` (or
    :func:`cdfast.optimize.stationary_schedule`); docs/optimal_schedules.md compares the two.
    Tail sums are suffix sums accumulated backwards (no cancellation).
    """
    from . import _validate as V

    g = V.as_vector(grad_norms, "grad_norms")
    V.check_values(g, "grad_norms")
    if not g.all():
        i = int(np.argmin(g != 0))
        raise ValueError(f"grad_norms[{i}] is 0; gradient norms must be > 0 (the schedule uses 1 / norm^2)")
    if isinstance(smoothing, bool) or not isinstance(smoothing, numbers.Real) or not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing = {smoothing!r} must be a fraction in [0, 1)")
    peak = V.check_scalar(peak_lr, "peak_lr")
    if peak == 0.0:
        raise ValueError("peak_lr = 0 must be > 0")
    if last not in ("extend", "zero"):
        raise ValueError(f"last = {last!r} must be 'extend' or 'zero'")
    T = g.shape[0]
    width = 2 * (int(smoothing * T) // 2) + 1
    if width > 1:
        from scipy.ndimage import median_filter

        pad = min(2 * width, T - 1) if T > 1 else 0
        ext = np.pad(g, (0, pad), mode="reflect") if pad else g
        g = median_filter(ext, size=width, mode="nearest")[:T]
    # The schedule is scale-free in the norms (it is normalised by its maximum), so the
    # norms are divided by their largest first: tiny norms (1e-200) would otherwise
    # overflow 1 / g^2 to inf and turn every LR into nan.
    g = g / g.max()
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # checked below
        inv = 1.0 / (g * g)
        tail = np.cumsum(inv[::-1])[::-1]  # tail[t] = sum_{p >= t} g_p^-2, accumulated from the end
        w = np.empty(T)
        if last == "extend":  # one more step with the last norm: g_{T+1} = g_T
            w[:-1] = inv[:-1] * (tail[1:] + inv[-1])
            w[-1] = inv[-1] * inv[-1]
        else:
            w[:-1] = inv[:-1] * tail[1:]
            w[-1] = 0.0
    if not w.any():  # T = 1 with last="zero"
        raise ValueError("grad_norms has a single step and last='zero' gives it LR 0; use last='extend'")
    if not np.isfinite(w).all():
        raise ValueError(f"grad_norms spans too many orders of magnitude (largest / smallest = "
                         f"{float(1.0 / g.min()):.3g}) for the refined schedule in float64 (it uses norm^-4); "
                         "clip the smallest norms")
    return peak * (w / w.max())


__all__ += ["refined"]
