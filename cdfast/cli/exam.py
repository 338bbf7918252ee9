"""``cdfast exam``: the qualifying exam (Condition 2.5) for a schedule family or a shape from a file."""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable

import numpy as np

from .. import _validate as V
from .. import schedules as S
from . import _options as O
from ._options import EXIT_NOT_QUALIFIED, CliError
from ._output import check_out, fmt, print_table, save_plot


def add_parser(sub) -> None:
    e = sub.add_parser("exam", help="the qualifying exam (Condition 2.5) for a schedule family",
                       description="The training-free qualifying exam (Condition 2.5): is sqrt(T) times the bound "
                       "at eta_peak = 1/sqrt(T) bounded as T grows?  Exit status: 0 qualified, 1 not qualified "
                       "(for scripts: `cdfast exam NAME && ...`), 2 bad input.")
    e.add_argument("name", nargs="?", metavar="NAME[:k=v,...]",
                   help="built-in schedule family; with --lr-file, a name for the shape in the output")
    e.add_argument("--lr-file", metavar="FILE", help="a schedule shape, stretched to every horizon T")
    e.add_argument("--warmup", type=O.nonneg_int, default=0, metavar="W", help="fixed warmup steps")
    e.add_argument("--max-steps", type=O.steps, default=10**7, metavar="T",
                   help="largest horizon examined (default 1e7; horizons 1e3.. two per decade)")
    e.add_argument("--no-integral", action="store_true",
                   help="skip the continuous integral check (faster; discrete sums only)")
    e.add_argument("--plot", metavar="FILE.png", help="sqrt(T) * bound against T")
    e.set_defaults(func=run)


def exam_grid(max_T: int) -> np.ndarray:
    from ..asymptotics import EXAM_T

    grid = EXAM_T[EXAM_T <= max_T]
    if grid.shape[0] < 4:
        raise CliError(f"the exam needs at least 4 horizons, i.e. up to T >= {int(EXAM_T[3])} "
                       f"(got {max_T}); raise --max-steps")
    return grid


def _run_exam(name: str, params: dict[str, Any], warmup: int, grid: np.ndarray, continuous: bool) -> Any:
    """qualifying_exam for a named family (a warmup of W steps is kept fixed across T)."""
    from ..asymptotics import qualifying_exam

    if warmup:
        if warmup > grid[0]:
            raise CliError(f"--warmup {warmup} exceeds the exam's smallest horizon T = {grid[0]}")
        return qualifying_exam(lambda T: S.make(name, T, warmup=warmup, **params), grid, kind="family",
                               continuous=False)
    return qualifying_exam(name, grid, continuous=continuous, **params)


def _lr_file_family(path: str) -> Callable[[int], np.ndarray]:
    """A shape from a file as a family: ``s_t(T) = s(t / T)``, linear interpolation on x_i = i / n."""
    lr = O.read_lr(path)
    V.check_positive_last(lr, "cdfast exam")
    shape = lr / lr.max()
    x = np.arange(shape.shape[0]) / shape.shape[0]
    return lambda T: np.interp(np.arange(T) / T, x, shape)


def run(args: argparse.Namespace) -> int:
    check_out(args.plot, (".png",), "--plot")
    O.check_horizon(args.max_steps, "--max-steps")
    grid = exam_grid(args.max_steps)
    if args.name is None and args.lr_file is None:
        raise CliError("give either a schedule NAME (e.g. `cdfast exam cosine`) or --lr-file FILE")
    if args.lr_file:
        if args.warmup:
            raise CliError("--warmup applies to a named schedule, not to --lr-file")
        label = args.name or os.path.basename(args.lr_file)  # `cdfast exam my_shape --lr-file F`: a label
        from ..asymptotics import qualifying_exam

        result = qualifying_exam(_lr_file_family(args.lr_file), grid, kind="family", continuous=False)
    else:
        name, params = O.parse_schedule(args.name)
        label = O.schedule_label(name, params) + (f" (warmup {args.warmup})" if args.warmup else "")
        result = _run_exam(name, params, args.warmup, grid, not args.no_integral)
    print(f"qualifying exam (Condition 2.5) for {label}: {'QUALIFIED' if result.qualified else 'NOT QUALIFIED'}")
    print(result.reason)
    print_table(["T", "sqrtT_bound", "q1_sq", "q2_sq"],
                [[int(T), v, q1, q2] for T, v, q1, q2 in zip(result.T, result.values, result.q1_sq, result.q2_sq)])
    print("sqrtT_bound = sqrt(T) * bound(eta_peak = 1/sqrt(T), D = G = 1) = q1_sq + q2_sq")
    if result.continuous_q2_sq is not None:
        print(f"continuous limit: q1^2 = {fmt(result.continuous_q1_sq)}, q2^2 = {fmt(result.continuous_q2_sq)}")
    if args.plot:
        from .. import plot

        limit = None
        if result.continuous_q1_sq is not None and result.continuous_q2_sq is not None:
            limit = float(result.continuous_q1_sq) + float(result.continuous_q2_sq)
        save_plot(lambda: plot.exam_figure(result.T, result.values, qualified=result.qualified, limit=limit,
                                           title=label), args.plot)
    return 0 if result.qualified else EXIT_NOT_QUALIFIED
