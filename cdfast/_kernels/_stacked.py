"""Stacked schedules: every public bound takes ``lr`` of shape (..., T).

NumPy's stacked-array convention (``numpy.linalg``, numbagg's gufuncs): the last axis
holds the T steps of one schedule, the leading axes index schedules.  ``grad_sq``
(..., T) and the scalars (``D``, ``G``, ``L_star``) broadcast against the leading
shape.  One wrapper does it for every function, the way numbagg's decorator does:

1. validate the structure once (types, shapes, broadcasting);
2. flatten the leading axes into rows; broadcast rows are index maps, never copies;
3. call the row kernel: a backend's batch kernel (the bounds: rows dealt out to
   threads one at a time, each row on one thread), or the 1-D function once per row
   (curves, gradients), whose own one-pass checks then name the bad row and step,
   e.g. ``lr[3, 1523] is nan``;
4. restore the shape: ``(...)`` for a scalar output, ``(..., k)`` for a curve.

A 1-D ``lr`` with scalar arguments takes exactly the old path and returns floats;
each row of a stacked call equals that 1-D call bit for bit (the same kernels, in the
same operation order, and the same IEEE operations afterwards).

A ``dask.array`` input (chunked along the leading axes, whole along T) returns a lazy
``dask.array``: every block runs through the same NumPy path (``map_blocks``), and
errors name the bad entry by its index in the whole array.

Use :func:`stacked` on a function of one schedule to make it stacked, e.g.::

    @stacked("(t)->(),(t)", scalars=("D", "G", "L_star"))
    def bound_gradient(lr, D=1.0, G=1.0, L_star=0.0, grad_sq=None, backend=None): ...
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from . import _threads
from .. import _validate as V
from ._backends import OK, get_backend

FloatArray = NDArray[np.float64]
ARRAY_ARGS = ("lr", "grad_sq")


# ---------------------------------------------------------------------------
# Dask detection (never imports dask)


def is_dask(x: Any) -> bool:
    """Is ``x`` a dask collection?  (Checked without importing dask.)"""
    return "dask" in sys.modules and type(x).__module__.split(".")[0] == "dask" and hasattr(x, "__dask_graph__")


def _dask_array():
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - only reached with a dask input
        raise ImportError("dask arrays need dask: python -m pip install 'cdfast[dask]'") from None
    return da


# ---------------------------------------------------------------------------
# Prepared rows


@dataclass(frozen=True)
class Rows:
    """A validated (..., T) input as rows: row r is ``lr[lr_rows[r]]`` (and ``g[g_rows[r]]``)."""

    lead: tuple[int, ...]  # the broadcast leading shape; () for one 1-D schedule
    T: int
    lr: FloatArray  # (R_lr, T), C-contiguous
    lr_rows: NDArray[np.int64]
    lr_lead: tuple[int, ...]
    g: FloatArray | None
    g_rows: NDArray[np.int64]
    g_lead: tuple[int, ...]

    @property
    def count(self) -> int:
        return int(self.lr_rows.shape[0])

    def row(self, r: int) -> tuple[FloatArray, FloatArray | None]:
        return self.lr[self.lr_rows[r]], None if self.g is None else self.g[self.g_rows[r]]

    def index(self, r: int, own: tuple[int, ...]) -> tuple[int, ...]:
        """Row r's leading index in an argument of leading shape ``own`` (broadcast rules)."""
        full = np.unravel_index(r, self.lead) if self.lead else ()
        full = tuple(int(i) for i in full)[len(self.lead) - len(own):]
        return tuple(0 if n == 1 else i for i, n in zip(full, own))


def _row_map(own: tuple[int, ...], lead: tuple[int, ...]) -> NDArray[np.int64]:
    rows = int(np.prod(own, dtype=np.int64))
    return np.array(np.broadcast_to(np.arange(rows, dtype=np.int64).reshape(own), lead).reshape(-1))


def _broadcast(shapes: Sequence[tuple[tuple[int, ...], str]]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*(s for s, _ in shapes)))
    except ValueError:
        what = ", ".join(f"{name} {shape}" for shape, name in shapes)
        raise ValueError(
            f"the leading (schedule) axes do not broadcast: {what}; every argument's leading shape must "
            "broadcast against lr's (NumPy rules), the last axis of lr and grad_sq being the T steps"
        ) from None


def prepare(lr: Any, grad_sq: Any = None, extra: Sequence[tuple[tuple[int, ...], str]] = ()) -> Rows:
    """Structural checks and the row maps of a stacked call (values are checked by the kernels)."""
    x = V.as_stack(lr, "lr")
    T = x.shape[-1]
    g = None
    shapes = [(x.shape[:-1], "lr")]
    if grad_sq is not None:
        g = V.as_stack(grad_sq, "grad_sq")
        if g.shape[-1] != T:
            raise ValueError(
                f"grad_sq has {g.shape[-1]} entries but lr has {T}; give one G_t^2 per step (same length as lr)"
                if g.ndim == 1 and x.ndim == 1 else
                f"grad_sq has {g.shape[-1]} steps per row (shape {g.shape}) but lr has {T} (shape {x.shape}); "
                "give one G_t^2 per step"
            )
        shapes.append((g.shape[:-1], "grad_sq"))
    lead = _broadcast(shapes + list(extra))
    lr_lead = x.shape[:-1]
    x2 = x.reshape(-1, T)
    g_lead: tuple[int, ...] = ()
    g2 = None
    g_rows = np.zeros(1, dtype=np.int64)
    if g is not None:
        g_lead = g.shape[:-1]
        g2 = g.reshape(-1, T)
        g_rows = _row_map(g_lead, lead)
    lr_rows = _row_map(lr_lead, lead)
    if g is None:
        g_rows = np.zeros(lr_rows.shape[0], dtype=np.int64)
    return Rows(lead, T, x2, lr_rows, lr_lead, g2, g_rows, g_lead)


# ---------------------------------------------------------------------------
# Naming a bad entry by row and step

_INDEXED = re.compile(r"\b(lr|grad_sq)\[(\d+)\]")


def relabel(exc: BaseException, rows: Rows, r: int, scalars: Sequence[str] = (),
            scalar_shapes: dict[str, tuple[int, ...]] | None = None) -> BaseException:
    """``exc`` raised by the 1-D function on row r, with indices in the stacked arrays.

    ``lr[1523]`` becomes ``lr[3, 1523]`` (row 3 of lr), likewise ``grad_sq``; a scalar
    argument named at the start (``D = -1.0 is negative``) gets its index, ``D[3]``.
    """
    msg = str(exc)
    own = {"lr": rows.lr_lead, "grad_sq": rows.g_lead}

    def sub(m: re.Match) -> str:
        idx = rows.index(r, own[m.group(1)])
        return f"{m.group(1)}[{', '.join(map(str, idx + (int(m.group(2)),)))}]"

    new = _INDEXED.sub(sub, msg)
    about_scalar = False
    for name in scalars:
        if re.match(rf"{name}\b", new) and not new.startswith(f"{name}["):
            about_scalar = True
            shape = (scalar_shapes or {}).get(name, ())
            if shape:  # an array argument: name its entry
                idx = rows.index(r, shape)
                new = f"{name}[{', '.join(map(str, idx))}]" + new[len(name):]
            break
    if new == msg and rows.lead and not about_scalar:
        new = f"{msg} (in row {list(rows.index(r, rows.lead))} of the stacked input)"
    return type(exc)(new)


def raise_for_row(rows: Rows, r: int, all_zero_ok: bool = True) -> None:
    """Row r was flagged by a kernel: raise the ValueError naming its bad entry."""
    x, g = rows.row(r)
    try:
        V.raise_for_values({"lr": x, "grad_sq": g}, all_zero_ok=all_zero_ok)
    except ValueError as exc:
        if not rows.lead:
            raise
        raise relabel(exc, rows, r) from None


def check_positive_last(rows: Rows, fn: str) -> None:
    """Every row's final LR must be positive (eq. 2.4 is infinite otherwise)."""
    last = rows.lr[:, -1]
    if np.all(last != 0.0):
        return
    r = int(np.argmax(last[rows.lr_rows] == 0.0))
    x, _ = rows.row(r)
    try:
        V.check_positive_last(x, fn)
    except ValueError as exc:
        if not rows.lead:
            raise
        raise relabel(exc, rows, r) from None


# ---------------------------------------------------------------------------
# The batch kernels: the coefficients (a, b) of eq. (2.4) or (2.3) for every row


# When a call is worth splitting over threads (the kernels' own thresholds: SEG_MIN
# and ROWS_PARALLEL_MIN in csrc/cdfast.c and cdfast/_kernels/_numba.py).
SEG_MIN = 1 << 19
ROWS_PARALLEL_MIN = 1 << 15


def _threads_for(rows: Rows, be_name: str) -> int:
    """Threads for this call: all the free cores for work worth splitting, else one."""
    if rows.count == 1 and rows.T < SEG_MIN:
        return 1
    if rows.count * rows.T < ROWS_PARALLEL_MIN:
        return 1
    return _threads.available(1 << 16)


def terms(kind: str, lr: Any, grad_sq: Any, backend: str | None, fn: str):
    """(a, b) of eq. (2.4) (``kind="last"``) or (2.3) (``"average"``) for (..., T) input.

    Floats for one 1-D schedule, arrays of the leading shape otherwise, lazy dask
    arrays for dask input.
    """
    if is_dask(lr) or is_dask(grad_sq):
        return _dask_terms(kind, lr, grad_sq, backend, fn)
    rows = prepare(lr, grad_sq)
    if kind == "last":
        check_positive_last(rows, fn)
    be = get_backend(backend)
    kernel = be.last_iterate_rows if kind == "last" else be.average_iterate_rows
    a = np.empty(rows.count)
    b = np.empty(rows.count)
    status = np.zeros(rows.count, dtype=np.int32)
    code = kernel(rows.lr, rows.lr_rows, rows.g, rows.g_rows, _threads_for(rows, be.name), a, b, status)
    if code != OK:
        bad = np.flatnonzero(status != OK)
        if bad.size == 0:  # pragma: no cover - a status without a row
            raise RuntimeError(f"{fn}: backend {be.name!r} returned status {code} without naming a row")
        raise_for_row(rows, int(bad[0]), all_zero_ok=False)
    with np.errstate(invalid="ignore"):
        overflow = ~np.isfinite(a)  # 1 / (2 P) overflows for subnormal LRs (curves report +inf)
    if overflow.any():
        raise_for_row(rows, int(np.argmax(overflow)), all_zero_ok=False)
    if not rows.lead:
        return float(a[0]), float(b[0])
    return a.reshape(rows.lead), b.reshape(rows.lead)


def combine(a: Any, b: Any, D: Any, G: Any, L_star: Any) -> Any:
    """``L_star + D^2 a + G^2 b`` in the operation order of the 1-D functions."""
    if is_dask(a) or any(is_dask(v) for v in (D, G, L_star)):
        return L_star + D * D * a + G * G * b
    if all(np.ndim(v) == 0 for v in (a, b, D, G, L_star)):
        return L_star + D * D * a + G * G * b
    with np.errstate(invalid="ignore"):
        return np.asarray(L_star + D * D * np.asarray(a) + G * G * np.asarray(b), dtype=np.float64)


def scalar(value: Any, name: str, *, nonneg: bool = True, positive: bool = False) -> Any:
    """A scalar argument that may be an array broadcasting against the rows (or dask)."""
    if is_dask(value):
        da = _dask_array()
        return da.map_blocks(_checked_block, value.astype(np.float64), what=name, nonneg=nonneg,
                             positive=positive, dtype=np.float64)
    return V.check_scalars(value, name, nonneg=nonneg, positive=positive)


def _checked_block(x, what, nonneg, positive, block_info=None):
    try:
        V.check_scalars(x if np.ndim(x) else float(x), what, nonneg=nonneg, positive=positive)
    except ValueError as exc:
        raise type(exc)(_offset_message(str(exc), {what: _block_offset(block_info, 0)})) from None
    return x


# ---------------------------------------------------------------------------
# The generic wrapper: a function of one schedule, made stacked


def _parse_signature(signature: str) -> list[str]:
    """"(t)->(),(k)" -> ["", "k"]: the core dimension of every output ("" for a scalar)."""
    m = re.fullmatch(r"\s*\(t\)\s*->\s*(.+)", signature)
    if not m:
        raise ValueError(f"signature {signature!r} must look like '(t)->(),(k)'")
    outs = re.findall(r"\(([a-z]*)\)", m.group(1))
    if not outs:
        raise ValueError(f"signature {signature!r} names no output")
    return outs


def stacked(signature: str, *, scalars: Sequence[str] = (), sizes: Callable[[dict, int], dict] | None = None):
    """Make a function of one 1-D schedule take ``lr`` of shape (..., T).

    Parameters
    ----------
    signature : str
        ``"(t)->()"``, ``"(t)->(),()"``, ``"(t)->(k),(k)"``, ``"(t)->(),(t)"``: the
        core shape of each output (``t`` is the number of steps).
    scalars : sequence of str
        Arguments that may be arrays broadcasting against the leading shape (``D``,
        ``G``, ``L_star``); each row gets its own value.
    sizes : callable, optional
        ``sizes(arguments, T) -> {"k": ...}`` for core dimensions other than ``t``
        (needed for dask input, whose output shapes are declared before computing).

    The wrapped function must take ``lr`` (and may take ``grad_sq``); it is called
    once per row with 1-D rows and scalar values, so it keeps its own validation;
    its errors are re-raised naming the row (``lr[3, 1523] is nan``).  A 1-D ``lr``
    with scalar arguments calls it exactly as before.
    """
    core = _parse_signature(signature)
    scalars = tuple(scalars)

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            lr, g = arguments["lr"], arguments.get("grad_sq")
            if any(is_dask(arguments.get(n)) for n in ARRAY_ARGS + scalars):
                return _dask_call(wrapper, arguments, core, scalars, sizes)
            if np.ndim(lr) == 1 and (g is None or np.ndim(g) <= 1) and all(np.ndim(arguments[s]) == 0 for s in scalars):
                return fn(**arguments)
            shapes = {s: tuple(np.shape(arguments[s])) for s in scalars}
            rows = prepare(lr, g, [(shapes[s], s) for s in scalars])
            values = {}
            for s in scalars:
                arr = np.asarray(arguments[s])
                if arr.dtype.kind not in "iuf" or arr.dtype.kind == "b":
                    raise TypeError(f"{s} must be a real number or an array of them, got dtype {arr.dtype}")
                values[s] = np.broadcast_to(arr, rows.lead).reshape(-1)
            outs: list[np.ndarray] | None = None
            for r in range(rows.count):
                x, gx = rows.row(r)
                call = dict(arguments, lr=x, **({"grad_sq": gx} if "grad_sq" in arguments else {}))
                call.update({s: values[s][r].item() for s in scalars})
                try:
                    res = fn(**call)
                except (ValueError, TypeError) as exc:
                    raise relabel(exc, rows, r, scalars, shapes) from None
                res = res if isinstance(res, tuple) else (res,)
                if outs is None:
                    outs = [np.empty((rows.count,) + np.shape(v), dtype=np.result_type(v, np.float64)) for v in res]
                for o, v in zip(outs, res):
                    o[r] = v
            assert outs is not None
            shaped = tuple(o.reshape(rows.lead + o.shape[1:]) for o in outs)
            return shaped if len(core) > 1 else shaped[0]

        wrapper.__wrapped_row__ = fn  # type: ignore[attr-defined]
        return wrapper

    return deco


# ---------------------------------------------------------------------------
# Dask: the same NumPy path on every block


def _block_offset(block_info, i: int) -> tuple[int, ...]:
    if not block_info or i not in block_info:
        return ()
    return tuple(int(lo) for lo, _ in block_info[i]["array-location"])


def _offset_message(msg: str, offsets: dict[str, tuple[int, ...]]) -> str:
    """Shift the leading indices named in ``msg`` by the block's offset in the whole array."""

    def sub(m: re.Match) -> str:
        name, body = m.group(1), m.group(2)
        off = offsets.get(name, ())
        idx = [int(v) for v in body.split(",")]
        lead = len(idx) - (0 if name not in ARRAY_ARGS else 1)
        idx = [v + (off[k] if k < len(off) and k < lead else 0) for k, v in enumerate(idx)]
        return f"{name}[{', '.join(map(str, idx))}]"

    names = "|".join(map(re.escape, offsets))
    return re.sub(rf"\b({names})\[([\d, ]+)\]", sub, msg) if names else msg


def _dask_structure(x: Any, name: str):
    da = _dask_array()
    x = da.asarray(x)
    if x.dtype.kind == "b" or x.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers (int or float), got dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError(f"{name} is a scalar; it must be an array of shape (..., T)")
    if x.numblocks[-1] != 1:
        raise ValueError(
            f"{name} is split into {x.numblocks[-1]} chunks along its last axis (the T steps); each block must hold "
            f"whole schedules: chunk the leading axes only, e.g. {name}.rechunk({{-1: -1}})"
        )
    return x.astype(np.float64)


def _dask_blocks(arguments: dict, scalars: Sequence[str]):
    """lr, grad_sq and the array scalars as dask arrays with lr's leading chunks."""
    da = _dask_array()
    x = _dask_structure(arguments["lr"], "lr")
    T = x.shape[-1]
    g = arguments.get("grad_sq")
    g = None if g is None else _dask_structure(g, "grad_sq")
    if g is not None and g.shape[-1] != T:
        raise ValueError(f"grad_sq has {g.shape[-1]} steps per row but lr has {T}; give one G_t^2 per step")
    shapes = [(x.shape[:-1], "lr")] + ([(g.shape[:-1], "grad_sq")] if g is not None else [])
    shapes += [(tuple(np.shape(arguments[s])), s) for s in scalars]
    lead = _broadcast(shapes)
    if x.shape[:-1] != lead:
        x = da.broadcast_to(x, lead + (T,))
    chunks = x.chunks[:-1]
    if g is not None:
        g = da.broadcast_to(g, lead + (T,)).rechunk(chunks + ((T,),))
    extra = {}
    for s in scalars:
        v = arguments[s]
        if np.ndim(v) == 0 and not is_dask(v):
            continue
        v = da.asarray(v)
        extra[s] = da.broadcast_to(v, lead).rechunk(chunks)[..., None]
    return x, g, extra, lead, T


def _dask_call(wrapper: Callable, arguments: dict, core: list[str], scalars: Sequence[str], sizes) -> Any:
    da = _dask_array()
    x, g, extra, lead, T = _dask_blocks(arguments, scalars)
    dims = {"t": T, "": 1}
    if sizes is not None:
        dims.update(sizes(arguments, T))
    for c in core:
        if c not in dims:
            raise ValueError(f"the size of core dimension {c!r} is unknown for dask input")
    widths = [dims[c] for c in core]
    names = ["lr"] + (["grad_sq"] if g is not None else []) + list(extra)

    def block(*blocks, block_info=None):
        call = dict(arguments)
        call.update(zip(names, blocks))
        for s in extra:
            call[s] = call[s][..., 0]
        offsets = {n: _block_offset(block_info, i) for i, n in enumerate(names)}
        try:
            res = wrapper(**call)
        except (ValueError, TypeError) as exc:
            raise type(exc)(_offset_message(str(exc), offsets)) from None
        res = res if isinstance(res, tuple) else (res,)
        lead_shape = blocks[0].shape[:-1]
        return np.concatenate([np.asarray(v, dtype=np.float64).reshape(lead_shape + (w,))
                               for v, w in zip(res, widths)], axis=-1)

    args = [x] + ([g] if g is not None else []) + list(extra.values())
    out = da.map_blocks(block, *args, dtype=np.float64, chunks=x.chunks[:-1] + ((sum(widths),),),
                        meta=np.empty((0,) * len(x.shape), dtype=np.float64))
    parts, start = [], 0
    for c, w in zip(core, widths):
        part = out[..., start] if c == "" else out[..., start:start + w]
        parts.append(part)
        start += w
    return tuple(parts) if len(parts) > 1 else parts[0]


def _dask_terms(kind: str, lr: Any, grad_sq: Any, backend: str | None, fn: str):
    def row_terms(lr, grad_sq=None):
        return terms(kind, lr, grad_sq, backend, fn)

    a, b = _dask_call(row_terms, {"lr": lr, "grad_sq": grad_sq}, ["", ""], (), None)
    return a, b
