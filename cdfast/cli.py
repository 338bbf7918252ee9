"""The ``cdfast`` command line: report, curve, exam, fit, bench.

``main(argv) -> int`` parses, runs one subcommand, and returns the exit status.  Every
input error (a bad number, an unknown schedule, a missing or malformed file, NaN in a
log, a zero final LR) ends with one line ``cdfast: error: ...`` on stderr and status 2,
never a traceback.  Output files are written atomically: nothing partial is left if a
run fails.  The modules for the exam (cdfast.asymptotics) and fitting (cdfast.fit,
cdfast.io) are imported inside their subcommands only.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from . import _files
from . import _validate as V
from . import schedules as S
from ._progress import Progress

EXIT_USAGE = 2
DEFAULT_SCHEDULES = ("constant", "inverse_sqrt", "linear", "cosine", "wsd")


class CliError(Exception):
    """An input problem reported as ``cdfast: error: <message>`` with status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2 (argparse prints usage too)
        raise CliError(f"{message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------------------
# argument types


def _number(text: str) -> float:
    try:
        v = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def _nonneg(text: str) -> float:
    v = _number(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; give a value >= 0")
    return v


def _positive(text: str) -> float:
    v = _number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return v


def _count(text: str, low: int = 1) -> int:
    v = _number(text)
    if not v.is_integer() or v < low:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {low} (1e6 and 1_000_000 work)")
    return int(v)


def _steps(text: str) -> int:
    return _count(text, 1)


def _nonneg_int(text: str) -> int:
    return _count(text, 0)


def _step_list(text: str) -> list[int]:
    return [_steps(part) for part in text.split(",") if part.strip()]


def _value(text: str) -> Any:
    """A schedule parameter: int, float or bare word."""
    try:
        v = float(text.replace("_", ""))
    except ValueError:
        return text
    return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v


def parse_schedule(spec: str) -> tuple[str, dict[str, Any]]:
    """``"wsd:decay_frac=0.2,decay=sqrt"`` -> ``("wsd", {"decay_frac": 0.2, "decay": "sqrt"})``."""
    name, _, rest = spec.partition(":")
    name = name.strip().lower().replace("-", "_")
    if name not in S.FAMILIES:
        raise CliError(f"unknown schedule {spec!r}; choose one of {', '.join(sorted(S.FAMILIES))} "
                       "(parameters as NAME:key=value,..., e.g. wsd:decay_frac=0.2,decay=sqrt)")
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise CliError(f"schedule parameter {item!r} in {spec!r} is not key=value")
        params[key.strip()] = _value(val.strip())
    return name, params


def schedule_label(name: str, params: dict[str, Any]) -> str:
    return name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")


# ---------------------------------------------------------------------------
# files


def read_lr_file(path: str) -> np.ndarray:
    """Learning rates from ``.npy``, ``.csv`` (one column, or a column named lr or
    learning_rate) or plain text with one value per line (``#`` comments allowed).

    Values are checked with the library's validation (finite, >= 0, named by index).
    """
    if not os.path.isfile(path):
        raise CliError(f"LR file {path!r} does not exist")
    if path.lower().endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise CliError(f"LR file {path!r} is not a readable .npy array ({exc})") from None
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
        raise CliError(f"{what} {path!r} is not a text file (expected CSV or one number per line)") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].lstrip().startswith("#")]
    rows = [[c.strip() for c in r] for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise CliError(f"{what} {path!r} is empty")
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_floats(rows: list[list[str]], col: int, path: str, first_line: int) -> np.ndarray:
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        try:
            out[i] = float(row[col])
        except (ValueError, IndexError):
            cell = row[col] if col < len(row) else "<missing>"
            raise CliError(f"{path!r} data row {i + first_line}: {cell!r} is not a number") from None
    return out


def _read_column(path: str, names: Sequence[str], what: str) -> np.ndarray:
    rows = _read_rows(path, what)
    header = [c.lower() for c in rows[0]]
    if all(_is_number(c) for c in rows[0]):
        if len(rows[0]) != 1:
            raise CliError(f"{what} {path!r} has {len(rows[0])} columns and no header; "
                           f"give one value per line or name the column ({'/'.join(names)})")
        return _parse_floats(rows, 0, path, 1)
    cols = [i for i, h in enumerate(header) if h in names]
    if not cols:
        if len(header) != 1:
            raise CliError(f"{what} {path!r} has no column named {' or '.join(names)} (columns: {rows[0]})")
        cols = [0]
    return _parse_floats(rows[1:], cols[0], path, 1)


def read_loss_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, loss)`` from a CSV with columns step (or iter) and loss (or val_loss).

    NaN or non-numeric values are refused with the row number.
    """
    if not os.path.isfile(path):
        raise CliError(f"loss file {path!r} does not exist")
    rows = _read_rows(path, "loss file")
    header = [c.lower() for c in rows[0]]
    if all(_is_number(c) for c in rows[0]):
        if len(header) != 2:
            raise CliError(f"loss file {path!r} needs two columns, step and loss (a header line step,loss helps)")
        s_col, l_col, data = 0, 1, rows
    else:
        s_col = next((header.index(n) for n in ("step", "iter", "iteration", "_step") if n in header), None)
        l_col = next((header.index(n) for n in ("loss", "val_loss", "train_loss") if n in header), None)
        if s_col is None or l_col is None:
            raise CliError(f"loss file {path!r} needs columns 'step' and 'loss' (found {rows[0]})")
        data = rows[1:]
    if not data:
        raise CliError(f"loss file {path!r} has a header but no data rows")
    steps = _parse_floats(data, s_col, path, 1)
    loss = _parse_floats(data, l_col, path, 1)
    for name, arr in (("step", steps), ("loss", loss)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise CliError(f"loss file {path!r} data row {i + 1}: {name} is {arr[i]}; "
                           "remove rows with missing values")
    if np.any(steps != np.round(steps)) or np.any(steps < 1):
        i = int(np.argmax((steps != np.round(steps)) | (steps < 1)))
        raise CliError(f"loss file {path!r} data row {i + 1}: step {steps[i]} is not a 1-based whole step")
    if np.any(np.diff(steps) <= 0):
        i = int(np.argmax(np.diff(steps) <= 0)) + 1
        raise CliError(f"loss file {path!r} data row {i + 1}: steps must be strictly increasing "
                       f"(step {steps[i]:g} follows {steps[i - 1]:g}); sort and de-duplicate them")
    return steps.astype(np.int64), loss


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


def _check_out(path: str | None, exts: Sequence[str], option: str) -> None:
    """Refuse a bad output path before any work (and check matplotlib for a PNG)."""
    if path is None:
        return
    if not path.lower().endswith(tuple(exts)):
        raise CliError(f"{option} {path!r} must end in {' or '.join(exts)}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CliError(f"{option} {path!r}: directory {directory!r} does not exist")
    if path.lower().endswith(".png"):
        from . import plot

        plot._pyplot()


def _save_plot(fig_fn: Callable[[], Any], path: str) -> None:
    from . import plot

    plot.save_png(fig_fn(), path)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------
# shared schedule options


def _add_schedule_options(p: argparse.ArgumentParser, *, required_steps: bool = False) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--schedule", metavar="NAME[:k=v,...]",
                     help=f"built-in schedule ({', '.join(S.FAMILIES)}), e.g. wsd:decay_frac=0.2")
    src.add_argument("--lr-file", metavar="FILE", help="learning rates: .npy, .csv or one value per line")
    p.add_argument("--steps", "-T", type=_steps, metavar="T", help="number of steps for --schedule")
    p.add_argument("--peak-lr", type=_positive, default=None, metavar="X",
                   help="peak learning rate for --schedule (default: the bound-optimal one)")
    p.add_argument("--warmup", type=_nonneg_int, default=0, metavar="W", help="linear warmup steps")


def _schedule_from_args(args: argparse.Namespace) -> tuple[str, np.ndarray, bool]:
    """(label, lr or unit-peak shape, is_shape) from --schedule/--lr-file."""
    if args.lr_file:
        if args.steps is not None or args.warmup or args.peak_lr is not None:
            raise CliError("--steps, --warmup and --peak-lr apply to --schedule, not to --lr-file")
        return os.path.basename(args.lr_file), read_lr_file(args.lr_file), False
    if not args.schedule:
        raise CliError("give a schedule: --schedule NAME --steps T, or --lr-file FILE")
    if args.steps is None:
        raise CliError("--schedule needs --steps T (the horizon, e.g. --steps 1e5)")
    name, params = parse_schedule(args.schedule)
    shape = S.make(name, args.steps, **params, **({"warmup": args.warmup} if args.warmup else {}))
    return schedule_label(name, params), shape, True


def _optimal_peak(shape: np.ndarray, D: float, G: float, backend: str | None) -> tuple[float, float, float]:
    """(a, b, eta*) for a unit-peak shape: bound(eta) = D^2 a/eta + G^2 b eta is least at (D/G) sqrt(a/b)."""
    import cdfast

    a, b = cdfast.bound_terms(shape, backend=backend)
    if D == 0 or G == 0:
        raise CliError("the optimal peak LR needs D > 0 and G > 0; give --peak-lr instead")
    return a, b, (D / G) * math.sqrt(a / b)


# ---------------------------------------------------------------------------
# report


def _time_terms(shape: np.ndarray, backend: str, repeat: int) -> tuple[tuple[float, float], float]:
    import cdfast

    result = cdfast.bound_terms(shape, backend=backend)  # compile / load outside the timing
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = cdfast.bound_terms(shape, backend=backend)
        best = min(best, time.perf_counter() - t0)
    return result, best


def _exam_grid(max_T: int) -> np.ndarray:
    from . import asymptotics

    grid = asymptotics.EXAM_T[asymptotics.EXAM_T <= max_T]
    if grid.shape[0] < 4:
        raise CliError(f"the exam needs at least 4 horizons, i.e. up to T >= {int(asymptotics.EXAM_T[3])} "
                       f"(got {max_T}); raise --max-steps")
    return grid


def _run_exam(name: str, params: dict[str, Any], warmup: int, grid: np.ndarray, continuous: bool) -> Any:
    """qualifying_exam for a named family (a warmup of W steps is kept fixed across T)."""
    from . import asymptotics

    if warmup:
        if warmup > grid[0]:
            raise CliError(f"--warmup {warmup} exceeds the exam's smallest horizon T = {grid[0]}")
        return asymptotics.qualifying_exam(lambda T: S.make(name, T, warmup=warmup, **params), grid,
                                           kind="family", continuous=False)
    return asymptotics.qualifying_exam(name, grid, continuous=continuous, **params)


def _backends_for(choice: str) -> list[str]:
    import cdfast

    have = list(cdfast.available_backends())
    if choice == "all":
        if not have:
            raise ImportError("no cdfast backend is available (neither Numba nor the C extension)")
        return have
    from ._backends import get_backend

    return [get_backend(choice).name]


def cmd_report(args: argparse.Namespace) -> int:
    _check_out(args.out, (".csv", ".json"), "--out")
    _check_out(args.plot, (".png",), "--plot")
    D, G, L = args.D, args.G, args.L_star
    if args.peak_lr is None and (D == 0 or G == 0):
        raise CliError("the optimal peak LR needs D > 0 and G > 0; give --peak-lr instead")
    specs = [parse_schedule(s) for s in args.schedules]
    backends = _backends_for(args.backend)
    exam_on = not args.no_exam
    if exam_on:
        try:
            from . import asymptotics  # noqa: F401
        except ImportError:
            exam_on = False
            print("note: the qualifying exam (cdfast.asymptotics) is not available in this version", file=sys.stderr)

    columns = ["schedule", "T", "peak_lr", "last_iterate", "sqrtT_gap", "average_iterate", "exam",
               "exam_s"] + [f"{b}_ms" for b in backends] + ["backend_rel_diff"]
    rows = []
    curves = []
    with Progress("report", total=len(specs)) as progress:
        for name, params in specs:
            shape = S.make(name, args.steps, **params, **({"warmup": args.warmup} if args.warmup else {}))
            terms, times = {}, {}
            for be in backends:
                terms[be], times[be] = _time_terms(shape, be, args.repeat)
            a, b = terms[backends[0]]
            diff = max((max(abs(t[0] - a) / a, abs(t[1] - b) / b) for t in terms.values()), default=0.0)
            if args.peak_lr is None:
                eta = (D / G) * math.sqrt(a / b)
            else:
                eta = args.peak_lr
            last = L + D * D * a / eta + G * G * b * eta
            import cdfast

            avg = cdfast.average_iterate_bound(eta * shape, D, G, L, backend=backends[0])
            verdict, exam_s = "n/a", math.nan
            if exam_on:
                t0 = time.perf_counter()
                result = _run_exam(name, params, args.warmup, _exam_grid(max(args.steps, 10**5)), False)
                exam_s = time.perf_counter() - t0
                verdict = "qualified" if result.qualified else "not qualified"
            label = schedule_label(name, params)
            rows.append([label, args.steps, eta, last, math.sqrt(args.steps) * (last - L), avg, verdict, exam_s]
                        + [1e3 * times[be] for be in backends] + [diff])
            curves.append((label, a, b))
            progress.advance()

    _print_table(columns, rows, title=(
        f"cdfast report: T = {args.steps}, D = {D:g}, G = {G:g}, L* = {L:g}; "
        + ("peak LR = bound-optimal (D/G) sqrt(a/b)" if args.peak_lr is None else f"peak LR = {args.peak_lr:g}")))
    print("last_iterate: eq. (2.4) at T; sqrtT_gap = sqrt(T) (bound - L*) (Table 1: 2 for linear); "
          "average_iterate: eq. (2.3); *_ms: best time of one bound pass; "
          "backend_rel_diff: largest relative difference of (a, b) between backends"
          + ("; exam: Condition 2.5 on horizons 1e3..max(T, 1e5) (`cdfast exam NAME` for the full exam)"
             if exam_on else ""))
    if args.out:
        write_table(args.out, columns, rows)
        print(f"wrote {args.out}")
    if args.plot:
        from . import plot

        _save_plot(lambda: plot.peak_lr_figure(curves, D=D or 1.0, G=G or 1.0, L_star=L,
                                                title=f"bound vs peak LR, T = {args.steps}"), args.plot)
    return 0


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "-"
        if v == 0:
            return "0"
        return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def _print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    cells = [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    if title:
        print(title)
    print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(columns, widths))))
    for r in cells:
        print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))))


# ---------------------------------------------------------------------------
# curve


def _curve_points(T: int, points: int) -> np.ndarray:
    if points == 0 or points >= T:
        return np.arange(1, T + 1, dtype=np.int64)
    return np.unique(np.round(np.linspace(1, T, points)).astype(np.int64))


def compute_curve(lr: np.ndarray, at: np.ndarray, *, D: float, G: float, L_star: float,
                  method: str = "auto", backend: str | None = None, label: str = "curve") -> np.ndarray:
    """eq. (2.4) at the iterations ``at``, in chunks so that long exact curves show progress."""
    import cdfast

    if method != "exact" or at.shape[0] <= 256:
        return cdfast.bound_curve(lr, D, G, L_star, at=at, method=method, backend=backend)
    # exact cost grows with tau: cut the work (sum of tau) into about 50 equal pieces
    work = np.cumsum(at.astype(float))
    cuts = np.searchsorted(work, np.linspace(0, work[-1], 51)[1:-1])
    pieces = [p for p in np.split(at, np.unique(cuts)) if p.size]
    out = []
    with Progress(label, total=int(work[-1])) as progress:
        for piece in pieces:
            out.append(cdfast.bound_curve(lr, D, G, L_star, at=piece, method=method, backend=backend))
            progress.advance(int(piece.astype(float).sum()))
    return np.concatenate(out)


def cmd_curve(args: argparse.Namespace) -> int:
    _check_out(args.out, (".csv", ".json"), "--out")
    _check_out(args.plot, (".png",), "--plot")
    label, lr, is_shape = _schedule_from_args(args)
    D, G, L = args.D, args.G, args.L_star
    V.check_positive_last(lr, "cdfast curve")
    if is_shape:
        if args.peak_lr is None:
            _, _, eta = _optimal_peak(lr, D, G, args.backend)
            print(f"peak LR = {eta:.6g} (minimises the final bound; set it with --peak-lr)")
        else:
            eta = args.peak_lr
        lr = eta * lr
    at = _curve_points(lr.shape[0], args.points)
    bound = compute_curve(lr, at, D=D, G=G, L_star=L, method=args.method, backend=args.backend,
                          label=f"curve {label}")
    rows = list(zip(at.tolist(), lr[at - 1].tolist(), bound.tolist()))
    write_table(args.out, ["step", "lr", "bound"], rows)
    final = bound[-1] if at[-1] == lr.shape[0] else math.nan
    print(f"{label}: T = {lr.shape[0]}, {at.shape[0]} points, final bound = {_fmt(final)}; wrote {args.out}")
    if args.plot:
        from . import plot

        _save_plot(lambda: plot.curve_figure(at, lr, bound, title=f"{label}, T = {lr.shape[0]}"), args.plot)
    return 0


# ---------------------------------------------------------------------------
# bench


def cmd_bench(args: argparse.Namespace) -> int:
    import cdfast

    backends = _backends_for("all")
    name, params = parse_schedule(args.schedule)
    columns = ["T"] + [f"{b}_ms" for b in backends] + ["rel_diff"]
    rows = []
    for T in args.steps:
        shape = S.make(name, T, **params)
        results = {be: _time_terms(shape, be, args.repeat) for be in backends}
        a, b = results[backends[0]][0]
        diff = max(max(abs(r[0][0] - a) / a, abs(r[0][1] - b) / b) for r in results.values())
        rows.append([T] + [1e3 * results[be][1] for be in backends] + [diff])
    _print_table(columns, rows, title=f"bound_terms on {schedule_label(name, params)}: best of {args.repeat} "
                                      f"(backends: {', '.join(backends)})")
    if len(backends) < 2:
        print("only one backend is available, so there is nothing to compare against")
    worst = max(r[-1] for r in rows)
    print(f"largest relative difference between backends: {worst:.3g}")
    del cdfast
    return 0


# ---------------------------------------------------------------------------
# exam and fit (modules landing separately; imported lazily)


def _not_available(what: str, module: str) -> CliError:
    return CliError(f"{what} is not available in this version (cdfast.{module} is missing)")


def _lr_file_family(path: str) -> Callable[[int], np.ndarray]:
    """A shape from a file as a family: ``s_t(T) = s(t / T)``, linear interpolation on x_i = i / n."""
    lr = read_lr_file(path)
    V.check_positive_last(lr, "cdfast exam")
    shape = lr / lr.max()
    x = np.arange(shape.shape[0]) / shape.shape[0]
    return lambda T: np.interp(np.arange(T) / T, x, shape)


def cmd_exam(args: argparse.Namespace) -> int:
    try:
        from . import asymptotics  # noqa: F401
    except ImportError:
        raise _not_available("the qualifying exam", "asymptotics") from None
    _check_out(args.plot, (".png",), "--plot")
    grid = _exam_grid(args.max_steps)
    if (args.name is None) == (args.lr_file is None):
        raise CliError("give either a schedule NAME (e.g. `cdfast exam cosine`) or --lr-file FILE")
    if args.lr_file:
        if args.warmup:
            raise CliError("--warmup applies to a named schedule, not to --lr-file")
        label = os.path.basename(args.lr_file)
        from .asymptotics import qualifying_exam

        result = qualifying_exam(_lr_file_family(args.lr_file), grid, kind="family", continuous=False)
    else:
        name, params = parse_schedule(args.name)
        label = schedule_label(name, params) + (f" (warmup {args.warmup})" if args.warmup else "")
        result = _run_exam(name, params, args.warmup, grid, not args.no_integral)
    print(f"qualifying exam (Condition 2.5) for {label}: {'QUALIFIED' if result.qualified else 'NOT QUALIFIED'}")
    print(result.reason)
    _print_table(["T", "sqrtT_bound", "q1_sq", "q2_sq"],
                 [[int(T), v, q1, q2] for T, v, q1, q2 in zip(result.T, result.values, result.q1_sq, result.q2_sq)])
    print("sqrtT_bound = sqrt(T) * bound(eta_peak = 1/sqrt(T), D = G = 1) = q1_sq + q2_sq")
    if result.continuous_q2_sq is not None:
        print(f"continuous limit: q1^2 = {_fmt(result.continuous_q1_sq)}, q2^2 = {_fmt(result.continuous_q2_sq)}")
    if args.plot:
        from . import plot

        _save_plot(lambda: plot.exam_figure(result.T, result.values, qualified=result.qualified, title=label),
                   args.plot)
    return 0


def _fit_inputs(args: argparse.Namespace) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """(label, lr, steps, loss) from --wandb or --loss-file with --lr-file / --schedule."""
    if (args.loss_file is None) == (args.wandb is None):
        raise CliError("give the logged curve as --loss-file FILE.csv (with --lr-file or --schedule) or --wandb FILE.json")
    if args.wandb:
        if args.lr_file or args.schedule:
            raise CliError("--wandb carries its own schedule; drop --lr-file/--schedule")
        from . import io as cio

        if not os.path.isfile(args.wandb):
            raise CliError(f"W&B export {args.wandb!r} does not exist")
        try:
            run = cio.read_wandb_json(args.wandb)
        except (KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CliError(f"{args.wandb!r} is not a W&B run export ({type(exc).__name__}: {exc})") from None
        steps, loss = run.curve()
        if steps.shape[0] == 0:
            raise CliError(f"{args.wandb!r} has no finite validation losses to fit")
        return run.name or os.path.basename(args.wandb), run.lr(), steps, loss
    steps, loss = read_loss_file(args.loss_file)
    if args.schedule and args.peak_lr is None:
        raise CliError("--schedule needs --peak-lr for a fit (the fitted constants depend on the LR scale)")
    label, lr, is_shape = _schedule_from_args(args)
    if is_shape:
        lr = args.peak_lr * lr
    if steps[-1] > lr.shape[0]:
        raise CliError(f"the loss file logs step {steps[-1]} but the schedule has only {lr.shape[0]} steps")
    return label, lr, steps, loss


def _prediction_lr(args: argparse.Namespace, lr: np.ndarray) -> tuple[str, np.ndarray] | None:
    if args.predict_lr_file:
        p = read_lr_file(args.predict_lr_file)
        return os.path.basename(args.predict_lr_file), p
    if not args.predict:
        return None
    name, params = parse_schedule(args.predict)
    T = args.predict_steps or lr.shape[0]
    peak = args.predict_peak_lr or float(lr.max())
    warm = {"warmup": args.predict_warmup} if args.predict_warmup else {}
    return f"{schedule_label(name, params)} (T = {T}, peak {peak:g})", peak * S.make(name, T, **params, **warm)


def cmd_fit(args: argparse.Namespace) -> int:
    try:
        from .fit import fit_loss_curve
    except ImportError:
        raise _not_available("fitting", "fit") from None
    _check_out(args.out, (".csv", ".json"), "--out")
    _check_out(args.plot, (".png",), "--plot")
    label, lr, steps, loss = _fit_inputs(args)
    V.check_positive_last(lr, "cdfast fit")
    window = steps <= args.fit_frac * lr.shape[0]
    mask = window & (steps > args.burn_in)  # what fit_loss_curve(burn_in=...) fits
    if mask.sum() < 4:
        raise CliError(f"only {int(mask.sum())} logged points fall in the fitting window "
                       f"(steps {args.burn_in}..{args.fit_frac:g} T); widen --fit-frac or lower --burn-in")
    result = fit_loss_curve(lr, steps, loss, fit_steps=window, burn_in=args.burn_in, robust=args.robust)
    final = float(result.predict(lr, at=[lr.shape[0]])[0])
    print(f"fit of {label}: {int(mask.sum())} of {steps.shape[0]} logged points "
          f"(steps {args.burn_in}..{args.fit_frac:g} T), T = {lr.shape[0]}")
    print(f"  L_inf = {result.L_inf:.6g}   D~ = {result.D:.6g}   G~ = {result.G:.6g}")
    from .fit import r_squared

    later = steps > args.fit_frac * lr.shape[0]
    r2_later = r_squared(loss[later], result.prediction[later]) if later.sum() >= 2 else math.nan
    print(f"  R^2 (fitted points) = {result.r2:.5f}   R^2 (steps after {args.fit_frac:g} T, predicted) = "
          f"{_fmt(r2_later)}")
    print(f"  predicted loss at step {lr.shape[0]} = {final:.6g}"
          + (f" (logged {loss[-1]:.6g})" if steps[-1] == lr.shape[0] else ""))
    other = _prediction_lr(args, lr)
    pred_steps = predicted = None
    if other is not None:
        olabel, olr = other
        V.check_positive_last(olr, "cdfast fit --predict")
        pred_steps = _curve_points(olr.shape[0], 2000)
        predicted = result.predict(olr, at=pred_steps)
        print(f"  predicted final loss under {olabel} = {predicted[-1]:.6g}")
    if args.out:
        write_table(args.out, ["step", "loss", "fitted", "used_for_fit"],
                    list(zip(steps.tolist(), loss.tolist(), result.prediction.tolist(),
                             [int(m) for m in result.fitted])))
        print(f"wrote {args.out}")
    if args.plot:
        from . import plot

        _save_plot(lambda: plot.fit_figure(steps, loss, result.prediction, lr, fit_mask=result.fitted,
                                           pred_steps=pred_steps, predicted=predicted,
                                           pred_lr=None if other is None else other[1], title=label), args.plot)
    return 0


# ---------------------------------------------------------------------------
# parser and entry point


def _add_constants(p: argparse.ArgumentParser) -> None:
    p.add_argument("--D", type=_nonneg, default=1.0, help="distance ||w0 - w*|| (default 1)")
    p.add_argument("--G", type=_nonneg, default=1.0, help="gradient bound G (default 1)")
    p.add_argument("--L-star", dest="L_star", type=_number, default=0.0, help="optimal loss L* (default 0)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cdfast", description="Convex loss bounds for learning-rate schedules "
                "(Bu, Xu, Mao, ICLR 2026; Defazio et al. 2023 Cor. 12).")
    from . import __version__

    p.add_argument("--version", action="version", version=f"cdfast {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("report", help="bounds, optimal peak LR and exam for the standard schedules",
                       description="Last-iterate bound (eq. 2.4) at the optimal peak LR, average-iterate bound "
                       "(eq. 2.3), exam verdict and per-backend timing for each schedule.")
    r.add_argument("--schedules", nargs="+", default=list(DEFAULT_SCHEDULES), metavar="NAME[:k=v,...]")
    r.add_argument("--steps", "-T", type=_steps, default=10**6, metavar="T", help="horizon (default 1e6)")
    r.add_argument("--warmup", type=_nonneg_int, default=0, metavar="W")
    r.add_argument("--peak-lr", type=_positive, default=None, metavar="X",
                   help="evaluate at this peak LR instead of the optimal one")
    _add_constants(r)
    r.add_argument("--backend", default="all", choices=("all", "auto", "numba", "c"),
                   help="backends to time and compare (default: all available)")
    r.add_argument("--repeat", type=_steps, default=3, help="timing repetitions (best is shown)")
    r.add_argument("--no-exam", action="store_true", help="skip the qualifying exam column")
    r.add_argument("--out", metavar="FILE", help="also write the table to FILE.csv or FILE.json")
    r.add_argument("--plot", metavar="FILE.png", help="plot bound against peak LR per schedule")
    r.set_defaults(func=cmd_report)

    c = sub.add_parser("curve", help="the bound curve of eq. (2.4) for one schedule, to CSV (and PNG)")
    _add_schedule_options(c)
    _add_constants(c)
    c.add_argument("--points", type=_nonneg_int, default=2000,
                   help="evaluate at this many evenly spaced steps including T (0 = every step; default 2000)")
    c.add_argument("--method", default="auto", choices=("auto", "exact", "fast"))
    c.add_argument("--backend", default=None, choices=("auto", "numba", "c"))
    c.add_argument("--out", required=True, metavar="FILE.csv", help="columns step, lr, bound")
    c.add_argument("--plot", metavar="FILE.png", help="LR and bound against step")
    c.set_defaults(func=cmd_curve)

    e = sub.add_parser("exam", help="the qualifying exam (Condition 2.5) for a schedule family")
    e.add_argument("name", nargs="?", metavar="NAME[:k=v,...]", help="built-in schedule family")
    e.add_argument("--lr-file", metavar="FILE", help="a schedule shape, stretched to every horizon T")
    e.add_argument("--warmup", type=_nonneg_int, default=0, metavar="W", help="fixed warmup steps")
    e.add_argument("--max-steps", type=_steps, default=10**7, metavar="T",
                   help="largest horizon examined (default 1e7; horizons 1e3.. two per decade)")
    e.add_argument("--no-integral", action="store_true",
                   help="skip the continuous integral check (faster; discrete sums only)")
    e.add_argument("--plot", metavar="FILE.png", help="sqrt(T) * bound against T")
    e.set_defaults(func=cmd_exam)

    f = sub.add_parser("fit", help="fit eq. (2.4) to a logged loss curve and predict other schedules",
                       description="Generalization 1: loss(tau) = L_inf + D~^2 a_tau + G~^2 b_tau, fitted on "
                       "the logged steps up to --fit-frac of the run, scored on the rest.")
    f.add_argument("--loss-file", metavar="FILE.csv", help="CSV with columns step,loss (1-based steps)")
    f.add_argument("--wandb", metavar="FILE.json", help="a Weights & Biases run export instead")
    _add_schedule_options(f)
    f.add_argument("--fit-frac", type=_positive, default=0.5, metavar="F",
                   help="fit the steps <= F*T, predict the rest (default 0.5, as in the paper)")
    f.add_argument("--burn-in", type=_nonneg_int, default=0, metavar="S", help="leave steps 1..S out of the fit (and out of held-out scores)")
    f.add_argument("--robust", action="store_true", help="Huber loss on log residuals")
    f.add_argument("--predict", metavar="NAME[:k=v,...]", help="predict the loss under this schedule")
    f.add_argument("--predict-steps", type=_steps, metavar="T", help="its horizon (default: the run's)")
    f.add_argument("--predict-peak-lr", type=_positive, metavar="X", help="its peak LR (default: the run's)")
    f.add_argument("--predict-warmup", type=_nonneg_int, default=0, metavar="W")
    f.add_argument("--predict-lr-file", metavar="FILE", help="predict under the LRs in FILE instead")
    f.add_argument("--out", metavar="FILE.csv", help="step, loss, fitted, used_for_fit")
    f.add_argument("--plot", metavar="FILE.png", help="data vs fit vs prediction, residuals, LR")
    f.set_defaults(func=cmd_fit)

    b = sub.add_parser("bench", help="speed and agreement of the backends at a few horizons")
    b.add_argument("--steps", "-T", type=_step_list, default=[10**4, 10**5, 10**6], metavar="T1,T2,...")
    b.add_argument("--schedule", default="cosine", metavar="NAME[:k=v,...]")
    b.add_argument("--repeat", type=_steps, default=5)
    b.set_defaults(func=cmd_bench)
    return p


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return EXIT_USAGE
        return args.func(args)
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except (CliError, ValueError, TypeError, OSError, ImportError, ArithmeticError) as exc:
        print(f"cdfast: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cdfast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
