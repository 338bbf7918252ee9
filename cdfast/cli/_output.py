"""What the commands write: aligned tables on stdout, CSV/JSON tables and figures as files.

Files are written atomically (:func:`atomic_write`, through :mod:`cdfast._files`), and an
output path is checked (:func:`check_out`) before any work.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Callable, Sequence

import numpy as np

from .. import _files
from .._format import fmt, table, with_interval  # noqa: F401  (re-exported for the commands)
from ._options import CliError


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "w") -> None:
    """Call ``write(fh)`` on a temporary file next to ``path``, then rename it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CliError(f"cannot write {path!r}: directory {directory!r} does not exist")
    _files.atomic_write(path, write, mode)


def write_table(path: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """CSV (or JSON, a list of records, when ``path`` ends in .json), atomically."""
    if path.lower().endswith(".json"):
        records = [dict(zip(columns, (_jsonable(v) for v in r))) for r in rows]
        atomic_write(path, lambda fh: (json.dump(records, fh, indent=1), fh.write("\n")))
    else:
        def write(fh):
            w = csv.writer(fh)
            w.writerow(columns)
            w.writerows([[_csv_cell(v) for v in r] for r in rows])
        atomic_write(path, write)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else str(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _csv_cell(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return v


def check_out(path: str | None, exts: Sequence[str], option: str) -> None:
    """Refuse a bad output path before any work (and check matplotlib for a PNG)."""
    if path is None:
        return
    if not path.lower().endswith(tuple(exts)):
        raise CliError(f"{option} {path!r} must end in {' or '.join(exts)}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CliError(f"{option} {path!r}: directory {directory!r} does not exist")
    if path.lower().endswith(".png"):
        from .. import plot

        plot.use_agg()


def save_plot(fig_fn: Callable[[], Any], path: str) -> None:
    from .. import plot

    plot.save_png(fig_fn(), path)
    print(f"wrote {path}")


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    print(table(columns, rows, title))
