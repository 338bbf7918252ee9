"""Sweeps: schedule families x their parameters x horizons x peak LRs -> one table.

For every schedule shape ``s`` (a family at some parameters, at horizon T) one kernel
pass gives the coefficients ``(a, b)`` of eq. (2.4); everything else follows in closed
form (docs/math.md section 2):

* the bound at any peak LR ``eta``: ``L_* + D^2 a / eta + G^2 b eta`` (``a`` scales as
  1/eta, ``b`` as eta), so a peak-LR axis costs nothing;
* the optimal peak LR ``(D / G) sqrt(a / b)`` and bound ``L_* + 2 D G sqrt(a b)``;
* the qualifying exam (Condition 2.5): the growth of ``T a + b`` over a grid of horizons,
  classified as in :func:`cdfast.qualifying_exam` (discrete sums, no integrals).

Shapes are built chunk by chunk (at most ``chunk_size`` float64 values at a time, all
of one horizon) and each chunk goes through the stacked kernels in one call, rows
dealt out to threads; memory stays bounded whatever the number of schedules.  With a
``dask.distributed`` client, chunks become tasks on the cluster and only the
coefficients come back.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validate as V
from . import schedules as S

FloatArray = NDArray[np.float64]
CHUNK_SIZE = 1 << 22  # float64 values per chunk of schedules (32 MiB)
EXAM_T = np.round(np.logspace(3, 6, 7)).astype(np.int64)  # 1e3 .. 1e6, two per decade


@dataclass(frozen=True)
class Spec:
    """One schedule family at fixed parameters: ``shape(T)`` is its unit-peak shape."""

    family: str
    params: tuple[tuple[str, Any], ...] = ()
    fn: Callable[..., Any] | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return self.family + (":" + ",".join(f"{k}={v}" for k, v in self.params) if self.params else "")

    def shape(self, T: int) -> FloatArray:
        """The shape at horizon T, checked: finite, in [0, 1] (up to rounding), last entry > 0."""
        kw = dict(self.params)
        s = S.make(self.family, T, **kw) if self.fn is None else np.asarray(self.fn(T, **kw), dtype=np.float64)
        if s.shape != (T,):
            raise ValueError(f"schedule {self.label} returned shape {s.shape} for T = {T}; it must return a "
                             "length-T 1-D array")
        bad = ~np.isfinite(s) | (s < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"schedule {self.label} at T = {T}: entry {i} is {float(s[i])!r}; "
                             "shapes must be finite and >= 0")
        if s[-1] == 0.0:
            raise ValueError(f"schedule {self.label} ends at 0 for T = {T}: a final LR of 0 makes eq. (2.4) "
                             "infinite; end the decay above 0 (the paper's linear decay ends at eta_peak / T)")
        return s


def _values(v: Any) -> list:
    if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
        return [v]
    return list(v)


def _grid(family: Any, params: Mapping[str, Any] | None) -> list[Spec]:
    if callable(family):
        name, fn = getattr(family, "__name__", "schedule"), family
    elif isinstance(family, str):
        name, fn = family, None
        if name not in S.FAMILIES:
            raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(S.FAMILIES)} or pass a callable "
                             "T, **params -> shape")
    else:
        raise TypeError(f"a schedule family must be a name from {sorted(S.FAMILIES)} or a callable "
                        f"(T, **params) -> shape, got {type(family).__name__}")
    params = dict(params or {})
    keys = list(params)
    combos = itertools.product(*(_values(params[k]) for k in keys))
    return [Spec(name, tuple(zip(keys, combo)), fn) for combo in combos]


def expand(schedules: Any) -> list[Spec]:
    """Every (family, parameters) combination of a sweep's ``schedules`` argument.

    Accepted: a family name (``"cosine"``), a callable ``(T, **params) -> shape``, a pair
    ``(family, {param: values})``, a mapping ``{family: {param: values}}``, or a list of
    these.  A parameter's values are a list (or any iterable but a string), or one value.
    """
    if isinstance(schedules, Mapping):
        out: list[Spec] = []
        for fam, params in schedules.items():
            out += _grid(fam, params)
        return out
    if isinstance(schedules, (str, bytes)) or callable(schedules):
        return _grid(schedules, None)
    if isinstance(schedules, tuple) and len(schedules) == 2 and isinstance(schedules[1], Mapping):
        return _grid(*schedules)
    if isinstance(schedules, Iterable):
        out = []
        for item in schedules:
            out += expand(item)
        if not out:
            raise ValueError("schedules is empty; name at least one schedule family")
        return out
    raise TypeError(f"schedules must be a family name, a callable, (family, params), a mapping or a list; "
                    f"got {type(schedules).__name__}")


def _horizons(T: Any, name: str = "T") -> NDArray[np.int64]:
    out = np.array([S._check_T(t, name) for t in _values(T)], dtype=np.int64)
    if out.size == 0:
        raise ValueError(f"{name} is empty; give at least one horizon (a number of steps, or a list of them)")
    return out


# ---------------------------------------------------------------------------
# The work: chunks of one horizon, (a, b) per row


def chunk_terms(T: int, specs: Sequence[Spec], backend: str | None = None) -> tuple[FloatArray, FloatArray]:
    """(a, b) of eq. (2.4) for the unit-peak shapes ``spec.shape(T)``, one stacked call.

    Memory: one (len(specs), T) block.  Runs wherever it is called (a dask worker too).
    """
    from .bounds import bound_terms

    block = np.empty((len(specs), T))
    for i, spec in enumerate(specs):
        block[i] = spec.shape(T)
    a, b = bound_terms(block, backend=backend)
    return np.asarray(a), np.asarray(b)


def _chunks(jobs: Sequence[tuple[int, int]], specs: Sequence[Spec], chunk_size: int):
    """Group (spec index, T) jobs by T into chunks of at most chunk_size values."""
    by_T: dict[int, list[int]] = {}
    for pos, (_, T) in enumerate(jobs):
        by_T.setdefault(T, []).append(pos)
    for T, positions in sorted(by_T.items()):
        rows = max(1, chunk_size // T)
        for lo in range(0, len(positions), rows):
            part = positions[lo:lo + rows]
            yield T, part, [specs[jobs[p][0]] for p in part]


def _progress_bar(total: int, enabled: bool | None, label: str):
    from ._progress import Progress

    return Progress(label, total, enabled=enabled)


def _run(jobs, specs, chunk_size, backend, client, progress) -> tuple[FloatArray, FloatArray]:
    a = np.empty(len(jobs))
    b = np.empty(len(jobs))
    chunks = list(_chunks(jobs, specs, chunk_size))
    with _progress_bar(len(jobs), progress, "sweep") as bar:
        if client is None:
            for T, part, chunk in chunks:
                a[part], b[part] = chunk_terms(T, chunk, backend)
                bar.advance(len(part))
        else:
            from dask.distributed import as_completed

            futures = {client.submit(chunk_terms, T, chunk, backend, pure=False): part for T, part, chunk in chunks}
            for fut in as_completed(futures):
                part = futures[fut]
                a[part], b[part] = fut.result()
                bar.advance(len(part))
                fut.release()
    return a, b


# ---------------------------------------------------------------------------
# The table


def _param_columns(specs: Sequence[Spec]) -> dict[str, np.dtype]:
    cols: dict[str, list] = {}
    for spec in specs:
        for k, v in spec.params:
            cols.setdefault(k, []).append(v)
    out = {}
    for k, vals in cols.items():
        numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in vals)
        out[k] = np.dtype(np.float64) if numeric else np.dtype(f"U{max(len(str(v)) for v in vals) or 1}")
    return out


def sweep(
    schedules: Any,
    T: int | Sequence[int],
    peak_lr: ArrayLike | None = None,
    *,
    D: float = 1.0,
    G: float = 1.0,
    L_star: float = 0.0,
    exam: bool = True,
    exam_T: ArrayLike | None = None,
    chunk_size: int = CHUNK_SIZE,
    backend: str | None = None,
    client: Any = None,
    as_frame: bool = False,
    progress: bool | None = None,
):
    """Bounds of eq. (2.4) for every schedule family x parameters x horizon x peak LR.

    Parameters
    ----------
    schedules
        A family name (``"cosine"``), a callable ``(T, **params) -> shape`` (values in
        [0, 1], positive at the end), a pair ``("wsd", {"decay_frac": [0.1, 0.2],
        "decay": ["linear", "sqrt"]})`` (the Cartesian product of the listed values), a
        mapping ``{family: {param: values}}``, or a list of these.  Warmup is a
        parameter like any other: ``{"cosine": {"warmup": [0, 1000]}}``.
    T : int or sequence of int
        Horizons (number of steps).
    peak_lr : array_like, optional
        Peak learning rates; the table has one row per schedule, horizon and peak LR.
        None: one row per schedule and horizon, at its optimal peak LR.
    D, G, L_star : float
        The constants of the bound (D, G > 0).
    exam : bool
        Add the qualifying-exam verdict (Condition 2.5) of every (family, parameters):
        ``T a + b`` over the horizons ``exam_T`` (default 10^3 .. 10^6, two per
        decade), classified as :func:`cdfast.qualifying_exam` does with
        ``continuous=False``.
    chunk_size : int
        Float64 values per chunk of schedules: the memory bound of the sweep (and of
        each dask task).
    backend : {None, "auto", "numba", "c"}
    client : dask.distributed.Client, optional
        Run the chunks as tasks on this cluster (``Client("tcp://scheduler:8786")``
        or a ``LocalCluster``); only the coefficients travel back.
    as_frame : bool
        Return a pandas DataFrame instead of a NumPy structured array.
    progress : bool, optional
        Progress bar (tqdm, if installed) over the schedules; None: when stderr is a
        terminal.

    Returns
    -------
    numpy structured array (or pandas.DataFrame)
        Columns ``schedule`` (label, ``family:param=value,...``), ``family``, one column
        per parameter (NaN or "" where a family lacks it), ``T``, ``peak_lr``, ``bound``
        (at ``peak_lr``), ``optimal_peak_lr``, ``optimal_bound``, ``a``, ``b`` (the
        coefficients of the unit-peak shape), and ``qualified`` (with ``exam``).  Rows
        run over schedules, then horizons, then peak LRs.

    Notes
    -----
    Eq. (2.4) of Bu, Xu, Mao (2026) and its peak-LR scaling: ``bound(eta) = L_* +
    D^2 a / eta + G^2 b eta`` with ``(a, b) = bound_terms(shape)``.  This equals
    ``last_iterate_bound(eta * shape, D, G, L_star)`` to within a few ulp (the kernel
    run on ``eta * shape`` rounds differently); ``optimal_peak_lr`` and
    ``optimal_bound`` equal :func:`cdfast.optimal_peak_lr` bit for bit.  Condition 2.5
    and Corollary 2.4 for the exam.

    Examples
    --------
    >>> import cdfast
    >>> table = cdfast.sweep({"wsd": {"decay_frac": [0.1, 0.5]}, "cosine": {}}, T=[1000, 4000],
    ...                      peak_lr=[1e-3, 1e-2], exam=False)
    >>> table.shape, sorted(set(table["schedule"].tolist()))
    ((12,), ['cosine', 'wsd:decay_frac=0.1', 'wsd:decay_frac=0.5'])
    """
    specs = expand(schedules)
    Ts = _horizons(T)
    peaks = None
    if peak_lr is not None:
        peaks = V.as_vector(peak_lr, "peak_lr")
        V.check_values(peaks, "peak_lr")
        if not peaks.all():
            raise ValueError(f"peak_lr[{int(np.argmin(peaks != 0))}] is 0; peak learning rates must be > 0")
    D = V.check_scalars(D, "D", positive=True)
    G = V.check_scalars(G, "G", positive=True)
    L_star = V.check_scalar(L_star, "L_star", nonneg=False)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size = {chunk_size!r} must be a positive integer (float64 values per chunk)")
    grid = _horizons(EXAM_T if exam_T is None else exam_T, "exam_T") if exam else np.zeros(0, dtype=np.int64)
    if exam and grid.shape[0] < 4:
        raise ValueError(f"exam_T = {grid.tolist()} needs at least 4 horizons on a geometric grid")
    if client is not None and not hasattr(client, "submit"):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")

    jobs = [(i, int(t)) for i in range(len(specs)) for t in Ts]
    exam_jobs = [(i, int(t)) for i in range(len(specs)) for t in grid]
    a_all, b_all = _run(jobs + exam_jobs, specs, int(chunk_size), backend, client, progress)
    a, b = a_all[: len(jobs)], b_all[: len(jobs)]

    eta_opt = (D / G) * np.sqrt(a / b)
    best = L_star + 2.0 * D * G * np.sqrt(a * b)
    qualified = None
    if exam:
        from .asymptotics import _classify

        qa = a_all[len(jobs):].reshape(len(specs), grid.shape[0])
        qb = b_all[len(jobs):].reshape(len(specs), grid.shape[0])
        q = grid * qa + qb  # sqrt(T) * bound at eta = 1/sqrt(T): T a + b
        qualified = np.array([_classify(grid, q[i]).kind == "bounded" for i in range(len(specs))])

    n_peak = 1 if peaks is None else peaks.shape[0]
    params = _param_columns(specs)
    label_len = max(len(s.label) for s in specs)
    fam_len = max(len(s.family) for s in specs)
    fields = [("schedule", f"U{label_len}"), ("family", f"U{fam_len}")]
    fields += [(k, dt) for k, dt in params.items() if k not in ("schedule", "family")]
    fields += [("T", np.int64), ("peak_lr", np.float64), ("bound", np.float64), ("optimal_peak_lr", np.float64),
               ("optimal_bound", np.float64), ("a", np.float64), ("b", np.float64)]
    if exam:
        fields.append(("qualified", np.bool_))
    table = np.zeros(len(jobs) * n_peak, dtype=fields)
    spec_of = np.repeat(np.array([i for i, _ in jobs]), n_peak)
    for name, value in (("schedule", [s.label for s in specs]), ("family", [s.family for s in specs])):
        table[name] = np.asarray(value)[spec_of]
    for k, dt in params.items():
        if k in ("schedule", "family"):
            continue
        fill = np.nan if dt.kind == "f" else ""
        col = np.array([dict(s.params).get(k, fill) for s in specs], dtype=dt)
        table[k] = col[spec_of]
    table["T"] = np.repeat(np.array([t for _, t in jobs], dtype=np.int64), n_peak)
    rep = lambda x: np.repeat(x, n_peak)  # noqa: E731
    table["a"], table["b"] = rep(a), rep(b)
    table["optimal_peak_lr"], table["optimal_bound"] = rep(eta_opt), rep(best)
    if peaks is None:
        table["peak_lr"] = eta_opt
        table["bound"] = best
    else:
        eta = np.tile(peaks, len(jobs))
        table["peak_lr"] = eta
        with np.errstate(over="ignore"):
            table["bound"] = L_star + (D * D * table["a"]) / eta + (G * G * table["b"]) * eta
        over = ~np.isfinite(table["bound"])
        if over.any():
            i = int(np.argmax(over))
            raise ValueError(f"the bound overflows float64 at peak_lr = {float(eta[i])!r} ({table['schedule'][i]}, "
                             f"T = {int(table['T'][i])}); the peak LR, D or G is too small or too large for double "
                             "precision")
    if qualified is not None:
        table["qualified"] = qualified[spec_of]
    if as_frame:
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("as_frame=True needs pandas: python -m pip install pandas") from None
        return pd.DataFrame(table)
    return table


# ---------------------------------------------------------------------------
# Output files


def write_table(table: Any, path: str) -> None:
    """Write a sweep table to ``path``: ``.csv`` (no dependency) or ``.parquet`` (pandas + pyarrow).

    Written atomically: a failed write leaves nothing behind.
    """
    from . import _files

    lower = path.lower()
    if lower.endswith(".parquet"):
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Parquet output needs pandas and pyarrow: python -m pip install pandas pyarrow") from None
        frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
        try:
            _files.atomic_write(path, lambda fh: frame.to_parquet(fh, index=False), "wb")
        except ImportError as exc:
            raise ImportError(f"Parquet output needs pyarrow: python -m pip install pyarrow ({exc})") from None
        return
    if not lower.endswith(".csv"):
        raise ValueError(f"{path!r}: write a sweep to .csv or .parquet")
    if not isinstance(table, np.ndarray):
        table = table.to_records(index=False)
    names = table.dtype.names

    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return repr(float(v))
        if isinstance(v, (bool, np.bool_)):
            return "true" if v else "false"
        return str(v)

    def write(fh) -> None:
        import csv

        w = csv.writer(fh)
        w.writerow(names)
        for row in table:
            w.writerow([cell(v) for v in row])

    _files.atomic_write(path, write, "w")


__all__ = ["sweep", "expand", "Spec", "chunk_terms", "write_table", "CHUNK_SIZE", "EXAM_T"]
