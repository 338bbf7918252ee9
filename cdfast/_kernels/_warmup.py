"""No wait on first use: the C kernels serve while Numba's cache is cold.

The Numba kernels compile on their first call (tens of seconds for all of them) and
are then cached on disk.  The C kernels are compiled at install time and give the
same results bit for bit.  So ``backend="auto"`` uses Numba only once its kernels are
in the cache (:func:`numba_is_warm`), and the C kernels until then;
``backend="numba"`` always means Numba (compiling if it must).

``python -m cdfast._kernels._compile`` compiles every Numba kernel into the cache (at low
priority); ``cdfast report`` starts it in the background when it finds the cache
cold, so the next process runs on Numba.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

log = logging.getLogger("cdfast")

# The kernels behind the public functions: (module, dispatcher).
KERNELS = (("_numba", "_iterate_rows"), ("_numba", "_curve_exact"), ("_numba_curve", "_curve_fast"))
RECHECK_SECONDS = 10.0  # a cold answer is reused this long (the check reads a few files)
_warm = False
_cold_at = -float("inf")


def _cached(dispatcher) -> bool:
    """Does Numba's on-disk cache hold machine code of this dispatcher for this machine and source?"""
    try:
        cache = dispatcher._cache
        index = cache._cache_file._load_index()  # empty when missing or stale (source changed)
        want = cache._index_key(None, dispatcher.targetctx.codegen())[1:]  # machine + bytecode hashes
    except Exception:  # cache disabled (CDFAST_NUMBA_CACHE=0), unreadable, or another Numba layout
        return False
    return any(key[1:] == want for key in index)


def numba_is_warm() -> bool:
    """True once every Numba kernel is compiled, in this process or in the on-disk cache."""
    global _warm, _cold_at
    if _warm:
        return True
    try:
        from . import _numba, _numba_curve
    except ImportError:
        return False
    modules = {"_numba": _numba, "_numba_curve": _numba_curve}
    kernels = [getattr(modules[module], name) for module, name in KERNELS]
    if all(disp.signatures for disp in kernels):
        _warm = True
        return True
    if time.monotonic() - _cold_at < RECHECK_SECONDS:
        return False
    if all(disp.signatures or _cached(disp) for disp in kernels):
        _warm = True
        return True
    _cold_at = time.monotonic()
    return False


def start_background() -> bool:
    """Compile the Numba kernels in a detached, low-priority process; False if it cannot start.

    ``CDFAST_NUMBA_WARMUP=0`` turns this off.
    """
    if os.environ.get("CDFAST_NUMBA_WARMUP", "1") == "0" or os.environ.get("CDFAST_NUMBA_CACHE", "1") == "0":
        return False
    try:
        subprocess.Popen([sys.executable, "-m", "cdfast._kernels._compile"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         close_fds=True)
    except OSError as exc:
        log.debug("cdfast: cannot start the Numba warm-up: %s", exc)
        return False
    return True
