"""A periodic progress line on stderr for jobs that can take more than a few seconds.

Silent unless stderr is a terminal, so logs, pipes and tests see nothing.  The line
is rewritten in place (carriage return) at most every ``interval`` seconds and ended
with a newline when the job finishes.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


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
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.interval = interval
        self._start = time.perf_counter()
        self._last = -float("inf")
        self._shown = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        now = time.perf_counter()
        # the first second stays quiet: short jobs should not flash a progress line
        if self.enabled and now - self._last >= self.interval and now - self._start >= 1.0:
            self._last = now
            self._write(now)

    def _write(self, now: float) -> None:
        frac = self.done / self.total
        elapsed = now - self._start
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        self.stream.write(f"\r{self.label}: {100 * frac:5.1f}%  {elapsed:6.1f} s elapsed, ~{eta:5.1f} s left")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self._write(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
