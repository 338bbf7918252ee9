"""How many threads a long pass should use right now: fewer when other work keeps cores busy.

A pass split over threads is only as fast as its slowest thread.  When another
process keeps a core busy, a thread placed there runs in time slices and the pass
waits for it; one thread on a free core is steadier and, on two cores, about as fast.
So before a long pass cdfast counts the cores that other work keeps busy *now* and
uses the rest (at least one):

* Linux: the number of runnable tasks in ``/proc/loadavg`` (an instant count, not the
  averages), minus this process's own running threads (idle OpenMP workers spin for a
  while after a parallel region and must not count against us);
* elsewhere: all threads.

The answer is cached for ``CACHE_SECONDS``, so that back-to-back calls pay for the
few /proc reads once.  ``CDFAST_THREADS`` (a positive integer) overrides the count.
Thread counts never change results: every kernel is bit-identical whatever it uses.
"""

from __future__ import annotations

import os
import time

CACHE_SECONDS = 0.02
_LOADAVG = "/proc/loadavg"
_cache: tuple[float, int] | None = None


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read(path: str, size: int = 512) -> bytes:
    # os.read with a small buffer: no 8 KiB file object per call
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def _own_running() -> int:
    """Threads of this process in state R (running or runnable)."""
    count = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tids:
        try:
            stat = _read(f"/proc/self/task/{tid}/stat")
        except OSError:
            continue
        end = stat.rfind(b")")
        if stat[end + 2 : end + 3] == b"R":
            count += 1
    return max(count, 1)


def busy_elsewhere() -> int:
    """Cores kept busy by other processes at this instant (0 where it cannot be read)."""
    try:
        running = int(_read(_LOADAVG, 128).split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return 0
    return max(running - _own_running(), 0)


def available(limit: int) -> int:
    """Threads (1 .. ``limit``) for a long pass: the cores not busy elsewhere."""
    global _cache
    forced = os.environ.get("CDFAST_THREADS", "").strip()
    if forced:
        try:
            return max(1, min(int(forced), limit))
        except ValueError:
            pass
    now = time.monotonic()
    if _cache is None or now - _cache[0] > CACHE_SECONDS:
        _cache = (now, max(1, _cpus() - busy_elsewhere()))
    return max(1, min(_cache[1], limit))
