"""Input validation at the API boundary, shared by every public function.

Cheap structural checks (type, dtype, shape, length) happen before any kernel runs.
The O(T) value checks (NaN, inf, negative) are fused into the kernels' single pass:
a kernel returns a status, and only then does :func:`raise_for_values` walk the array
to name the first offending index.  Functions without such a kernel call
:func:`check_values` directly.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

_WHAT = {"lr": "learning rates", "grad_sq": "per-step squared gradient bounds G_t^2"}


def _unmasked(x: Any, name: str) -> Any:
    """``x`` itself, or the data of a masked array with nothing masked.

    NumPy's ``np.asarray`` drops a mask and keeps the masked-out values, so a masked
    array with masked entries is refused rather than read with values the user hid.
    """
    if isinstance(x, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(x)
        if mask.any():
            i = np.unravel_index(int(np.argmax(mask)), mask.shape)
            idx = ", ".join(map(str, i))
            raise ValueError(f"{name}[{idx}] is masked; cdfast does not read masked arrays' hidden values: "
                             f"pass {name}.compressed() to drop the masked steps or {name}.filled(value) to fill them")
        return np.ma.getdata(x)
    return x


def as_vector(x: Any, name: str) -> FloatArray:
    """Return ``x`` as a 1-D, non-empty, C-contiguous float64 array (one copy at most).

    Integer, float32 and non-contiguous input is accepted and converted once.
    Raises TypeError for non-numeric data and ValueError for wrong shape or size.
    """
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a 1-D array of numbers, got a {type(x).__name__}")
    arr = np.asarray(_unmasked(x, name))
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a 1-D array of numbers; it holds non-numeric objects") from None
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must hold real numbers (int or float), got dtype {arr.dtype}; "
            f"convert it with np.asarray({name}, dtype=float)"
        )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per step), got shape {arr.shape}; pass a flat array")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; it needs at least one step")
    return np.ascontiguousarray(arr, dtype=np.float64)


def as_stack(x: Any, name: str) -> FloatArray:
    """Return ``x`` as a C-contiguous float64 array of shape (..., T), T >= 1.

    The stacked form of :func:`as_vector` (NumPy's stacked-array convention: the last
    axis holds the steps, the leading axes index schedules).  Same type checks.
    """
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be an array of numbers, got a {type(x).__name__}")
    arr = np.asarray(_unmasked(x, name))
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be an array of numbers; it holds non-numeric objects") from None
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must hold real numbers (int or float), got dtype {arr.dtype}; "
            f"convert it with np.asarray({name}, dtype=float)"
        )
    if arr.ndim == 0:
        raise ValueError(f"{name} is a scalar; it must be an array of shape (T,) or (..., T), one value per step")
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} is empty; it needs at least one step (its last axis has length 0)")
    return np.ascontiguousarray(arr, dtype=np.float64)


def check_scalars(value: Any, name: str, *, nonneg: bool = True, positive: bool = False) -> float | FloatArray:
    """:func:`check_scalar` for a scalar or an array of them (broadcast against stacked rows).

    A 0-d value comes back as a float; an array as a float64 array, with errors naming
    the first bad index, e.g. ``D[2] = -1.0 is negative; it must be >= 0``.
    """
    if np.ndim(value) == 0:
        if isinstance(value, np.ndarray) or isinstance(value, np.generic):
            value = value.item()
        v = check_scalar(value, name, nonneg=nonneg)
        if positive and v == 0.0:
            raise ValueError(f"{name} = 0 makes the optimal peak LR degenerate (0 or infinite); pass {name} > 0")
        return v
    arr = np.asarray(_unmasked(value, name))
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), arr.shape)
        raise ValueError(f"{name}{list(map(int, i))} = {float(arr[i])} is not finite; pass finite numbers")
    if nonneg or positive:
        bad = arr <= 0 if positive else arr < 0
        if bad.any():
            i = np.unravel_index(int(np.argmax(bad)), arr.shape)
            need = "> 0" if positive else ">= 0"
            raise ValueError(f"{name}{list(map(int, i))} = {float(arr[i])!r} must be {need}")
    return arr


def first_bad(x: FloatArray) -> tuple[int, float] | None:
    """Index and value of the first NaN, infinite or negative entry, or None."""
    bad = ~np.isfinite(x) | (x < 0)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return i, float(x[i])


def _describe(name: str, i: int, v: float) -> str:
    what = _WHAT.get(name, "values")
    if math.isnan(v):
        return f"{name}[{i}] is nan; {what} must be finite (drop or fill missing steps)"
    if math.isinf(v):
        return f"{name}[{i}] is {v}; {what} must be finite"
    return f"{name}[{i}] = {v!r} is negative; {what} must be >= 0"


def check_values(x: FloatArray, name: str) -> None:
    """Raise ValueError naming the first NaN, infinite or negative entry of ``x``."""
    found = first_bad(x)
    if found is not None:
        raise ValueError(_describe(name, *found))


def raise_for_values(arrays: dict[str, FloatArray | None], all_zero_ok: bool = True) -> None:
    """A kernel flagged bad values or overflow: name the culprit and raise ValueError."""
    for name, x in arrays.items():
        if x is not None:
            check_values(x, name)
    lr = arrays.get("lr")
    if not all_zero_ok and lr is not None and not lr.any():
        raise ValueError("lr is all zeros; at least one learning rate must be positive")
    raise ValueError(
        "the bound overflowed float64 although every input is finite; the learning rates "
        "(or grad_sq) are too large, or too small (subnormal), for double precision: rescale "
        "them (the bound's coefficients scale as a ~ 1/eta and b ~ eta)"
    )


def check_grad_sq(grad_sq: Any, n: int) -> FloatArray | None:
    """Validate optional per-step G_t^2 against ``n`` steps (values checked by the kernel)."""
    if grad_sq is None:
        return None
    g = as_vector(grad_sq, "grad_sq")
    if g.shape[0] != n:
        raise ValueError(
            f"grad_sq has {g.shape[0]} entries but lr has {n}; give one G_t^2 per step (same length as lr)"
        )
    return g


def check_int(value: Any, name: str, lo: int) -> int:
    """A whole number >= ``lo`` (an integral float such as 1e4 is accepted), as int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {value!r}; {name} must be a whole number such as "
                            "1000 or 1e3")
    value = int(value)
    if value < lo:
        raise ValueError(f"{name} = {value} must be >= {lo}")
    return value


def check_scalar(value: Any, name: str, *, nonneg: bool = True) -> float:
    """A finite real scalar (and >= 0 if ``nonneg``), as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} = {v} is not finite; pass a finite number")
    if nonneg and v < 0:
        raise ValueError(f"{name} = {v!r} is negative; it must be >= 0")
    return v


def check_positive_last(lr: FloatArray, fn: str) -> None:
    """The last-iterate bound is infinite when the final LR is 0: refuse with the why."""
    if lr[-1] != 0.0:
        return
    if not lr.any():
        raise ValueError("lr is all zeros; at least one learning rate must be positive")
    raise ValueError(
        f"{fn}: lr[{lr.shape[0] - 1}] (the final learning rate) is 0, which makes eq. (2.4) "
        "infinite: the term eta_j^2 / (P_T - P_j) has a zero gap for the last positive step. "
        "The paper's convention ends a decay at a positive LR (linear decay: eta_peak * (T-t)/T, "
        "so the last step is eta_peak/T); drop trailing zero steps or end the schedule above 0"
    )


def as_steps(x: Any, name: str, T: int | None = None) -> NDArray[np.int64]:
    """1-based, strictly increasing integer iterations (``<= T`` when T is given).

    Whole-valued floats are accepted; a step of 0 gets a hint (no bound exists before
    the first update).
    """
    arr = np.asarray(_unmasked(x, name))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of 1-based iterations, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (np.abs(arr.astype(np.float64)) > 2.0**62)
        if bad.any():
            i = int(np.argmax(bad))
            raise TypeError(f"{name}[{i}] = {float(arr[i])!r} is not a whole number; iterations are integers 1..T")
    elif arr.dtype.kind not in "iu" or arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold integer iterations, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    upper = T if T is not None else np.iinfo(np.int64).max
    out = (arr < 1) | (arr > upper)
    if out.any():
        i = int(np.argmax(out))
        hint = "; drop the loss at step 0 (no bound exists before the first update)" if arr[i] == 0 else ""
        where = f"1..T = 1..{T}" if T is not None else "1.."
        raise ValueError(f"{name}[{i}] = {arr[i]} is outside {where}; iterations are 1-based{hint}")
    if arr.size > 1:
        back = np.diff(arr) <= 0
        if back.any():
            i = int(np.argmax(back)) + 1
            raise ValueError(
                f"{name} must be strictly increasing: {name}[{i}] = {arr[i]} follows "
                f"{name}[{i - 1}] = {arr[i - 1]}; sort and deduplicate it"
            )
    return arr
