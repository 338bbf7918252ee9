"""Check that arrays fit in memory before allocating them.

A horizon such as ``T = 10**12`` asks for terabytes: NumPy would raise a bare
MemoryError (or, below the overcommit limit, the machine would start swapping or the
process be killed).  :func:`check_fits` refuses such a request up front, with one line
saying how much it would need and how much is available.
"""

from __future__ import annotations

import os

__all__ = ["available_bytes", "format_bytes", "check_fits"]


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    """Memory left under a cgroup limit (containers), v2 then v1; None if unlimited."""
    pairs = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
             ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    for limit_path, usage_path in pairs:
        try:
            with open(limit_path) as fh:
                raw = fh.read().strip()
            if raw == "max":
                return None
            limit = int(raw)
            with open(usage_path) as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit >= 1 << 60:  # "no limit" written as a huge number
            return None
        return max(limit - usage, 0)
    return None


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _address_space_headroom() -> int | None:
    """Address space left under ``ulimit -v`` (RLIMIT_AS), or None when unlimited.

    The limit counts virtual memory, so the headroom is the limit minus this process's
    current virtual size (``VmSize`` of /proc/self/status).
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError, AttributeError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return max(int(soft) - used, 0)


def available_bytes() -> int | None:
    """Memory this process can still allocate without swapping, or None if unknown.

    Linux: ``MemAvailable`` of /proc/meminfo, capped by the cgroup limit (containers)
    and by the address-space limit (``ulimit -v``); elsewhere the free physical pages
    (``os.sysconf``), where available.
    """
    found = [v for v in (_meminfo_available(), _cgroup_headroom(), _address_space_headroom()) if v is not None]
    if not found:
        v = _sysconf_available()
        return v
    return min(found)


def format_bytes(n: float) -> str:
    """``8.0 TB``-style: decimal units, two significant digits at least."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def check_fits(n_values: int, *, what: str, arrays: float = 1.0, itemsize: int = 8, fix: str = "") -> None:
    """Raise ValueError if ``arrays`` arrays of ``n_values`` items cannot fit in memory.

    Parameters
    ----------
    n_values : int
        Length of each array (e.g. the horizon T).
    what : str
        What is being sized, for the message, e.g. ``"T = 1000000000000"``.
    arrays : float
        How many such arrays the operation holds at once.
    itemsize : int
        Bytes per item (8 for float64).
    fix : str
        What to do instead, appended to the message.

    Notes
    -----
    When the available memory cannot be determined, nothing is checked.
    """
    need = float(n_values) * itemsize * arrays
    have = available_bytes()
    if have is None or need <= have:
        return
    per = "" if arrays == 1 else f" ({arrays:g} arrays of {format_bytes(float(n_values) * itemsize)})"
    raise ValueError(f"{what} needs about {format_bytes(need)} of memory{per}, but only {format_bytes(have)} "
                     f"is available" + (f"; {fix}" if fix else ""))
