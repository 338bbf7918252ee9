"""``cdfast curve``: the bound curve of eq. (2.4) for one schedule, to CSV/JSON (and PNG)."""

from __future__ import annotations

import argparse
import math

import numpy as np

from .. import _validate as V
from .._progress import Progress
from ..reporting import curve_points
from . import _options as O
from ._output import check_out, fmt, save_plot, write_table


def add_parser(sub) -> None:
    c = sub.add_parser("curve", help="the bound curve of eq. (2.4) for one schedule, to CSV (and PNG)")
    O.add_schedule_options(c)
    O.add_constants(c)
    c.add_argument("--points", type=O.nonneg_int, default=2000,
                   help="evaluate at this many evenly spaced steps including T (0 = every step; default 2000)")
    c.add_argument("--method", default="auto", choices=("auto", "exact", "fast"))
    c.add_argument("--backend", default=None, choices=("auto", "numba", "c"))
    c.add_argument("--out", required=True, metavar="FILE.csv", help="columns step, lr, bound")
    c.add_argument("--plot", metavar="FILE.png", help="LR and bound against step")
    c.set_defaults(func=run)


def compute_curve(lr: np.ndarray, at: np.ndarray, *, D: float, G: float, L_star: float,
                  method: str = "auto", backend: str | None = None, label: str = "curve") -> np.ndarray:
    """eq. (2.4) at the iterations ``at``, in chunks so that long exact curves show progress."""
    from ..curve import bound_curve

    if method != "exact" or at.shape[0] <= 256:
        return bound_curve(lr, D, G, L_star, at=at, method=method, backend=backend)
    # exact cost grows with tau: cut the work (sum of tau) into about 50 equal pieces
    work = np.cumsum(at.astype(float))
    cuts = np.searchsorted(work, np.linspace(0, work[-1], 51)[1:-1])
    pieces = [p for p in np.split(at, np.unique(cuts)) if p.size]
    out = []
    with Progress(label, total=int(work[-1])) as progress:
        for piece in pieces:
            out.append(bound_curve(lr, D, G, L_star, at=piece, method=method, backend=backend))
            progress.advance(int(piece.astype(float).sum()))
    return np.concatenate(out)


def run(args: argparse.Namespace) -> int:
    check_out(args.out, (".csv", ".json"), "--out")
    check_out(args.plot, (".png",), "--plot")
    label, lr, is_shape = O.schedule_from_args(args)
    D, G, L = args.D, args.G, args.L_star
    V.check_positive_last(lr, "cdfast curve")
    if is_shape:
        if args.peak_lr is None:
            from ..asymptotics import optimal_peak_lr

            if D == 0 or G == 0:
                raise O.CliError("the optimal peak LR needs D > 0 and G > 0; give --peak-lr instead")
            eta, _ = optimal_peak_lr(lr, D, G, backend=args.backend)
            print(f"peak LR = {eta:.6g} (minimises the final bound; set it with --peak-lr)")
        else:
            eta = args.peak_lr
        lr = eta * lr
    at = curve_points(lr.shape[0], args.points)
    bound = compute_curve(lr, at, D=D, G=G, L_star=L, method=args.method, backend=args.backend,
                          label=f"curve {label}")
    rows = list(zip(at.tolist(), lr[at - 1].tolist(), bound.tolist()))
    write_table(args.out, ["step", "lr", "bound"], rows)
    final = bound[-1] if at[-1] == lr.shape[0] else math.nan
    print(f"{label}: T = {lr.shape[0]}, {at.shape[0]} points, final bound = {fmt(final)}; wrote {args.out}")
    if args.plot:
        from .. import plot

        save_plot(lambda: plot.curve_figure(at, lr, bound, title=f"{label}, T = {lr.shape[0]}"), args.plot)
    return 0
