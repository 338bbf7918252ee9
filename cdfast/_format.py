"""Numbers and tables as text, for the result objects' ``summary()`` and the command line.

One rule for every printed number (:func:`fmt`): four significant digits in
``1e-3 <= |v| < 1e5``, else scientific notation; NaN prints as ``-``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def fmt(v: Any, keep_zeros: bool = False) -> str:
    """A table cell: floats to 4 significant digits (scientific outside 1e-3..1e5), NaN as ``-``.

    ``keep_zeros`` keeps trailing zeros (``3.000``, not ``3``), so that numbers read side
    by side, such as a value and its interval, show the same precision.
    """
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "-"
        if v == 0:
            return "0"
        return f"{v:{'#' if keep_zeros else ''}.4g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    """Aligned columns (the first left-aligned, the others right-aligned), one line per row."""
    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = [title] if title else []
    lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(columns, widths))))
    for r in cells:
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def with_interval(value: float, band: tuple[np.ndarray, np.ndarray] | None, i: int = -1, digits: int = 4) -> str:
    """``value [lo, hi]`` (``band`` holds the interval's arrays, ``i`` the entry), or ``value``,
    each to ``digits`` significant digits with trailing zeros kept: ``3.000 [2.984, 3.009]``."""
    fmt_ = (lambda v: f"{v:#.{digits}g}") if digits != 4 else (lambda v: fmt(v, keep_zeros=True))
    if band is None:
        return fmt_(value)
    return f"{fmt_(value)} [{fmt_(float(band[0][i]))}, {fmt_(float(band[1][i]))}]"
