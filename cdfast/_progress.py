"""Progress bars for jobs that can take more than a few seconds (tqdm, when installed).

A bar appears only when tqdm is installed (``pip install 'cdfast[progress]'``) and
stderr is a terminal, and only after the job has run for a second, so logs, pipes,
tests and short jobs see nothing.  Without tqdm there is no bar at all.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    """Report ``done / total`` for a named job.

    >>> with Progress("curve", total=10, enabled=False) as p:
    ...     for _ in range(10):
    ...         p.advance()
    """

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None,
                 enabled: bool | None = None, interval: float = 0.5) -> None:
        self.label = label
        self.total = max(int(total), 1)
        self.done = 0
        stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self._bar: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # the bar is optional: no tqdm, no bar
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=self.total, desc=label, file=stream, mininterval=interval, delay=1.0,
                                 leave=False, dynamic_ncols=True)
        self.enabled = self._bar is not None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        step = min(self.done + n, self.total) - self.done
        self.done += step
        if self._bar is not None and step:
            self._bar.update(step)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
