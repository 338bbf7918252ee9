"""The ``cdfast`` command line: report, fit, predict, compare, plan, refine, curve, exam, bench, sweep.

``main(argv) -> int`` parses, runs one subcommand, and returns the exit status.  The
command line only parses arguments, calls the library and prints (docs/cli.md):

* every input error (a bad number, an unknown schedule, a missing file or a folder given
  as a file, a malformed log, NaN, a zero final LR, a horizon too large for memory) ends
  with one line ``cdfast: error: ...`` on stderr and status 2, never a traceback;
* an output that names an input (also through links) is refused before any work, and
  outputs are written atomically, so the user's files are never modified;
* a closed stdout (``| head``) is silenced and the command still writes its files;
  SIGTERM removes the temporary files and exits with status 143;
* ``cdfast exam`` exits with status 1 when the schedule is not qualified.

Heavy modules (the exam, fitting, log readers, matplotlib) are imported inside their
subcommands only.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import _files
from . import _validate as V
from . import schedules as S
from ._progress import Progress
from .io.table import read_loss_file, read_lr_file

EXIT_USAGE = 2
EXIT_NOT_QUALIFIED = 1  # cdfast exam: the schedule failed Condition 2.5 (for scripts)
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
# files (LR and loss files are parsed by cdfast.io.table; main reports its ValueError in one line)


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

        plot.use_agg()


def _read_lr(path: str) -> np.ndarray:
    """Learning rates from an LR file (cdfast.io.read_lr_file), with float16 files refused
    where float16 has lost them: it keeps 3 significant digits, rounds values below
    6.1e-5 coarsely and flushes those below 6e-8 to 0."""
    lr = read_lr_file(path)
    if path.lower().endswith(".npy"):
        dtype = np.load(path, mmap_mode="r", allow_pickle=False).dtype
        if dtype.kind == "f" and dtype.itemsize < 4:
            started = np.cumsum(lr > 0) > 0  # zeros before the first positive LR are a warmup from 0
            tiny = np.flatnonzero(started & (lr < float(np.finfo(dtype).tiny)))
            if tiny.size:
                i = int(tiny[-1])
                raise CliError(f"LR file {path!r} stores {dtype.name}, which keeps 3 significant digits, loses "
                               f"precision below {float(np.finfo(dtype).tiny):.2g} and flushes values below 6e-8 to 0 "
                               f"(lr[{i}] is {lr[i]:g} there); save the learning rates as float32 or float64")
    return lr


def _check_horizon(T: int, option: str, arrays: float = 3) -> None:
    """Refuse a horizon whose arrays cannot fit in memory, before allocating them."""
    from ._memory import check_fits

    check_fits(T, what=f"{option} {T}", arrays=arrays, fix=f"choose a smaller {option}")


def _save_plot(fig_fn: Callable[[], Any], path: str) -> None:
    from . import plot

    plot.save_png(fig_fn(), path)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------
# shared schedule options


def _add_schedule_options(p: argparse.ArgumentParser, *, required_steps: bool = False,
                          peak_help: str = "peak learning rate for --schedule (default: the bound-optimal one)",
                          steps_help: str = "number of steps for --schedule",
                          warmup_default: int | None = 0, warmup_help: str = "linear warmup steps") -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--schedule", metavar="NAME[:k=v,...]",
                     help=f"built-in schedule ({', '.join(S.FAMILIES)}), e.g. wsd:decay_frac=0.2")
    src.add_argument("--lr-file", metavar="FILE", help="learning rates: .npy, .csv or one value per line")
    p.add_argument("--steps", "-T", type=_steps, metavar="T", help=steps_help)
    p.add_argument("--peak-lr", type=_positive, default=None, metavar="X", help=peak_help)
    p.add_argument("--warmup", type=_nonneg_int, default=warmup_default, metavar="W", help=warmup_help)


def _schedule_from_args(args: argparse.Namespace) -> tuple[str, np.ndarray, bool]:
    """(label, lr or unit-peak shape, is_shape) from --schedule/--lr-file."""
    if args.lr_file:
        if args.steps is not None or args.warmup or args.peak_lr is not None:
            raise CliError("--steps, --warmup and --peak-lr apply to --schedule, not to --lr-file")
        return os.path.basename(args.lr_file), _read_lr(args.lr_file), False
    if not args.schedule:
        raise CliError("give a schedule: --schedule NAME --steps T, or --lr-file FILE")
    if args.steps is None:
        raise CliError("--schedule needs --steps T (the horizon, e.g. --steps 1e5)")
    _check_horizon(args.steps, "--steps")
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


# ---------------------------------------------------------------------------
# report: the packaged run, fitted and re-planned

REPORT_SCHEDULES = ("cosine", "linear", "wsd:decay_frac=0.2", "constant")
REPORT_HORIZONS = (1, 2, 4)  # multiples of the run's horizon
PEAK_RANGE = (1 / 16, 16.0)  # the best peak LR is searched within these factors of the run's
PEAK_XTOL = 0.02  # ... to 2% (Brent's method in log LR)
REPORT_BOOT = 100  # bootstrap refits per interval: ~0.2 s each on the sample run (the library's default is 200)


def sample_run_path() -> str:
    """The run shipped with cdfast (cdfast/data/README.md)."""
    from .data import SAMPLE_RUN

    return str(SAMPLE_RUN)


def _final_loss(fit: Any, lr: np.ndarray) -> float:
    return float(fit.predict(lr, at=[lr.shape[0]])[-1])


def _peak_scan(fit: Any, shape: np.ndarray, peak: float) -> dict[str, Any]:
    """The peak LR that minimises the model's predicted final loss for a unit-peak
    ``shape``: a bounded Brent search in log LR over ``peak * PEAK_RANGE``.

    Returns the minimum (``eta``, ``loss``), every evaluated ``(etas, losses)`` sorted by
    LR, and ``edge``: ``"<"`` or ``">"`` when the minimum lies at an end of the range (the
    optimum is outside it), else ``""``.
    """
    from scipy.optimize import minimize_scalar

    seen: dict[float, float] = {}

    def f(u: float) -> float:
        v = _final_loss(fit, math.exp(u) * shape)
        seen[math.exp(u)] = v
        return v if math.isfinite(v) else math.inf

    lo, hi = math.log(peak * PEAK_RANGE[0]), math.log(peak * PEAK_RANGE[1])
    res = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": PEAK_XTOL})
    edge = "<" if res.x - lo < 3 * PEAK_XTOL else ">" if hi - res.x < 3 * PEAK_XTOL else ""
    etas = np.array(sorted(seen))
    return {"etas": etas, "losses": np.array([seen[e] for e in etas]), "eta": float(math.exp(res.x)),
            "loss": float(res.fun), "edge": edge}


def _report_run(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the run (default: the packaged one), check the fit on its own second half,
    and print its predicted final loss under other schedules and horizons, with the
    optimal peak LR of each."""
    path = args.log or sample_run_path()
    for option in ("out", "plot"):
        target = getattr(args, option)
        if target is not None and _files.clashes(target, [path]):
            raise CliError(f"--{option} {target!r} is the input {path!r}; choose another output file")
    schedules = [parse_schedule(s) for s in args.run_schedules]
    runs = _read_runs(argparse.Namespace(loss=args.loss), [path])
    run = runs[0]
    horizons = args.run_steps or [k * run.T for k in REPORT_HORIZONS]
    for T in horizons:
        _check_horizon(T, "--run-steps")
    peak = float(run.lr.max())
    warmup = _warmup_of(run.lr)
    level = 0.9

    first_half = run.steps <= run.T // 2
    half = _fit(runs, model=args.model, masks=[first_half], burn_in=None) if first_half.sum() >= 8 else None
    fit = _fit(runs, model=args.model, masks=None, burn_in=None)
    last_step, last_loss = int(run.steps[-1]), float(run.loss[-1])
    where = "the packaged sample run (cdfast/data/README.md)" if args.log is None else repr(path)
    print(f"cdfast report: {where}")
    print(f"  {run.name}")
    print(f"  {run.describe}; peak LR {peak:g}, warmup {warmup} steps")
    print(f"model {fit.model.name}, fitted on every logged loss: {_params_line(fit)}  (R^2 = {fit.r2:.4f})")
    if half is None:
        print(f"check: skipped ({int(first_half.sum())} logged losses in the first half of the run, too few to fit "
              "and predict the rest)")
    else:
        check = float(half.predict(run.lr, at=[last_step])[-1])
        band = _interval(half, run.lr, np.array([last_step]), level, args.boot)
        inside = "" if band is None else (", inside its interval" if band[0][0] <= last_loss <= band[1][0]
                                          else ", outside its interval")
        print(f"check: fitted on steps <= {run.T // 2} only, it predicts the loss at step {last_step} as "
              f"{_with_interval(check, band)} (logged {last_loss:.4f}{inside}; error "
              f"{100 * (check - last_loss) / last_loss:+.2f}%; held-out R^2 = {_fmt(half.r2_holdout)})")
    for w in getattr(fit, "warnings", ()) or ():
        print(f"  warning: {w}")

    rows, preds, scans = [], [], []
    own = float(fit.predict(run.lr, at=[last_step])[-1])
    print(f"the run as logged: the model gives {own:.4f} at step {last_step} (logged {last_loss:.4f})")
    with Progress("report", total=len(schedules) * len(horizons)) as progress:
        for name, params in schedules:
            label = schedule_label(name, params)
            for T in horizons:
                shape = S.make(name, T, **params, **({"warmup": warmup} if 0 < warmup < T else {}))
                at = np.array([T])
                final = _final_loss(fit, peak * shape)
                band = _interval(fit, peak * shape, at, level, args.boot)
                scan = _peak_scan(fit, shape, peak)
                rows.append([label, T, _with_interval(final, band), f"{scan['edge']}{scan['eta']:.2g}",
                             "" if scan["edge"] else _fmt(scan["loss"])])
                if T == run.T and args.plot:  # a smooth curve of final loss against peak LR for the figure
                    etas = peak * np.geomspace(PEAK_RANGE[0], PEAK_RANGE[1], 17)
                    scans.append((label, {**scan, "etas": etas,
                                          "losses": np.array([_final_loss(fit, e * shape) for e in etas])}))
                    steps = _curve_points(T, 400)
                    preds.append({"label": label, "lr": peak * shape, "steps": steps,
                                  "loss": fit.predict(peak * shape, at=steps)})
                progress.advance()
    has_band = getattr(fit, "interval", None) is not None and args.boot != 0
    print(f"predicted final loss{f' [{100 * level:g}% interval]' if has_band else ''} under other schedules and "
          f"horizons (warmup {warmup} steps kept):")
    _print_table(["schedule", "T", f"at peak LR {peak:g}", "best peak LR", "at best peak LR"], rows)
    print("best peak LR: the minimum of the model's predicted final loss over peak LRs; '<' or '>': beyond the "
          f"searched range {peak * PEAK_RANGE[0]:.3g}..{peak * PEAK_RANGE[1]:.3g}.  A single run pins the loss scale "
          "but not how it moves with the peak LR: check the optimum with a small sweep (cdfast.fit_peak_lr_law).")
    if has_band:
        print(f"interval: {100 * level:g}% bootstrap interval of the model's prediction ({args.boot} refits; --boot N)")
    elif args.boot != 0:
        print(f"(model {fit.model.name} gives no prediction intervals in this version)")
    print()
    return {"run": run, "fit": fit, "preds": preds, "scans": scans, "peak": peak, "level": level}


def cmd_report(args: argparse.Namespace) -> int:
    _check_out(args.out, (".csv", ".json"), "--out")
    _check_out(args.plot, (".png",), "--plot")
    D, G, L = args.D, args.G, args.L_star
    if args.peak_lr is None and (D == 0 or G == 0):
        raise CliError("the optimal peak LR needs D > 0 and G > 0; give --peak-lr instead")
    specs = [parse_schedule(s) for s in args.schedules]
    _check_horizon(args.steps, "--steps")
    shown = _report_run(args) if not args.no_run else None
    backends = _backends_for(args.backend)
    cold_numba = False
    if args.backend == "all" and len(backends) > 1 and "numba" in backends:
        from . import _warmup

        if not _warmup.numba_is_warm():  # first use: no compile wait; warm Numba's cache for next time
            backends.remove("numba")
            cold_numba = _warmup.start_background() or None
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

    shown_cols = columns[:6] + (["exam"] if exam_on else [])  # timings: one line below, details in --out
    _print_table(shown_cols, [r[:len(shown_cols)] for r in rows], title=(
        f"bounds of the standard schedules (eq. 2.4): T = {args.steps}, D = {D:g}, G = {G:g}, L* = {L:g}; "
        + ("peak LR = bound-optimal (D/G) sqrt(a/b)" if args.peak_lr is None else f"peak LR = {args.peak_lr:g}")))
    print("last_iterate: eq. (2.4) at T; sqrtT_gap = sqrt(T) (bound - L*) (Table 1: 2 for linear); "
          "average_iterate: eq. (2.3)"
          + ("; exam: Condition 2.5 on horizons 1e3..max(T, 1e5) (`cdfast exam NAME` for the full exam)"
             if exam_on else ""))
    worst = max((r[-1] for r in rows), default=0.0)
    speed = ", ".join(f"{be} {max(r[8 + k] for r in rows):.3g} ms" for k, be in enumerate(backends))
    print(f"backends: {' and '.join(backends)} agree to {worst:.2g} (largest relative difference of (a, b)); "
          f"one bound pass at T = {args.steps}: {speed} (slowest schedule, best of {args.repeat}; `cdfast bench` "
          "for more)")
    if cold_numba is not False:
        print("numba: not timed: its kernels are not compiled yet (first use; the C kernels give the same "
              "results bit for bit) - " + ("they are compiling in the background, run `cdfast report` again to "
              "time them" if cold_numba else "`python -m cdfast._warmup` compiles them"))
    if args.out:
        write_table(args.out, columns, rows)
        print(f"wrote {args.out}")
    if args.plot:
        from . import plot

        if shown is None:
            _save_plot(lambda: plot.peak_lr_figure(curves, D=D or 1.0, G=G or 1.0, L_star=L,
                                                    title=f"bound vs peak LR, T = {args.steps}"), args.plot)
        else:
            fit, run = shown["fit"], shown["run"]
            _save_plot(lambda: plot.report_figure(
                fit.steps, fit.loss, fit.prediction, run.lr, shown["preds"], shown["scans"], curves,
                fit_mask=fit.fitted, burn_mask=getattr(fit, "burned", None), peak=shown["peak"],
                level=shown["level"], bound_T=args.steps,
                title=f"{run.name}: model {fit.model.name}"), args.plot)
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
    lr = _read_lr(path)
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
    _check_horizon(args.max_steps, "--max-steps")
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

        limit = None
        if result.continuous_q1_sq is not None and result.continuous_q2_sq is not None:
            limit = float(result.continuous_q1_sq) + float(result.continuous_q2_sq)
        _save_plot(lambda: plot.exam_figure(result.T, result.values, qualified=result.qualified, limit=limit,
                                            title=label), args.plot)
    return 0 if result.qualified else EXIT_NOT_QUALIFIED


# ---------------------------------------------------------------------------
# training logs: fit, predict, compare


@dataclass(frozen=True)
class _Run:
    """One logged run as the fit needs it."""

    name: str
    lr: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    grad_sq: np.ndarray | None
    describe: str
    first_logged: int
    branch_step: int = 0

    @property
    def T(self) -> int:
        return int(self.lr.shape[0])


def _burn_in(text: str) -> int | float:
    """``--burn-in``: a number of steps (>= 1, whole) or a fraction of T (in [0, 1))."""
    v = _number(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; give steps (e.g. 2000) or a fraction of T (e.g. 0.05)")
    if v < 1:
        return float(v)
    if not v.is_integer():
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of steps or a fraction of T below 1")
    return int(v)


def _fraction(text: str) -> float:
    v = _number(text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must lie in (0, 1]: the fraction of the run's horizon T that is "
                                         "fitted (1 = every logged point)")
    return v


def _level(text: str) -> float:
    v = _number(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must lie in (0, 1), e.g. 0.9 for a 90% interval")
    return v


def _lr_override(args: argparse.Namespace, T_default: int | None) -> tuple[str, np.ndarray] | None:
    """The LRs of --lr-file, or of --schedule (with --steps, default the log's T, and --peak-lr)."""
    if getattr(args, "lr_file", None):
        if args.steps is not None or args.warmup or args.peak_lr is not None:
            raise CliError("--steps, --warmup and --peak-lr apply to --schedule, not to --lr-file")
        return os.path.basename(args.lr_file), _read_lr(args.lr_file)
    if not getattr(args, "schedule", None):
        return None
    if args.peak_lr is None:
        raise CliError("--schedule needs --peak-lr for a fit: the fitted constants depend on the LR scale")
    T = args.steps or T_default
    if T is None:
        raise CliError("--schedule needs --steps T (the run's horizon)")
    _check_horizon(T, "--steps")
    name, params = parse_schedule(args.schedule)
    shape = S.make(name, T, **params, **({"warmup": args.warmup} if args.warmup else {}))
    return schedule_label(name, params), args.peak_lr * shape


def _run_from_log(log: Any, path: str, grad: bool) -> _Run:
    lr, steps, loss = log.curve()
    branch = int((log.meta.get("lr") or {}).get("branch_step", 0) or 0) if isinstance(log.meta.get("lr"), dict) else 0
    source = f"learning rates: {log.lr_source}" if log.lr_source else ""
    describe = (f"{log.format}, T = {log.T}, {steps.shape[0]} losses ({log.loss_name}) at steps "
                f"{steps[0]}..{steps[-1]}" + (f"; {source}" if source else ""))
    return _Run(log.name or os.path.basename(os.path.normpath(path)), lr, steps, loss,
                log.grad_sq() if grad else None, describe, int(steps[0]), branch)


def _read_runs(args: argparse.Namespace, paths: Sequence[str], *, grad: bool = False) -> list[_Run]:
    """The runs of PATH arguments (any log cdfast.io.read_log reads), with --lr-file or
    --schedule replacing the logged learning rates of a single log."""
    from .io import read_log

    runs = []
    override_given = bool(getattr(args, "lr_file", None) or getattr(args, "schedule", None))
    if override_given and len(paths) > 1:
        raise CliError("--lr-file/--schedule give one run's learning rates; with several logs, each log must "
                       "carry its own (or fit them one at a time)")
    for path in paths:
        log = read_log(path, loss=getattr(args, "loss", None))
        if override_given:
            label, lr = _lr_override(args, log.T)
            log = read_log(path, loss=getattr(args, "loss", None), lr=lr)
        if log.lr is None:
            raise CliError(f"{path!r}: the log records no learning rate and has no config that gives it; "
                           "add --lr-file FILE or --schedule NAME --peak-lr X (--steps T)")
        runs.append(_run_from_log(log, path, grad))
    return runs


def _runs_from_fit_args(args: argparse.Namespace) -> list[_Run]:
    paths = list(args.paths or [])
    if args.wandb:
        paths.append(args.wandb)  # --wandb FILE is PATH, kept for existing scripts
    if args.loss_file:
        if paths:
            raise CliError("give logs as PATH arguments or the older --loss-file FILE (with --lr-file or --schedule), "
                           "not both")
        if args.grad_norm:
            raise CliError("--grad-norm needs a log with a grad_norm column; --loss-file has only step and loss")
        steps, loss = read_loss_file(args.loss_file)
        override = _lr_override(args, int(steps[-1]))
        if override is None:
            raise CliError("--loss-file needs the run's learning rates: --lr-file FILE or --schedule NAME --peak-lr X "
                           "--steps T")
        label, lr = override
        if steps[-1] > lr.shape[0]:
            raise CliError(f"the loss file logs step {steps[-1]} but the schedule has only {lr.shape[0]} steps")
        return [_Run(label, lr, steps, loss, None, f"{os.path.basename(args.loss_file)}: {steps.shape[0]} losses at "
                     f"steps {steps[0]}..{steps[-1]}, T = {lr.shape[0]}", int(steps[0]))]
    if not paths:
        raise CliError("give a training log: cdfast fit PATH [PATH ...] (W&B export, trainer_state.json, TensorBoard, "
                       "Lightning metrics.csv, CSV/Parquet), or --loss-file FILE with --lr-file/--schedule")
    return _read_runs(args, paths, grad=args.grad_norm)


def _fit_window(runs: Sequence[_Run], frac: float, option: str = "--fit-frac") -> list[np.ndarray]:
    """The fitted points of every run: logged steps <= frac * T; refuse a window that
    holds no point, saying why (e.g. a run branched from another's checkpoint)."""
    masks = []
    for r in runs:
        m = r.steps <= frac * r.T
        if m.sum() < 3:
            why = (f"it logs losses from step {r.first_logged} on" + (f" (it was branched at step {r.branch_step} "
                   "from another run's checkpoint)" if r.branch_step else ""))
            raise CliError(f"run {r.name!r}: only {int(m.sum())} logged losses fall at steps <= {frac:g} T = "
                           f"{frac * r.T:g}, because {why}; raise {option} (1 fits every logged point) or fit it "
                           "together with its parent run")
        masks.append(m)
    return masks


def _fit(runs: Sequence[_Run], *, model: str | None, masks: Sequence[np.ndarray] | None,
         burn_in: int | float | None, robust: bool = False) -> Any:
    """cdfast.fit_loss_curves on the runs (one run: the same as fit_loss_curve)."""
    import cdfast

    kwargs: dict[str, Any] = {"model": model}
    if burn_in is not None:
        kwargs["burn_in"] = burn_in
    if robust:
        kwargs["robust"] = True
    grads = [r.grad_sq for r in runs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CurveFit.warnings holds them; printed below the fit
        return cdfast.fit_loss_curves([r.lr for r in runs], [r.steps for r in runs], [r.loss for r in runs],
                                      fit_steps=None if masks is None else list(masks),
                                      grad_sq=None if all(g is None for g in grads) else grads, **kwargs)


def _params_line(fit: Any) -> str:
    return "   ".join(f"{k} = {v:.6g}" for k, v in fit.params.items())


def _interval(fit: Any, lr: np.ndarray, at: np.ndarray, level: float,
              n_boot: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """CurveFit.interval (a bootstrap of ``n_boot`` refits; None: the library's default)
    when the fitted model provides one, else None."""
    method = getattr(fit, "interval", None)
    if method is None or n_boot == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lo, hi = method(lr, at=at, level=level, **({} if n_boot is None else {"n_boot": n_boot}))
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def _with_interval(value: float, band: tuple[np.ndarray, np.ndarray] | None, i: int = -1, digits: int = 4) -> str:
    fmt = (lambda v: f"{v:.{digits}g}") if digits != 4 else _fmt
    if band is None:
        return fmt(value)
    return f"{fmt(value)} [{fmt(float(band[0][i]))}, {fmt(float(band[1][i]))}]"


def _warmup_of(lr: np.ndarray) -> int:
    """Steps before a logged schedule first reaches its peak (its warmup), 0 if none."""
    top = float(lr.max())
    first = int(np.argmax(lr >= top))
    return first if first > 0 and lr[0] < top else 0


def _prediction_lr(args: argparse.Namespace, lr: np.ndarray) -> tuple[str, np.ndarray] | None:
    if args.predict_lr_file:
        return os.path.basename(args.predict_lr_file), _read_lr(args.predict_lr_file)
    if not args.predict:
        return None
    name, params = parse_schedule(args.predict)
    T = args.predict_steps or lr.shape[0]
    _check_horizon(T, "--predict-steps")
    peak = args.predict_peak_lr or float(lr.max())
    warm = {"warmup": args.predict_warmup} if args.predict_warmup else {}
    return f"{schedule_label(name, params)} (T = {T}, peak {peak:g})", peak * S.make(name, T, **params, **warm)


def _print_fit(fit: Any, runs: Sequence[_Run], frac: float) -> None:
    n_fit = int(fit.fitted.sum())
    burned = fit.burned if getattr(fit, "burned", None) is not None else np.zeros(fit.fitted.shape, bool)
    print(f"model {fit.model.name}: {_params_line(fit)}")
    window = "every logged step" if frac >= 1 else f"steps <= {frac:g} T"
    print(f"  fitted on {n_fit} of {fit.steps.shape[0]} logged losses ({window}"
          + (f"; {int(burned.sum())} in the burn-in left out" if burned.any() else "") + ")")
    held = "-" if not np.isfinite(fit.r2_holdout) else f"{fit.r2_holdout:.5f}"
    print(f"  R^2 (fitted points) = {fit.r2:.5f}   R^2 (held out, predicted) = {held}")
    for k, r in enumerate(runs):
        prefix = f"  {r.name}: " if len(runs) > 1 else "  "
        at_last = float(fit.prediction[fit.run == k][-1])
        text = f"{prefix}loss at the last logged step {r.steps[-1]}: model {at_last:.6g}, logged {r.loss[-1]:.6g}"
        if r.steps[-1] != r.T:
            final = float(fit.predict(r.lr, at=[r.T])[-1])
            text += (f"; at step T = {r.T}: model {final:.6g}" if np.isfinite(final) or r.lr[-1] != 0 else
                     f"; at step T = {r.T}: inf (the final LR is 0, where the convex bound is infinite)")
        print(text)
    for w in getattr(fit, "warnings", ()) or ():
        print(f"  warning: {w}")


def cmd_fit(args: argparse.Namespace) -> int:
    _check_out(args.out, (".csv", ".json"), "--out")
    _check_out(args.plot, (".png",), "--plot")
    runs = _runs_from_fit_args(args)
    masks = _fit_window(runs, args.fit_frac)
    other = _prediction_lr(args, runs[0].lr)
    if other is not None:
        V.check_positive_last(other[1], "cdfast fit --predict")
    fit = _fit(runs, model=args.model, masks=masks, burn_in=args.burn_in, robust=args.robust)
    if len(runs) == 1:
        print(f"fit of {runs[0].name} ({runs[0].describe})")
    else:
        print(f"joint fit of {len(runs)} runs (one set of parameters):")
        for r in runs:
            print(f"  {r.name} ({r.describe})")
    _print_fit(fit, runs, args.fit_frac)
    pred_steps = predicted = None
    if other is not None:
        olabel, olr = other
        pred_steps = _curve_points(olr.shape[0], 2000)
        predicted = fit.predict(olr, at=pred_steps)
        print(f"  predicted final loss under {olabel} = {predicted[-1]:.6g}")
    if args.out:
        names = [r.name for r in runs]
        burned = fit.burned if getattr(fit, "burned", None) is not None else np.zeros(fit.fitted.shape, bool)
        cols = (["run"] if len(runs) > 1 else []) + ["step", "loss", "fitted", "used_for_fit", "burn_in"]
        rows = [([names[int(k)]] if len(runs) > 1 else []) + [int(s), float(y), float(p), int(m), int(b)]
                for k, s, y, p, m, b in zip(fit.run, fit.steps, fit.loss, fit.prediction, fit.fitted, burned)]
        write_table(args.out, cols, rows)
        print(f"wrote {args.out}")
    if args.plot:
        from . import plot

        burned = fit.burned if getattr(fit, "burned", None) is not None else None
        _save_plot(lambda: plot.fit_figure(
            fit.steps, fit.loss, fit.prediction, [r.lr for r in runs] if len(runs) > 1 else runs[0].lr,
            fit_mask=fit.fitted, burn_mask=burned, cutoff=[args.fit_frac * r.T for r in runs] if args.fit_frac < 1
            else None, params=fit.params, r2=fit.r2, r2_holdout=fit.r2_holdout, model=fit.model.name,
            run=fit.run, run_names=[r.name for r in runs], pred_steps=pred_steps, predicted=predicted,
            pred_lr=None if other is None else other[1],
            title=runs[0].name if len(runs) == 1 else f"{len(runs)} runs, one set of parameters"), args.plot)
    return 0


def _predict_lr(args: argparse.Namespace, run: _Run) -> tuple[str, np.ndarray, int]:
    """(label, lr, warmup) of the schedule to predict: --schedule/--steps/--peak-lr/--warmup
    (defaults: the run's peak LR and warmup) or --lr-file."""
    if args.lr_file:
        if args.steps is not None or args.warmup is not None or args.peak_lr is not None:
            raise CliError("--steps, --warmup and --peak-lr apply to --schedule, not to --lr-file")
        return os.path.basename(args.lr_file), _read_lr(args.lr_file), 0
    if not args.schedule:
        raise CliError("give the schedule to predict: --schedule NAME[:k=v,...] --steps T, or --lr-file FILE")
    if args.steps is None:
        raise CliError("--schedule needs --steps T (the horizon to predict)")
    _check_horizon(args.steps, "--steps")
    name, params = parse_schedule(args.schedule)
    peak = args.peak_lr if args.peak_lr is not None else float(run.lr.max())
    warmup = _warmup_of(run.lr) if args.warmup is None else args.warmup
    if warmup >= args.steps:
        raise CliError(f"the warmup ({warmup} steps{'' if args.warmup is not None else ', from the logged run'}) "
                       f"does not fit in --steps {args.steps}; set --warmup")
    lr = peak * S.make(name, args.steps, **params, **({"warmup": warmup} if warmup else {}))
    label = f"{schedule_label(name, params)}, T = {args.steps}, peak LR {peak:g}" + (f", warmup {warmup}" if warmup else "")
    return label, lr, warmup


def cmd_predict(args: argparse.Namespace) -> int:
    _check_out(args.out, (".csv", ".json"), "--out")
    _check_out(args.plot, (".png",), "--plot")
    runs = _read_runs(argparse.Namespace(loss=args.loss), [args.log])
    run = runs[0]
    label, lr, _ = _predict_lr(args, run)
    V.check_positive_last(lr, "cdfast predict")
    masks = _fit_window(runs, args.fit_frac)
    fit = _fit(runs, model=args.model, masks=masks if args.fit_frac < 1 else None, burn_in=args.burn_in)
    print(f"fit of {run.name} ({run.describe})")
    _print_fit(fit, runs, args.fit_frac)
    at = _curve_points(lr.shape[0], args.points)
    predicted = fit.predict(lr, at=at)
    band = _interval(fit, lr, at, args.level)
    interval = f" ({100 * args.level:g}% interval)" if band is not None else ""
    print(f"prediction under {label}:")
    print(f"  final loss at step {lr.shape[0]} = {_with_interval(float(predicted[-1]), band, digits=6)}{interval}")
    if band is None:
        print(f"  (model {fit.model.name} gives no interval in this version)")
    show = np.unique(np.round(np.linspace(0, at.shape[0] - 1, min(at.shape[0], 11))).astype(int))
    cols = ["step", "lr", "loss"] + (["lo", "hi"] if band is not None else [])
    _print_table(cols, [[int(at[i]), float(lr[at[i] - 1]), float(predicted[i])]
                        + ([float(band[0][i]), float(band[1][i])] if band is not None else []) for i in show])
    if args.out:
        rows = [[int(s), float(lr[s - 1]), float(p)] + ([float(band[0][i]), float(band[1][i])] if band is not None else [])
                for i, (s, p) in enumerate(zip(at, predicted))]
        write_table(args.out, cols, rows)
        print(f"wrote {args.out}")
    if args.plot:
        from . import plot

        burned = fit.burned if getattr(fit, "burned", None) is not None else None
        _save_plot(lambda: plot.prediction_figure(
            fit.steps, fit.loss, fit.prediction, run.lr,
            [{"label": label, "lr": lr, "steps": at, "loss": predicted,
              **({"lo": band[0], "hi": band[1]} if band is not None else {})}],
            fit_mask=fit.fitted, burn_mask=burned, level=args.level, title=f"{run.name}: model {fit.model.name}"),
            args.plot)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from . import compare_models
    from .io import read_log

    _check_out(args.out, (".csv", ".json"), "--out")
    logs = [read_log(p, loss=args.loss) for p in args.paths]
    models = None if not args.models else [m.strip() for m in args.models.split(",") if m.strip()]
    board = compare_models(logs, models=models)
    print(board)
    if args.out:
        columns = list(board.rows[0])
        write_table(args.out, columns, [[r[c] for c in columns] for r in board.rows])
        print(f"wrote {args.out}")
    return 0


# ---------------------------------------------------------------------------
# plan and refine: which schedule to run

PLAN_POINTS = 400  # steps of each predicted curve in the --plot figure


def _lr_range(text: str) -> tuple[float, float]:
    """``--peak-lr-range LO:HI`` (two positive LRs, LO < HI)."""
    parts = text.split(":")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: give LOW:HIGH, e.g. 1e-4:1e-1")
    lo, hi = _positive(parts[0]), _positive(parts[1])
    if lo >= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: LOW must be below HIGH")
    return lo, hi


def _write_schedules(args: argparse.Namespace, lr: np.ndarray, what: str, source: str) -> None:
    """--out (one LR per step: CSV step,lr or .npy) and --torch (LambdaLR form: .json or .py)."""
    from .io import write_schedule

    if args.out:
        write_schedule(args.out, lr, source=source)
        print(f"wrote {args.out} ({what}: one learning rate per step, {lr.shape[0]} steps)")
    if args.torch:
        write_schedule(args.torch, lr, source=source)
        print(f"wrote {args.torch} ({what} for torch.optim.lr_scheduler.LambdaLR: optimizer lr = "
              f"{float(lr.max()):.6g}, multipliers lr / peak; docs/optimal_schedules.md)")


def cmd_plan(args: argparse.Namespace) -> int:
    _check_out(args.out, (".csv", ".npy"), "--out")
    _check_out(args.torch, (".json", ".py"), "--torch")
    _check_out(args.plot, (".png",), "--plot")
    families = [parse_schedule(s) for s in args.schedules]
    labels = [schedule_label(n, p) for n, p in families]
    if args.write not in labels + ["optimal"]:
        raise CliError(f"--write {args.write!r} is not one of the planned schedules: {', '.join(labels + ['optimal'])}")
    from .io import read_log
    from .plan import plan_schedule

    log = read_log(args.log, loss=args.loss)
    if log.lr is None:
        raise CliError(f"{args.log!r}: the log records no learning rate and has no config that gives it; "
                       "cdfast plan fits the run's loss against its learning rates")
    T = args.steps or log.T
    _check_horizon(T, "--steps")
    if args.warmup is not None and args.warmup >= T:
        raise CliError(f"--warmup {args.warmup} must be below --steps {T}: at least one step must follow the warmup")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit's warnings are printed below the table
        plan = plan_schedule(log, T, warmup=args.warmup, families=families, peak_lr_range=args.peak_lr_range,
                             monotone=not args.not_monotone, level=args.level, n_boot=args.boot, model=args.model)
    print(plan.summary())
    for w in plan.fit.warnings:
        print(f"  warning (fit): {w}")
    chosen = plan[args.write]
    source = (f"cdfast plan: the {chosen.name} schedule for T = {T} (warmup {plan.warmup}) under model "
              f"{plan.fit.model.name} fitted to {plan.run_name}")
    _write_schedules(args, chosen.lr, f"the {chosen.name} schedule", source)
    if args.plot:
        from . import plot

        at = _curve_points(T, PLAN_POINTS)
        curves = [{"label": s.name, "lr": s.lr, "steps": at, "loss": plan.predict(s.name, at=at), "final": s.loss,
                   "lo": s.lo, "hi": s.hi} for s in plan.schedules]
        _save_plot(lambda: plot.plan_figure(
            curves, logged_steps=log.steps, logged_loss=log.loss, run_lr=log.lr,
            level=plan.level if args.boot else None, title=f"plan for T = {T}: model {plan.fit.model.name} fitted to {plan.run_name}"), args.plot)
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    _check_out(args.out, (".csv", ".npy"), "--out")
    _check_out(args.torch, (".json", ".py"), "--torch")
    from .io import read_log
    from .plan import refine_schedule

    log = read_log(args.log)
    res = refine_schedule(log, smoothing=args.smoothing, peak_lr=args.peak_lr)
    print(res.summary())
    source = f"cdfast refine: Defazio et al.'s refined schedule from the gradient norms of {res.run_name}"
    _write_schedules(args, res.lr, "the refined schedule", source)
    return 0


# ---------------------------------------------------------------------------
# sweep


def _sweep_schedule(spec: str) -> tuple[str, dict[str, list[Any]]]:
    """``"wsd:decay_frac=0.1|0.2,decay=sqrt"`` -> ``("wsd", {"decay_frac": [0.1, 0.2], "decay": ["sqrt"]})``."""
    name, params = parse_schedule(spec)
    return name, {k: [_value(v) for v in str(val).split("|")] if isinstance(val, str) else [val]
                  for k, val in params.items()}


def _peak_lrs(text: str) -> np.ndarray:
    """``1e-4,3e-4`` (a list) or ``1e-4:1e-2:9`` (9 values, log-spaced)."""
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise argparse.ArgumentTypeError(f"{text!r}: a log grid is START:STOP:COUNT, e.g. 1e-4:1e-2:9")
        lo, hi, count = _positive(parts[0]), _positive(parts[1]), _count(parts[2])
        return np.geomspace(lo, hi, count)
    return np.array([_positive(v) for v in text.split(",") if v.strip()])


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import sweep, write_table

    if args.out is not None and not args.out.lower().endswith((".csv", ".parquet")):
        raise CliError(f"--out {args.out!r} must end in .csv or .parquet")
    _check_out(args.out, (".csv", ".parquet"), "--out")
    schedules = [_sweep_schedule(spec) for spec in args.schedule]
    client = None
    if args.scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            raise ImportError("--scheduler needs dask: python -m pip install 'cdfast[dask]'") from None
        client = Client(args.scheduler)
    try:
        table = sweep(schedules, args.steps, args.peak_lr, D=args.D, G=args.G, L_star=args.L_star,
                         exam=not args.no_exam, chunk_size=args.chunk_size, backend=args.backend, client=client,
                         progress=None if args.progress is None else args.progress)
    finally:
        if client is not None:
            client.close()
    best = np.argsort(table["optimal_bound"], kind="stable")
    seen: list[int] = []
    for i in best:  # the best schedules at their optimal peak LR, one row each
        if not any(table["schedule"][j] == table["schedule"][i] and table["T"][j] == table["T"][i] for j in seen):
            seen.append(int(i))
        if len(seen) == args.top:
            break
    cols = ["schedule", "T", "optimal_peak_lr", "optimal_bound"] + (["qualified"] if not args.no_exam else [])
    _print_table(cols, [[table[c][i].item() for c in cols] for i in seen],
                 title=f"cdfast sweep: {len(table)} rows ({len(set(table['schedule']))} schedules x "
                       f"{len(args.steps)} horizons); best {len(seen)} by optimal bound")
    if args.out:
        write_table(table, args.out)
        print(f"wrote {args.out}")
    return 0


# ---------------------------------------------------------------------------
# parser and entry point


def _add_constants(p: argparse.ArgumentParser) -> None:
    p.add_argument("--D", type=_nonneg, default=1.0, help="distance ||w0 - w*|| (default 1)")
    p.add_argument("--G", type=_nonneg, default=1.0, help="gradient bound G (default 1)")
    p.add_argument("--L-star", dest="L_star", type=_number, default=0.0, help="optimal loss L* (default 0)")


def _model_help() -> str:
    from . import models

    return (f"loss model: {', '.join(models.MODELS)} (default {models.DEFAULT_MODEL}; 'bound' is the paper's "
            "Generalization 1; see docs/models.md)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cdfast", description="Convex loss bounds for learning-rate schedules "
                "(Bu, Xu, Mao, ICLR 2026; Defazio et al. 2023 Cor. 12).")
    from . import __version__

    p.add_argument("--version", action="version", version=f"cdfast {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("report", help="a real run fitted and re-planned; bounds of the standard schedules",
                       description="First, a training run (default: the one shipped with cdfast, see "
                       "cdfast/data/README.md) is fitted, checked on its own second half, and its final loss is "
                       "predicted under other schedules and horizons, with the best peak LR of each.  Then the "
                       "bound table of the standard schedules: last-iterate bound (eq. 2.4) at the optimal peak LR, "
                       "average-iterate bound (eq. 2.3) and exam verdict, and one line on the backends' agreement "
                       "and speed (timings per backend in --out).")
    r.add_argument("log", nargs="?", metavar="PATH", help="training log to fit (default: the packaged sample run)")
    r.add_argument("--loss", metavar="NAME", help="the log's loss column (default: a validation loss)")
    r.add_argument("--model", metavar="NAME", help=_model_help())
    r.add_argument("--run-schedules", nargs="+", default=list(REPORT_SCHEDULES), metavar="NAME[:k=v,...]",
                   help=f"schedules the run is re-planned under (default: {' '.join(REPORT_SCHEDULES)})")
    r.add_argument("--run-steps", type=_step_list, default=None, metavar="T1,T2,...",
                   help="horizons the run is re-planned at (default: 1, 2 and 4 times its own)")
    r.add_argument("--boot", type=_nonneg_int, default=REPORT_BOOT, metavar="N",
                   help=f"bootstrap refits per prediction interval (default {REPORT_BOOT}; 0: no intervals)")
    r.add_argument("--no-run", action="store_true", help="skip the run; only the bound table")
    r.add_argument("--schedules", nargs="+", default=list(DEFAULT_SCHEDULES), metavar="NAME[:k=v,...]",
                   help="schedules of the bound table")
    r.add_argument("--steps", "-T", type=_steps, default=10**6, metavar="T",
                   help="horizon of the bound table (default 1e6)")
    r.add_argument("--warmup", type=_nonneg_int, default=0, metavar="W")
    r.add_argument("--peak-lr", type=_positive, default=None, metavar="X",
                   help="evaluate at this peak LR instead of the optimal one")
    _add_constants(r)
    r.add_argument("--backend", default="all", choices=("all", "auto", "numba", "c"),
                   help="backends to time and compare (default: all available)")
    r.add_argument("--repeat", type=_steps, default=3, help="timing repetitions (best is shown)")
    r.add_argument("--no-exam", action="store_true", help="skip the qualifying exam column")
    r.add_argument("--out", metavar="FILE", help="also write the table to FILE.csv or FILE.json")
    r.add_argument("--plot", metavar="FILE.png", help="the run and its predictions, final loss against peak LR, "
                   "and the bound against peak LR")
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

    e = sub.add_parser("exam", help="the qualifying exam (Condition 2.5) for a schedule family",
                       description="The training-free qualifying exam (Condition 2.5): is sqrt(T) times the bound "
                       "at eta_peak = 1/sqrt(T) bounded as T grows?  Exit status: 0 qualified, 1 not qualified "
                       "(for scripts: `cdfast exam NAME && ...`), 2 bad input.")
    e.add_argument("name", nargs="?", metavar="NAME[:k=v,...]", help="built-in schedule family")
    e.add_argument("--lr-file", metavar="FILE", help="a schedule shape, stretched to every horizon T")
    e.add_argument("--warmup", type=_nonneg_int, default=0, metavar="W", help="fixed warmup steps")
    e.add_argument("--max-steps", type=_steps, default=10**7, metavar="T",
                   help="largest horizon examined (default 1e7; horizons 1e3.. two per decade)")
    e.add_argument("--no-integral", action="store_true",
                   help="skip the continuous integral check (faster; discrete sums only)")
    e.add_argument("--plot", metavar="FILE.png", help="sqrt(T) * bound against T")
    e.set_defaults(func=cmd_exam)

    f = sub.add_parser("fit", help="fit a loss model to training logs (any format) and predict other schedules",
                       description="Fit a loss model to the logged loss curves of one or more runs (several runs "
                       "share one set of parameters), on the logged steps up to --fit-frac of each run; the rest is "
                       "held out and scored.  PATH is anything cdfast.io.read_log reads: a W&B export, a Hugging "
                       "Face trainer_state.json or output folder, TensorBoard event files, a Lightning "
                       "metrics.csv, a CSV/Parquet table.  Model 'bound' is the paper's Generalization 1: "
                       "loss(tau) = L_inf + D~^2 a_tau + G~^2 b_tau (eq. 2.4).")
    f.add_argument("paths", nargs="*", metavar="PATH", help="training logs (files or folders)")
    f.add_argument("--loss", metavar="NAME", help="the loss column (default: a validation loss, else the train loss)")
    f.add_argument("--model", metavar="NAME", help=_model_help())
    f.add_argument("--grad-norm", action="store_true",
                   help="use the logged gradient norms as per-step G_t^2 (Schaipp et al.; grad_sq)")
    _add_schedule_options(f, peak_help="peak LR of --schedule: required with --schedule (the fitted constants "
                          "depend on the LR scale)", steps_help="horizon of --schedule (default: the log's)")
    f.add_argument("--loss-file", metavar="FILE.csv",
                   help="older input: a CSV with columns step,loss (1-based steps), with --lr-file or --schedule")
    f.add_argument("--wandb", metavar="FILE.json", help="older spelling of PATH for a W&B export")
    f.add_argument("--fit-frac", type=_fraction, default=0.5, metavar="F",
                   help="fit the logged steps <= F*T, predict the rest; F in (0, 1] (default 0.5, as in the paper)")
    f.add_argument("--burn-in", type=_burn_in, default=None, metavar="S",
                   help="leave steps 1..S out of the fit and of the held-out score (S < 1: a fraction of T; "
                   "default: the model's)")
    f.add_argument("--robust", action="store_true", help="model bound: Huber loss on log residuals")
    f.add_argument("--predict", metavar="NAME[:k=v,...]", help="also predict the final loss under this schedule")
    f.add_argument("--predict-steps", type=_steps, metavar="T", help="its horizon (default: the run's)")
    f.add_argument("--predict-peak-lr", type=_positive, metavar="X", help="its peak LR (default: the run's)")
    f.add_argument("--predict-warmup", type=_nonneg_int, default=0, metavar="W")
    f.add_argument("--predict-lr-file", metavar="FILE", help="predict under the LRs in FILE instead")
    f.add_argument("--out", metavar="FILE.csv", help="step, loss, fitted, used_for_fit, burn_in (and run)")
    f.add_argument("--plot", metavar="FILE.png", help="LR; data vs model with fitted, held-out and burn-in points; "
                   "residuals")
    f.set_defaults(func=cmd_fit)

    pr = sub.add_parser("predict", help="fit a training log, predict its loss curve under another schedule/horizon",
                        description="Fit a loss model to the log (every logged point by default), then predict the "
                        "loss curve under another schedule, horizon or peak LR, with an interval when the model "
                        "gives one.  The schedule keeps the run's peak LR and warmup unless told otherwise.")
    pr.add_argument("log", metavar="PATH", help="training log (any format cdfast.io.read_log reads)")
    _add_schedule_options(pr, peak_help="peak LR of the predicted schedule (default: the run's)",
                          steps_help="horizon of the predicted schedule", warmup_default=None,
                          warmup_help="warmup steps of the predicted schedule (default: the run's)")
    pr.add_argument("--loss", metavar="NAME", help="the loss column (default: a validation loss, else the train loss)")
    pr.add_argument("--model", metavar="NAME", help=_model_help())
    pr.add_argument("--fit-frac", type=_fraction, default=1.0, metavar="F",
                    help="fit the logged steps <= F*T (default 1: all of them)")
    pr.add_argument("--burn-in", type=_burn_in, default=None, metavar="S",
                    help="leave steps 1..S out of the fit (S < 1: a fraction of T; default: the model's)")
    pr.add_argument("--level", type=_level, default=0.9, metavar="P", help="interval level (default 0.9)")
    pr.add_argument("--points", type=_nonneg_int, default=500,
                    help="steps of the predicted curve, evenly spaced, including T (0 = every step; default 500)")
    pr.add_argument("--out", metavar="FILE.csv", help="step, lr, loss (and lo, hi: the interval)")
    pr.add_argument("--plot", metavar="FILE.png", help="the run, its fit and the predicted curve with its interval")
    pr.set_defaults(func=cmd_predict)

    cm = sub.add_parser("compare", help="rank the loss models on training logs (held-out prediction error)",
                        description="Fit every loss model to the logs and rank them by how well they predict "
                        "held-out points (cdfast.compare_models).")
    cm.add_argument("paths", nargs="+", metavar="PATH", help="training logs (any format cdfast.io.read_log reads)")
    cm.add_argument("--loss", metavar="NAME", help="the loss column (default: a validation loss, else the train loss)")
    cm.add_argument("--models", metavar="A,B,...", help="models to compare (default: all)")
    cm.add_argument("--out", metavar="FILE.csv", help="the leaderboard as CSV or JSON")
    cm.set_defaults(func=cmd_compare)

    pl = sub.add_parser("plan", help="which schedule to run for T steps: best peak LRs and the optimal schedule",
                        description="Fit a loss model to the log (every logged loss), then for horizon T report the "
                        "best peak LR of cosine, WSD and linear decay and the schedule that minimises the model's "
                        "predicted final loss (cdfast.optimal_schedule), each with its predicted final loss and "
                        "interval; write one of them (default: the optimal one) for a training script.  Every "
                        "schedule has the same linear warmup, then decays over the remaining steps.")
    pl.add_argument("log", metavar="LOG", help="training log (any format cdfast.io.read_log reads)")
    pl.add_argument("--steps", "-T", type=_steps, default=None, metavar="T",
                    help="horizon of the planned run (default: the log's)")
    pl.add_argument("--warmup", type=_nonneg_int, default=None, metavar="W",
                    help="warmup steps of every schedule (default: the run's)")
    pl.add_argument("--schedules", nargs="+", default=["cosine", "wsd", "linear"], metavar="NAME[:k=v,...]",
                    help="decays to compare (default: cosine wsd linear; WSD decays over its last 20%%)")
    pl.add_argument("--peak-lr-range", type=_lr_range, default=None, metavar="LOW:HIGH",
                    help="range of their peak-LR search (default: 1e-3 to 1e3 times the run's peak LR)")
    pl.add_argument("--not-monotone", action="store_true",
                    help="let the optimal schedule rise after the warmup (default: non-increasing)")
    pl.add_argument("--loss", metavar="NAME", help="the loss column (default: a validation loss, else the train loss)")
    pl.add_argument("--model", metavar="NAME", help=_model_help() + "; it must give the gradient of its final loss "
                    "(the convex-bound models)")
    pl.add_argument("--level", type=_level, default=0.9, metavar="P", help="interval level (default 0.9)")
    pl.add_argument("--boot", type=_nonneg_int, default=REPORT_BOOT, metavar="N",
                    help=f"bootstrap refits per interval (default {REPORT_BOOT}; 0: no intervals, else >= 20)")
    pl.add_argument("--write", default="optimal", metavar="NAME",
                    help="the schedule --out and --torch write (default: optimal; or one of --schedules)")
    pl.add_argument("--out", metavar="FILE.csv|FILE.npy", help="one learning rate per step (CSV: step,lr)")
    pl.add_argument("--torch", metavar="FILE.json|FILE.py",
                    help="the LambdaLR form: peak LR and multipliers (a .py file also defines lr_lambda)")
    pl.add_argument("--plot", metavar="FILE.png", help="the schedules and their predicted loss curves")
    pl.set_defaults(func=cmd_plan)

    rf = sub.add_parser("refine", help="Defazio et al.'s refined schedule from a log's gradient norms",
                        description="Build the refined schedule of Defazio et al. (2023) from the gradient norms "
                        "the run logged (eta_t ~ g_t^-2 sum_{p>t} g_p^-2), write it, and show how it differs from "
                        "the exact optimum of eq. (2.4) for the same norms (and from the monotone optimum and "
                        "linear decay), each at its best peak LR.")
    rf.add_argument("log", metavar="LOG", help="training log with a gradient-norm column")
    rf.add_argument("--smoothing", type=_nonneg, default=0.0, metavar="F",
                    help="median filter of the norms, width F * T (their tau; default 0: none)")
    rf.add_argument("--peak-lr", type=_positive, default=None, metavar="X",
                    help="largest LR of the written schedule (default: the run's peak LR)")
    rf.add_argument("--out", metavar="FILE.csv|FILE.npy", help="one learning rate per step (CSV: step,lr)")
    rf.add_argument("--torch", metavar="FILE.json|FILE.py", help="the LambdaLR form: peak LR and multipliers")
    rf.set_defaults(func=cmd_refine)

    b = sub.add_parser("bench", help="speed and agreement of the backends at a few horizons")
    b.add_argument("--steps", "-T", type=_step_list, default=[10**4, 10**5, 10**6], metavar="T1,T2,...")
    b.add_argument("--schedule", default="cosine", metavar="NAME[:k=v,...]")
    b.add_argument("--repeat", type=_steps, default=5)
    b.set_defaults(func=cmd_bench)

    w = sub.add_parser("sweep", help="bounds for schedule families x parameters x horizons x peak LRs, to CSV/Parquet",
                       description="One row per schedule, horizon and peak LR: the bound of eq. (2.4), the optimal "
                       "peak LR and bound, and the qualifying exam (Condition 2.5).  Parameter values are separated "
                       "by |, e.g. --schedule 'wsd:decay_frac=0.1|0.2|0.3,decay=linear|sqrt'.")
    w.add_argument("--schedule", action="append", required=True, metavar="NAME[:k=v1|v2,...]",
                   help="schedule family and parameter values (repeat for more families)")
    w.add_argument("--steps", "-T", type=_step_list, required=True, metavar="T1,T2,...", help="horizons")
    w.add_argument("--peak-lr", type=_peak_lrs, default=None, metavar="X1,X2|START:STOP:N",
                   help="peak LRs (a list, or N log-spaced values); default: only the optimal one")
    _add_constants(w)
    w.add_argument("--no-exam", action="store_true", help="skip the qualifying-exam column")
    w.add_argument("--chunk-size", type=_steps, default=1 << 22, metavar="N",
                   help="float64 values per chunk of schedules (the memory bound; default 4Mi)")
    w.add_argument("--backend", default=None, choices=("auto", "numba", "c"))
    w.add_argument("--scheduler", metavar="ADDRESS", help="run on a dask.distributed scheduler, e.g. tcp://host:8786")
    w.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    w.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    w.add_argument("--top", type=_steps, default=10, help="rows printed (best optimal bounds; default 10)")
    w.add_argument("--out", metavar="FILE.csv|FILE.parquet", help="write the whole table")
    w.set_defaults(func=cmd_sweep)
    return p


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ---------------------------------------------------------------------------
# inputs and outputs checked before any work; a closed stdout; SIGTERM

# options naming files read (files only) and logs read (a file or a folder)
_INPUT_FILES = {"lr_file": "--lr-file", "loss_file": "--loss-file", "wandb": "--wandb",
                "predict_lr_file": "--predict-lr-file"}
_INPUT_LOGS = {"paths": "PATH", "log": "LOG"}
_OUTPUTS = {"out": "--out", "plot": "--plot", "torch": "--torch"}


def _given(args: argparse.Namespace, attr: str) -> list[str]:
    v = getattr(args, attr, None)
    if v is None:
        return []
    return [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]


def check_paths(args: argparse.Namespace, extra_inputs: Sequence[str] = ()) -> None:
    """Refuse missing inputs, folders given as files, and outputs that would replace an
    input (the same file, also through symbolic or hard links) or each other."""
    inputs: list[str] = list(extra_inputs)
    for attr, option in _INPUT_FILES.items():
        for path in _given(args, attr):
            if os.path.isdir(path):
                raise CliError(f"{option} {path!r} is a directory; give a file")
            if not os.path.exists(path):
                raise CliError(f"{option} {path!r} does not exist")
            inputs.append(path)
    for attr, option in _INPUT_LOGS.items():
        for path in _given(args, attr):
            if not os.path.exists(path):
                raise CliError(f"{option} {path!r} does not exist")
            inputs.append(path)
    seen: dict[str, str] = {}
    for attr, option in _OUTPUTS.items():
        for path in _given(args, attr):
            if os.path.isdir(path):
                raise CliError(f"{option} {path!r} is a directory; give a file name")
            clash = _files.clashes(path, inputs)
            if clash is not None:
                how = "" if os.path.abspath(clash) == os.path.abspath(path) else " (through a link)"
                raise CliError(f"{option} {path!r} is the input {clash!r}{how}; writing it would replace your "
                               "data: choose another output file")
            real = os.path.realpath(path)
            if real in seen:
                raise CliError(f"{option} {path!r} and {seen[real]} name the same file; give two different outputs")
            seen[real] = option


class _QuietPipe:
    """stdout that goes quiet when its reader has gone (``cdfast ... | head -1``): the
    command still runs to the end and writes its files, without a BrokenPipeError."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()

    def _silence(self) -> None:
        self.broken = True
        try:  # what is still buffered goes to /dev/null, also at interpreter exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so that ``finally`` blocks remove temporary files."""


def _terminate(signum: int, frame: Any) -> None:
    _files.remove_temporaries()
    raise _Terminated()


def _on_sigterm(signum: int, frame: Any) -> None:
    _files.run_or_defer(_terminate, signum, frame)  # never between creating a temporary file and recording it


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return EXIT_USAGE
        check_paths(args)
        return args.func(args)
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except (CliError, ValueError, TypeError, OSError, ImportError, ArithmeticError) as exc:
        print(f"cdfast: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError as exc:
        print(f"cdfast: error: out of memory{': ' + _one_line(exc) if str(exc) else ''}; "
              "choose a smaller --steps or fewer points", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cdfast: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("cdfast: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    0: done; 1: ``cdfast exam`` found the schedule not qualified; 2: bad input (one line
    on stderr); 130 / 143: interrupted / terminated (SIGTERM), temporary files removed.
    """
    stdout = _QuietPipe(sys.stdout)
    saved_stdout, sys.stdout = sys.stdout, stdout  # type: ignore[assignment]
    saved_term = None
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
        saved_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(argv)
    finally:
        stdout.flush()
        sys.stdout = saved_stdout
        if saved_term is not None:
            signal.signal(signal.SIGTERM, saved_term)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
