"""Safe file output: whole files or nothing, never over an input, nothing left behind.

* :func:`atomic_write` writes to a temporary file beside the target and renames it into
  place, so a reader never sees a partial CSV, JSON or PNG.
* Every temporary file is registered while it exists; :func:`remove_temporaries` deletes
  the ones still registered.  The command line calls it from its SIGTERM handler, so a
  terminated run leaves no ``.cdfast-*.tmp`` files.
* :func:`same_file` tells whether two paths name one file (through symbolic and hard
  links), so an output can be refused when it would replace an input.
* :func:`check_input` refuses an input that is neither a regular file nor a folder (a
  named pipe would block the reader forever, a device would be read without end), and
  :func:`check_output` an output that exists and is not a regular file (renaming over
  a device such as a copy of /dev/full would replace it with a file).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import threading
from typing import IO, Any, Callable, Iterable

TEMP_PREFIX = ".cdfast-"
TEMP_SUFFIX = ".tmp"

_temporaries: set[str] = set()
_lock = threading.RLock()  # re-entrant: the SIGTERM handler may run while the main thread holds it


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Temporary-file creation is a critical section: a signal handler that removes the
# registered temporaries must not run between the file's creation and its registration.
# Blocking the signal (pthread_sigmask) is not enough: it only blocks it in this thread,
# and a process-directed SIGTERM can be taken by another thread (Numba's or OpenMP's
# workers), after which CPython runs the Python-level handler in the main thread at its
# next bytecode.  So handlers go through run_or_defer, which postpones them to the end
# of the critical section.
_critical = 0
_deferred: list[tuple[Callable[[int, Any], None], int, Any]] = []


def run_or_defer(handler: Callable[[int, Any], None], signum: int, frame: Any) -> None:
    """Run a signal handler now, or right after the temporary file being created is
    registered (when the signal arrives in the middle of it)."""
    if _critical:
        _deferred.append((handler, signum, frame))
    else:
        handler(signum, frame)


def _mkstemp(directory: str) -> tuple[int, str]:
    """``tempfile.mkstemp`` and registration as one step (see :func:`run_or_defer`)."""
    global _critical
    _critical += 1
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)
        with _lock:
            _temporaries.add(tmp)
    finally:
        _critical -= 1
    while _deferred and not _critical:
        handler, signum, frame = _deferred.pop(0)
        handler(signum, frame)
    return fd, tmp


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    with _lock:
        _temporaries.discard(tmp)


def remove_temporaries() -> None:
    """Delete every temporary file :func:`atomic_write` has not finished with.

    Safe to call from a signal handler: it only unlinks paths recorded beforehand.
    """
    with _lock:
        pending = list(_temporaries)
        _temporaries.clear()
    for tmp in pending:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_input(path: str | os.PathLike, what: str = "input") -> None:
    """Raise ValueError if ``path`` exists and is neither a regular file nor a folder.

    Reading a named pipe blocks until a writer appears (forever, for a log), and a
    device such as /dev/zero never ends.  A missing path is left to the caller.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise ValueError(f"{what} {os.fspath(path)!r} is {_kind(st.st_mode)}, not a regular file or a folder; "
                         "cdfast reads logs and LR files from regular files only: save it to a file first")


def check_output(path: str | os.PathLike, what: str = "output") -> None:
    """Raise if ``path`` exists and is not a regular file (a folder: IsADirectoryError;
    a device, pipe or socket: ValueError): outputs are renamed into place, which would
    replace it."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, f"{what} is a directory; give a file name", os.fspath(path))
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} {os.fspath(path)!r} exists and is {_kind(st.st_mode)}; cdfast writes a file by "
                         "renaming a new one into place, which would replace it: choose a regular file name")


def _naming(exc: OSError, path: str) -> OSError:
    """``exc`` re-raised with the user's ``path`` instead of a temporary file's (or none)."""
    new = type(exc)(exc.errno, exc.strerror or str(exc), path)
    return new


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], None], mode: str = "w") -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it into place.

    On any failure (including KeyboardInterrupt) the temporary file is removed and
    ``path`` is left as it was.  The file gets the permissions a plain ``open`` would
    give it (mkstemp's are 0600).  An existing ``path`` that is not a regular file is
    refused (:func:`check_output`); an OSError while writing (a missing folder, a full
    disk, ``File too large``) names ``path``, not the temporary file.
    """
    path = os.fspath(path)
    check_output(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path!r}: folder {directory!r} does not exist")
    try:
        fd, tmp = _mkstemp(directory)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as fh:
            write(fh)
        os.replace(tmp, path)
        with _lock:
            _temporaries.discard(tmp)
    except OSError as exc:
        _discard(tmp)
        if exc.filename is None or exc.filename == tmp:
            raise _naming(exc, path) from None
        raise
    except BaseException:
        _discard(tmp)
        raise


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are the same existing file (device and inode), following
    symbolic links and recognising hard links.  False if either does not exist."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


# names the log readers look for inside a folder (cdfast.io.read_log)
LOG_FILE_NAMES = ("trainer_state.json", "metrics.csv")


def clashes(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> str | None:
    """The input that writing ``output`` would replace, or None.

    ``output`` clashes with an input file when both name the same file (also through
    symbolic or hard links, or a path with ``..``), and with an input
    folder when it lies inside the folder under a name the log readers read there
    (``trainer_state.json``, ``metrics.csv``, TensorBoard ``*.tfevents.*`` files).
    """
    out = os.fspath(output)
    target = os.path.realpath(out)
    name = os.path.basename(target)
    for inp in inputs:
        src = os.fspath(inp)
        if same_file(out, src) or os.path.realpath(src) == target:
            return src
        if os.path.isdir(src):
            root = os.path.realpath(src)
            inside = os.path.commonpath([root, target]) == root
            if inside and (name in LOG_FILE_NAMES or ".tfevents." in name):
                return src
    return None


__all__ = ["atomic_write", "remove_temporaries", "run_or_defer", "same_file", "clashes", "check_input",
           "check_output"]
