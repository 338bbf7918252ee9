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
KERNELS = (("_numba", "_iterate_rows"), ("_numba", "_curve_exact"), ("_numba_curve", "_curve_fast"),
           ("_numba_curve", "_curve_moments"))
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


LOCK_ENV = "CDFAST_WARMUP_LOCK"  # the lock file's path, passed to the compiling process
LOCK_MAX_AGE = 1800.0  # seconds: a lock this old is stale whatever process it names
LOCK_FRESH = 60.0  # seconds: an empty lock this young is being written (its compile is starting)


def _lock_path() -> str:
    """One lock file per Numba cache (per user): two compiles into one cache are one too many."""
    import hashlib
    import tempfile

    cache = os.environ.get("NUMBA_CACHE_DIR") or os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha1(cache.encode()).hexdigest()[:12]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(tempfile.gettempdir(), f"cdfast-numba-warmup-{uid}-{digest}.lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # it exists, under another user
        return True
    except (OSError, OverflowError):
        return False
    return True


def _lock_held(path: str) -> bool:
    """Does the lock at ``path`` name a compile that is still running?"""
    try:
        age = time.time() - os.path.getmtime(path)
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return False
    if not text:
        return age < LOCK_FRESH
    try:
        pid = int(text)
    except ValueError:
        return False
    return age < LOCK_MAX_AGE and _alive(pid)


def _take_lock(path: str) -> int | None:
    """Create the lock (atomically) and return its descriptor; None when a live compile holds it."""
    for _ in range(2):
        try:
            return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _lock_held(path):
                return None
            try:  # stale: its compile ended or died
                os.remove(path)
            except OSError:
                pass
    return None


def release_lock() -> None:
    """Remove the lock this process was started under (called by the compiling process)."""
    path = os.environ.get(LOCK_ENV)
    if not path:
        return
    try:
        with open(path) as fh:
            mine = fh.read().strip() == str(os.getpid())
        if mine:
            os.remove(path)
    except OSError:
        pass


def start_background() -> bool:
    """Compile the Numba kernels in a detached, low-priority process; False if it cannot start.

    One compile at a time: a lock file (one per Numba cache) names the compiling process,
    and while it runs, another call starts nothing and returns True (the kernels are being
    compiled).  A lock whose process has ended is taken over.  ``CDFAST_NUMBA_WARMUP=0``
    turns this off.
    """
    if os.environ.get("CDFAST_NUMBA_WARMUP", "1") == "0" or os.environ.get("CDFAST_NUMBA_CACHE", "1") == "0":
        return False
    path = _lock_path()
    try:
        fd = _take_lock(path)
    except OSError as exc:  # no writable temporary directory: compile without the lock
        log.debug("cdfast: no lock for the Numba warm-up: %s", exc)
        fd, path = -1, ""
    if fd is None:
        return True  # already compiling
    try:
        proc = subprocess.Popen([sys.executable, "-m", "cdfast._kernels._compile"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True, env={**os.environ, LOCK_ENV: path})
    except OSError as exc:
        log.debug("cdfast: cannot start the Numba warm-up: %s", exc)
        if fd >= 0:
            os.close(fd)
            os.remove(path)
        return False
    if fd >= 0:
        try:
            os.write(fd, str(proc.pid).encode())
        finally:
            os.close(fd)
    return True
