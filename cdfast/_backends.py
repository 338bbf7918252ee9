"""Backend registry: "c" (the cffi reference kernels) and "numba" (the default JIT kernels).

Both expose the same four calls with the same signatures and status codes; the bound
functions in cdfast.bounds and cdfast.curve never know which one they talk to.
Selection: the ``backend=`` argument, else the ``CDFAST_BACKEND`` environment variable
(``auto``, ``numba`` or ``c``), else ``auto``, which means Numba (the default) and
falls back to C if Numba cannot be imported.
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


_EMPTY = np.zeros(1)


def _load_numba() -> Backend:
    from . import _numba as k
    from . import _numba_curve as kc

    def g_args(g):
        return (_EMPTY, False) if g is None else (g, True)

    return Backend(
        name="numba",
        last_iterate=lambda lr, g, out: int(k._last_iterate(lr, *g_args(g), out)),
        average_iterate=lambda lr, g, out: int(k._average_iterate(lr, *g_args(g), out)),
        curve_exact=lambda lr, g, at, a, b: int(k._curve_exact(lr, *g_args(g), at, a, b)),
        curve_fast=lambda lr, g, at, u, c, a, b, scratch: int(
            kc._curve_fast(lr, *g_args(g), at, u, c, a, b, scratch)),
    )


def _load_c() -> Backend:
    from ._cdfast import ffi, lib  # built by `pip install` from csrc/ through cffi

    def dptr(x):
        return ffi.NULL if x is None else ffi.from_buffer("double[]", x)

    def ro(x):
        return ffi.NULL if x is None else ffi.from_buffer("double[]", x, require_writable=False)

    return Backend(
        name="c",
        last_iterate=lambda lr, g, out: lib.cdfast_last_iterate(ro(lr), ro(g), lr.shape[0], dptr(out)),
        average_iterate=lambda lr, g, out: lib.cdfast_average_iterate(ro(lr), ro(g), lr.shape[0], dptr(out)),
        curve_exact=lambda lr, g, at, a, b: lib.cdfast_curve_exact(
            ro(lr), ro(g), lr.shape[0], ffi.from_buffer("int64_t[]", at, require_writable=False),
            at.shape[0], dptr(a), dptr(b)),
        curve_fast=lambda lr, g, at, u, c, a, b, scratch: lib.cdfast_curve_fast(
            ro(lr), ro(g), lr.shape[0], ffi.from_buffer("int64_t[]", at, require_writable=False),
            at.shape[0], ro(u), ro(c), u.shape[0], dptr(a), dptr(b), dptr(scratch)),
    )


_LOADERS = {"numba": _load_numba, "c": _load_c}
_FIX = {
    "c": "the C extension cdfast._cdfast is not built; reinstall with a C compiler available "
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
                return found
            log.debug("cdfast: auto skips backend %r (%s)", candidate, _errors[candidate])
        raise ImportError("no cdfast backend is available: " + "; ".join(_FIX.values()))
    if name not in _LOADERS:
        raise ValueError(f"{source}={backend!r} is not a backend; use 'auto', 'numba' or 'c'")
    found = _try_load(name)
    if found is None:
        raise ImportError(f"backend {name!r} is unavailable ({_errors[name]}): {_FIX[name]}")
    return found
