"""Plain tables: CSV and Parquet files with named columns (``format="csv"``/``"parquet"``),
and the small LR and loss files of the command line.

CSV is parsed by pandas when it is installed, else by the standard library (empty
cells are NaN either way); Parquet needs pyarrow or pandas (``pip install "cdfast[io]"``).

Generic indexing (a table written by hand or by a script): the step column (``step``,
``iter``, ``iteration``, ``global_step``, ...) counts the updates done; the loss at step
``s`` is measured on ``w_s``; the LR at ``s`` is ``eta_s``, the LR of the update that
produced ``w_s`` (the layout ``cdfast curve`` writes); a gradient norm at ``s`` is
``G_s``.  A table whose columns name a trainer (``train/global_step`` and
``train/learning_rate`` of the Hugging Face Trainer, ``lr-*`` of Lightning) follows that
trainer's convention (see :mod:`cdfast.io`).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import warnings
import pathlib
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _files
from .. import _validate as V
from .._validate import as_vector

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

__all__ = ["read_csv", "curve_from_columns", "read_table", "read_lr_file", "read_loss_file"]

EXTRA = 'pip install "cdfast[io]"  (or: pip install pyarrow)'


# ---------------------------------------------------------------------------
# Tables of named columns


#: cells that spell a NaN value (Python's, numpy's and torch's ``str(float("nan"))``), as opposed to an
#: empty cell or another missing-value marker
NAN_TOKENS = frozenset({"nan", "-nan", "+nan"})


def trailing_nan(values: FloatArray, literal: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The cells written as NaN (``literal``) after the column's last finite value.

    A run whose loss became NaN logs NaN from then on; a sparse column (a validation loss
    logged every N steps, written with ``nan`` between) has finite values after its NaNs.
    Only the first is a divergence, so only NaNs no finite value follows count
    (:func:`cdfast.io.first_divergence`); the rest stay missing entries.
    """
    finite = np.flatnonzero(np.isfinite(values))
    after = np.zeros(values.shape, dtype=bool)
    after[(finite[-1] + 1) if finite.size else 0:] = True
    return literal & after


def _float_or_nan(cell: str) -> float:
    cell = cell.strip()
    if not cell:
        return np.nan
    try:
        return float(cell)
    except ValueError:
        return None  # type: ignore[return-value]


def _check_width(row: Sequence[str], width: int, n: int, where: str) -> None:
    """A data row with more (non-empty) fields than the header names is refused: read
    as it stands, its values would land under the wrong columns (or be dropped)."""
    if len(row) > width and any(c.strip() for c in row[width:]):
        raise ValueError(f"{where}: data row {n} has {len(row)} fields but the header names {width} columns; "
                         "every row needs one value per column (fix the file, or quote fields that hold commas)")


def _csv_stdlib(text: str, where: str = "CSV",
                explicit_nan: dict[str, NDArray[np.bool_]] | None = None) -> tuple[list[str], dict[str, FloatArray]]:
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        return [], {}
    header = [h.strip() for h in rows[0]]
    for i, r in enumerate(rows[1:]):
        _check_width(r, len(header), i + 1, where)
    cols: dict[str, FloatArray] = {}
    for j, name in enumerate(header):
        values = np.empty(len(rows) - 1)
        literal = np.zeros(len(rows) - 1, dtype=bool)
        numeric = True
        for i, r in enumerate(rows[1:]):
            v = _float_or_nan(r[j]) if j < len(r) else np.nan
            if v is None:
                numeric = False
                break
            values[i] = v
            literal[i] = j < len(r) and r[j].strip().lower() in NAN_TOKENS
        if numeric and name:
            cols[name] = values
            _note_nan(explicit_nan, name, trailing_nan(values, literal))
    return header, cols


def _note_nan(explicit_nan: dict[str, NDArray[np.bool_]] | None, name: str, mask: NDArray[np.bool_]) -> None:
    if explicit_nan is not None and mask.any():
        explicit_nan[name] = mask


def _csv_pandas(path: pathlib.Path,
                explicit_nan: dict[str, NDArray[np.bool_]] | None = None) -> tuple[list[str], dict[str, FloatArray]] | None:
    try:
        import pandas as pd
    except ImportError:
        return None
    # pandas takes surplus fields in the first data row as an index (shifting every
    # column, and slowly: a 1e6-field line takes minutes); refuse them first
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            head = [r for r in itertools.islice(csv.reader(fh), 64) if r and any(c.strip() for c in r)][:2]
    except (UnicodeDecodeError, csv.Error):
        return None
    if len(head) == 2:
        _check_width(head[1], len(head[0]), 1, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, skipinitialspace=True, index_col=False)
    except pd.errors.ParserWarning:
        raise ValueError(f"{path}: a row has more fields than the header names; every row needs one value per "
                         "column") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    header = [str(c).strip() for c in df.columns]
    cols: dict[str, FloatArray] = {}
    tails: dict[str, tuple[str, NDArray[np.bool_]]] = {}  # column -> (name, its trailing NaNs pandas read as NA)
    for name, col in zip(header, df.columns):
        values = pd.to_numeric(df[col], errors="coerce")
        raw = df[col]
        # spellings of NaN that pandas does not take for a missing value ("+nan", "NAN") are NaN values too
        spelled = np.zeros(len(df), dtype=bool)
        if not pd.api.types.is_numeric_dtype(raw):
            spelled = (raw.astype(str).str.strip().str.lower().isin(NAN_TOKENS) & raw.notna()).to_numpy()
        if (values.isna().to_numpy() & raw.notna().to_numpy() & ~spelled).any():
            continue  # a text column
        cols[name] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        _note_nan(explicit_nan, name, trailing_nan(cols[name], spelled))
        tail = trailing_nan(cols[name], raw.isna().to_numpy())
        if tail.any():
            tails[col] = (name, tail)
    if explicit_nan is not None and tails:
        # pandas reads empty cells and "nan" alike: which trailing NaNs were written as NaN, from the text (one
        # more read of just those columns, only when some column ends in missing values)
        text = pd.read_csv(path, skipinitialspace=True, index_col=False, usecols=list(tails), dtype=str,
                           keep_default_na=False)
        for col, (name, tail) in tails.items():
            literal = text[col].str.strip().str.lower().isin(NAN_TOKENS).to_numpy()
            _note_nan(explicit_nan, name, (tail & literal) | explicit_nan.get(name, np.zeros(len(df), dtype=bool)))
    return header, cols


def read_table(path: str | pathlib.Path,
               explicit_nan: dict[str, NDArray[np.bool_]] | None = None) -> tuple[list[str], dict[str, FloatArray]]:
    """``(header, {numeric column: float64 array})`` of a CSV or Parquet file.

    Empty cells (and Parquet nulls) are NaN.  ``explicit_nan``, when given, receives
    ``{column: bool mask}`` of the values written as NaN (a CSV cell ``nan``, a Parquet NaN
    that is not a null) after the column's last finite value (:func:`trailing_nan`): a loss
    logged as NaN to the end is a diverged run, not a gap.
    """
    path = pathlib.Path(path)
    _files.check_input(path, "table")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        return _parquet(path, explicit_nan)
    got = _csv_pandas(path, explicit_nan)
    if got is not None:
        return got
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is neither a text (CSV) nor a Parquet file") from None
    return _csv_stdlib(text, str(path), explicit_nan)


def _parquet(path: pathlib.Path,
             explicit_nan: dict[str, NDArray[np.bool_]] | None = None) -> tuple[list[str], dict[str, FloatArray]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(f"reading Parquet files needs pyarrow (or pandas with a Parquet engine): {EXTRA}") from None
        df = pd.read_parquet(path)
        header = [str(c) for c in df.columns]
        cols = {h: df[c].to_numpy(dtype=np.float64, na_value=np.nan) for h, c in zip(header, df.columns)
                if np.issubdtype(df[c].dtype, np.number)}
        return header, cols
    table = pq.read_table(path)
    header = list(table.column_names)
    cols = {}
    for name in header:
        col = table.column(name)
        try:
            arr = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        except (TypeError, ValueError):
            continue
        cols[name] = arr
        nulls = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        _note_nan(explicit_nan, name, trailing_nan(arr, np.isnan(arr) & ~nulls))
    return header, cols


def read_csv(path: str | pathlib.Path, delimiter: str = ",") -> dict[str, FloatArray]:
    """Read a CSV file with a header row into ``{column: float64 array}``.

    Empty cells become NaN.  Use :func:`curve_from_columns` on the ``step, lr, loss``
    columns to get a fit-ready curve.
    """
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"":
        raise ValueError(f"delimiter = {delimiter!r} must be one character such as ',', ';' or '\\t'")
    _files.check_input(path, "CSV file")
    data = np.genfromtxt(path, delimiter=delimiter, names=True, dtype=np.float64, encoding="utf-8")
    if data.dtype.names is None:
        raise ValueError(f"{path}: no header row found; the first line must name the columns")
    return {name: np.atleast_1d(np.asarray(data[name], dtype=np.float64)) for name in data.dtype.names}


def curve_from_columns(step: ArrayLike, lr: ArrayLike, loss: ArrayLike) -> tuple[FloatArray, IntArray, FloatArray]:
    """Turn per-step log columns into ``(lr_sequence, steps, loss)`` for fitting.

    Row ``i`` says: update number ``step[i]`` (1-based) used learning rate ``lr[i]``
    (= eta_{step}), and the weights after it had loss ``loss[i]`` (NaN = not logged).
    Every step ``1 .. T`` must appear with a finite LR; rows may come in any order but
    not twice.  Rows with ``step == 0`` (the initial loss) and NaN losses are dropped.

    Returns
    -------
    lr_sequence : ndarray, shape (T,)   eta_1 .. eta_T
    steps : ndarray of int              1-based steps with a logged loss, increasing
    loss : ndarray                      the losses at ``steps``
    """
    s = as_vector(step, "step")
    x = as_vector(lr, "lr")
    y = as_vector(loss, "loss")
    if not (s.shape == x.shape == y.shape):
        raise ValueError(f"step, lr and loss must have equal lengths, got {s.shape[0]}, {x.shape[0]}, {y.shape[0]}")
    if np.any(s != np.round(s)) or np.any(s < 0):
        i = int(np.argmax((s != np.round(s)) | (s < 0)))
        raise ValueError(f"step[{i}] = {float(s[i])!r} is not a non-negative integer iteration")
    keep = s > 0
    s, x, y = s[keep].astype(np.int64), x[keep], y[keep]
    order = np.argsort(s, kind="stable")
    s, x, y = s[order], x[order], y[order]
    T = int(s[-1])
    if s.shape[0] != T or np.any(s != np.arange(1, T + 1)):
        dup = np.flatnonzero(np.diff(s) == 0)
        if dup.size:
            raise ValueError(f"step {s[dup[0]]} appears twice; keep one row per step")
        missing = np.setdiff1d(np.arange(1, T + 1), s)
        raise ValueError(
            f"the LR of step {missing[0]} is missing ({missing.size} of 1..{T} absent); the bound needs "
            "every learning rate eta_1..eta_T: rebuild the sequence from the schedule instead"
        )
    if not np.all(np.isfinite(x)):
        i = int(np.argmax(~np.isfinite(x)))
        raise ValueError(f"lr at step {s[i]} is {x[i]}; every step needs a finite learning rate")
    logged = np.isfinite(y)
    return x, s[logged], y[logged]


# ---------------------------------------------------------------------------
# The command line's LR and loss files (errors are ValueError with one-line messages)


def read_lr_file(path: str) -> FloatArray:
    """Learning rates from ``.npy``, ``.csv`` (one column, or a column named lr or
    learning_rate) or plain text with one value per line (``#`` comments allowed).

    Values are checked with the library's validation (finite, >= 0, named by index).
    """
    _files.check_input(path, "LR file")
    if not os.path.isfile(path):
        raise ValueError(f"LR file {path!r} " + ("is a directory; give a file" if os.path.isdir(path) else "does not exist"))
    if path.lower().endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"LR file {path!r} is not a readable .npy array ({exc})") from None
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
    else:
        arr = _read_column(path, ("lr", "learning_rate", "train_lr"), "LR file")
    lr = V.as_vector(arr, "lr")
    V.check_values(lr, "lr")
    return lr


def _read_rows(path: str, what: str) -> list[list[str]]:
    try:
        with open(path, newline="") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path!r} is not a text file (expected CSV or one number per line)") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].lstrip().startswith("#")]
    rows = [[c.strip() for c in r] for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{what} {path!r} is empty")
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_floats(rows: list[list[str]], col: int, path: str, first_line: int) -> FloatArray:
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        try:
            out[i] = float(row[col])
        except (ValueError, IndexError):
            cell = row[col] if col < len(row) else "<missing>"
            raise ValueError(f"{path!r} data row {i + first_line}: {cell!r} is not a number") from None
    return out


def _read_column(path: str, names: Sequence[str], what: str) -> FloatArray:
    rows = _read_rows(path, what)
    header = [c.lower() for c in rows[0]]
    if all(_is_number(c) for c in rows[0]):
        if len(rows[0]) != 1:
            raise ValueError(f"{what} {path!r} has {len(rows[0])} columns and no header; "
                             f"give one value per line or name the column ({'/'.join(names)})")
        return _parse_floats(rows, 0, path, 1)
    cols = [i for i, h in enumerate(header) if h in names]
    if not cols:
        if len(header) != 1:
            raise ValueError(f"{what} {path!r} has no column named {' or '.join(names)} (columns: {rows[0]})")
        cols = [0]
    return _parse_floats(rows[1:], cols[0], path, 1)


def read_loss_file(path: str) -> tuple[IntArray, FloatArray]:
    """``(steps, loss)`` from a CSV with columns step (or iter) and loss (or val_loss).

    NaN or non-numeric values are refused with the row number.
    """
    _files.check_input(path, "loss file")
    if not os.path.isfile(path):
        raise ValueError(f"loss file {path!r} " + ("is a directory; give a file" if os.path.isdir(path) else "does not exist"))
    rows = _read_rows(path, "loss file")
    header = [c.lower() for c in rows[0]]
    if all(_is_number(c) for c in rows[0]):
        if len(header) != 2:
            raise ValueError(f"loss file {path!r} needs two columns, step and loss (a header line step,loss helps)")
        s_col, l_col, data = 0, 1, rows
    else:
        s_col = next((header.index(n) for n in ("step", "iter", "iteration", "_step") if n in header), None)
        l_col = next((header.index(n) for n in ("loss", "val_loss", "train_loss") if n in header), None)
        if s_col is None or l_col is None:
            raise ValueError(f"loss file {path!r} needs columns 'step' and 'loss' (found {rows[0]})")
        data = rows[1:]
    if not data:
        raise ValueError(f"loss file {path!r} has a header but no data rows")
    steps = _parse_floats(data, s_col, path, 1)
    loss = _parse_floats(data, l_col, path, 1)
    for name, arr in (("step", steps), ("loss", loss)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"loss file {path!r} data row {i + 1}: {name} is {arr[i]}; "
                             "remove rows with missing values")
    if np.any(steps != np.round(steps)) or np.any(steps < 1):
        i = int(np.argmax((steps != np.round(steps)) | (steps < 1)))
        raise ValueError(f"loss file {path!r} data row {i + 1}: step {steps[i]} is not a 1-based whole step")
    if np.any(np.diff(steps) <= 0):
        i = int(np.argmax(np.diff(steps) <= 0)) + 1
        raise ValueError(f"loss file {path!r} data row {i + 1}: steps must be strictly increasing "
                         f"(step {steps[i]:g} follows {steps[i - 1]:g}); sort and de-duplicate them")
    return steps.astype(np.int64), loss
