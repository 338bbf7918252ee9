"""Ctrl-C while the ``cdfast`` command is still starting: one line, not a traceback.

Importing cdfast (NumPy, SciPy, the kernels) takes a moment, and a Ctrl-C then arrives
before :func:`cdfast.cli.main` can catch it.  When the process *is* the command (the
``cdfast`` script or ``python -m cdfast``), :func:`install` replaces the interpreter's
report of an uncaught KeyboardInterrupt by ``cdfast: interrupted``; the process still
ends by SIGINT (status 130 in a shell).  Any other program importing cdfast is left
alone.  This module imports nothing heavy: it runs first in ``cdfast/__init__.py``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_previous: Any = None


def launched_as_command() -> bool:
    """Whether this process is the ``cdfast`` command (script or ``python -m cdfast``)."""
    orig = list(getattr(sys, "orig_argv", []) or [])
    if "-m" in orig:
        i = orig.index("-m")
        return i + 1 < len(orig) and orig[i + 1] in ("cdfast", "cdfast.cli")
    return os.path.basename(sys.argv[0] if sys.argv else "") == "cdfast"


def _hook(exc_type: type, exc: BaseException, tb: Any) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        try:
            sys.stderr.write("cdfast: interrupted\n")
        except (AttributeError, OSError, ValueError):  # no stderr
            pass
        return
    _previous(exc_type, exc, tb)


def install() -> None:
    """Report an early Ctrl-C in one line, if this process is the command."""
    global _previous
    if sys.excepthook is sys.__excepthook__ and launched_as_command():
        _previous = sys.excepthook
        sys.excepthook = _hook
