"""Backend registry: "c" (the cffi reference kernels) and "numba" (the default JIT kernels).

Both expose the same four calls with the same signatures and status codes; the bound
functions in cdfast.bounds and cdfast.curve never know which one they talk to.
Selection: the ``backend=`` argument, else the ``CDFAST_BACKEND`` environment variable
(``auto``, ``numba`` or ``c``), else ``auto``, which means Numba (the default) and
falls back to C if Numba cannot be imported, or while Numba's kernels are not yet in
its cache (cdfast._kernels._warmup: no compile wait on first use).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger("cdfast")

NAMES = ("numba", "c")
OK, BAD_INPUT, NOT_FINITE, BAD_ARGUMENT = 0, 1, 2, 3


@dataclass(frozen=True)
class Backend:
    """The kernels of one backend, each returning a status code (0 = OK)."""

    name: str
    last_iterate: Callable[[np.ndarray, np.ndarray | None, np.ndarray], int]
    average_iterate: Callable[[np.ndarray, np.ndarray | None, np.ndarray], int]
    curve_exact: Callable[..., int]
    curve_fast: Callable[..., int] | None = None
    # (lr, g, at, block, a, b, work) -> status: the curve by block moments (cdfast.curve.curve_terms_moments)
    curve_moments: Callable[..., int] | None = None
    last_iterate_grad: Callable[..., int] | None = None  # (lr, g, d2, g2, out, grad), cdfast.gradient
    # Stacked rows (cdfast._kernels._stacked): (lr2, lr_rows, g2 | None, g_rows, threads, a, b, status) -> int
    last_iterate_rows: Callable[..., int] | None = None
    average_iterate_rows: Callable[..., int] | None = None


_EMPTY = np.zeros(1)
_EMPTY_ROWS = np.zeros((1, 1))


def _writable(x: np.ndarray) -> np.ndarray:
    """``x`` itself, or a writeable view of it (a copy only if its memory is read-only).

    Numba compiles a separate specialisation for read-only arrays; the kernels never
    write to their inputs, so handing them a writeable view keeps one compiled version
    (the one in the cache) for every caller.
    """
    if x.flags.writeable:
        return x
    view = x.view()
    try:
        view.flags.writeable = True
    except ValueError:  # read-only memory (e.g. np.frombuffer on bytes)
        return x.copy()
    return view


def _load_numba() -> Backend:
    from . import _numba as k
    from . import _numba_curve as kc
    from . import _numba_grad as kg

    def g_args(g):
        return (_EMPTY, False) if g is None else (_writable(g), True)

    return Backend(
        name="numba",
        last_iterate=lambda lr, g, out: _numba_threads(0, k._last_iterate, _writable(lr), *g_args(g), numba_threads(0), out),
        average_iterate=lambda lr, g, out: int(k._average_iterate(lr, *g_args(g), out)),
        curve_exact=lambda lr, g, at, a, b, threads=0: _numba_threads(
            numba_threads(threads), k._curve_exact, _writable(lr), *g_args(g), _writable(at), numba_threads(threads),
            a, b),
        curve_fast=lambda lr, g, at, u, c, a, b, scratch, threads=0: _numba_threads(
            numba_threads(threads), kc._curve_fast, _writable(lr), *g_args(g), _writable(at), _writable(u),
            _writable(c), a, b, scratch),
        curve_moments=lambda lr, g, at, block, a, b, work: int(kc._curve_moments(
            _writable(lr), *g_args(g), _writable(at), block, a, b, work)),
        last_iterate_grad=lambda lr, g, d2, g2, out, grad: int(
            kg._last_iterate_grad(lr, *g_args(g), d2, g2, out, grad)),
        last_iterate_rows=lambda lr, lr_rows, g, g_rows, threads, a, b, status: _numba_rows(
            k, 0, lr, lr_rows, g, g_rows, threads, a, b, status),
        average_iterate_rows=lambda lr, lr_rows, g, g_rows, threads, a, b, status: _numba_rows(
            k, 1, lr, lr_rows, g, g_rows, threads, a, b, status),
    )


def numba_threads(threads: int) -> int:
    """Numba threads for a call asking for ``threads`` (<= 0: all of them)."""
    import numba

    most = numba.get_num_threads()
    return most if threads <= 0 else max(1, min(threads, most))


def _numba_threads(workers: int, fn: Callable[..., int], *args) -> int:
    """``fn(*args)`` with Numba's team cut to ``workers`` threads (0: unchanged).

    A parallel region's idle team members still join its final barrier, so a call
    that uses fewer workers than the team must shrink the team (thread-local).
    """
    import numba

    before = numba.get_num_threads()
    if workers <= 0 or workers == before:
        return int(fn(*args))
    numba.set_num_threads(workers)
    try:
        return int(fn(*args))
    finally:
        numba.set_num_threads(before)


def _numba_rows(k, kind, lr, lr_rows, g, g_rows, threads, a, b, status) -> int:
    res = np.empty((2, lr_rows.shape[0]))
    workers = numba_threads(threads)
    code = _numba_threads(workers, k._iterate_rows, kind, _writable(lr), _writable(lr_rows),
                          _EMPTY_ROWS if g is None else _writable(g), _writable(g_rows), g is not None, workers, res,
                          status)
    a[:] = res[0]
    b[:] = res[1]
    return code


def _load_c() -> Backend:
    from ._cdfast import ffi, lib  # built by `pip install` from csrc/ through cffi

    def dptr(x):
        return ffi.NULL if x is None else ffi.from_buffer("double[]", x)

    def ro(x):
        return ffi.NULL if x is None else ffi.from_buffer("double[]", x, require_writable=False)

    def i64(x):
        return ffi.from_buffer("int64_t[]", x, require_writable=False)

    return Backend(
        name="c",
        last_iterate=lambda lr, g, out: lib.cdfast_last_iterate(ro(lr), ro(g), lr.shape[0], dptr(out)),
        average_iterate=lambda lr, g, out: lib.cdfast_average_iterate(ro(lr), ro(g), lr.shape[0], dptr(out)),
        curve_exact=lambda lr, g, at, a, b, threads=0: lib.cdfast_curve_exact(
            ro(lr), ro(g), lr.shape[0], ffi.from_buffer("int64_t[]", at, require_writable=False),
            at.shape[0], threads, dptr(a), dptr(b)),
        curve_fast=lambda lr, g, at, u, c, a, b, scratch, threads=0: lib.cdfast_curve_fast(
            ro(lr), ro(g), lr.shape[0], ffi.from_buffer("int64_t[]", at, require_writable=False),
            at.shape[0], ro(u), ro(c), u.shape[0], threads, dptr(a), dptr(b), dptr(scratch)),
        curve_moments=lambda lr, g, at, block, a, b, work: lib.cdfast_curve_moments(
            ro(lr), ro(g), lr.shape[0], i64(at), at.shape[0], block, dptr(a), dptr(b), dptr(work), work.shape[0]),
        last_iterate_grad=lambda lr, g, d2, g2, out, grad: lib.cdfast_last_iterate_grad(
            ro(lr), ro(g), lr.shape[0], d2, g2, dptr(out), dptr(grad)),
        last_iterate_rows=lambda lr, lr_rows, g, g_rows, threads, a, b, status: lib.cdfast_last_iterate_rows(
            ro(lr), i64(lr_rows), ro(g), i64(g_rows), lr_rows.shape[0], lr.shape[1], threads, dptr(a), dptr(b),
            ffi.from_buffer("int[]", status)),
        average_iterate_rows=lambda lr, lr_rows, g, g_rows, threads, a, b, status: lib.cdfast_average_iterate_rows(
            ro(lr), i64(lr_rows), ro(g), i64(g_rows), lr_rows.shape[0], lr.shape[1], threads, dptr(a), dptr(b),
            ffi.from_buffer("int[]", status)),
    )


_LOADERS = {"numba": _load_numba, "c": _load_c}
_FIX = {
    "c": "the C extension cdfast._kernels._cdfast is not built; reinstall with a C compiler available "
    "(`python -m pip install -e .` builds it through cffi), or use backend='numba'",
    "numba": "Numba is not importable; `python -m pip install numba`, or use backend='c'",
}
_cache: dict[str, Backend] = {}
_errors: dict[str, BaseException] = {}


def _try_load(name: str) -> Backend | None:
    if name in _cache:
        return _cache[name]
    if name in _errors:
        return None
    try:
        _cache[name] = _LOADERS[name]()
    except ImportError as exc:  # a missing extension or dependency, not a bug
        _errors[name] = exc
        log.debug("cdfast backend %r unavailable: %s", name, exc)
        return None
    return _cache[name]


def available_backends() -> tuple[str, ...]:
    """Names of the backends that can be used on this installation, default first."""
    return tuple(name for name in NAMES if _try_load(name) is not None)


def _numba_is_warm() -> bool:
    from ._warmup import numba_is_warm

    return numba_is_warm()


def get_backend(backend: str | None = None) -> Backend:
    """Resolve ``backend`` (None/"auto", "numba", "c") to a loaded Backend.

    Raises ValueError for an unknown name and ImportError, with the fix, when a
    backend asked for by name is not available.
    """
    source = "backend"
    if backend is None:
        backend = os.environ.get("CDFAST_BACKEND", "auto")
        source = "CDFAST_BACKEND"
    if not isinstance(backend, str):
        raise TypeError(f"{source} must be a string ('auto', 'numba' or 'c'), got {type(backend).__name__}")
    name = backend.strip().lower() or "auto"
    if name == "auto":
        for candidate in NAMES:
            found = _try_load(candidate)
            if found is not None:
                if candidate == "numba" and "c" in NAMES and not _numba_is_warm():
                    # Numba would compile for tens of seconds; the C kernels give the same bits now
                    other = _try_load("c")
                    if other is not None:
                        log.debug("cdfast: auto uses backend 'c' while Numba's kernels are not compiled")
                        return other
                return found
            log.debug("cdfast: auto skips backend %r (%s)", candidate, _errors[candidate])
        raise ImportError("no cdfast backend is available: " + "; ".join(_FIX.values()))
    if name not in _LOADERS:
        raise ValueError(f"{source}={backend!r} is not a backend; use 'auto', 'numba' or 'c'")
    found = _try_load(name)
    if found is None:
        raise ImportError(f"backend {name!r} is unavailable ({_errors[name]}): {_FIX[name]}")
    return found
