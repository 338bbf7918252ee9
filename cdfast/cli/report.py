"""``cdfast report``: prints :func:`cdfast.report` (a real run fitted and re-planned; the bound table)."""

from __future__ import annotations

import argparse

from .. import _files
from ..reporting import BOOT, BOUND_SCHEDULES, RUN_SCHEDULES
from . import _options as O
from ._options import CliError
from ._output import check_out, save_plot, write_table


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="a real run fitted and re-planned; bounds of the standard schedules",
                       description="First, a training run (default: the one shipped with cdfast, see "
                       "cdfast/data/README.md) is fitted, checked on its own second half, and its final loss is "
                       "predicted under other schedules and horizons, with the best peak LR of each.  Then the "
                       "bound table of the standard schedules: last-iterate bound (eq. 2.4) at the optimal peak LR, "
                       "average-iterate bound (eq. 2.3) and exam verdict, and one line on the backends' agreement "
                       "and speed (timings per backend in --out).")
    r.add_argument("log", nargs="?", metavar="PATH", help="training log to fit (default: the packaged sample run)")
    r.add_argument("--loss", metavar="NAME", help="the log's loss column (default: a validation loss)")
    r.add_argument("--model", metavar="NAME", help=O.model_help())
    r.add_argument("--run-schedules", nargs="+", default=list(RUN_SCHEDULES), metavar="NAME[:k=v,...]",
                   help=f"schedules the run is re-planned under (default: {' '.join(RUN_SCHEDULES)})")
    r.add_argument("--run-steps", type=O.step_list, default=None, metavar="T1,T2,...",
                   help="horizons the run is re-planned at (default: 1, 2 and 4 times its own)")
    r.add_argument("--boot", type=O.nonneg_int, default=BOOT, metavar="N",
                   help=f"bootstrap refits per prediction interval (default {BOOT}; 0: no intervals)")
    r.add_argument("--no-run", action="store_true", help="skip the run; only the bound table")
    r.add_argument("--schedules", nargs="+", default=list(BOUND_SCHEDULES), metavar="NAME[:k=v,...]",
                   help="schedules of the bound table")
    r.add_argument("--steps", "-T", type=O.steps, default=10**6, metavar="T",
                   help="horizon of the bound table (default 1e6)")
    r.add_argument("--warmup", type=O.nonneg_int, default=0, metavar="W")
    r.add_argument("--peak-lr", type=O.positive, default=None, metavar="X",
                   help="evaluate at this peak LR instead of the optimal one")
    O.add_constants(r)
    r.add_argument("--backend", default="all", choices=("all", "auto", "numba", "c"),
                   help="backends to time and compare (default: all available)")
    r.add_argument("--repeat", type=O.steps, default=3, help="timing repetitions (best is shown)")
    r.add_argument("--no-exam", action="store_true", help="skip the qualifying exam column")
    r.add_argument("--out", metavar="FILE", help="also write the table to FILE.csv or FILE.json")
    r.add_argument("--plot", metavar="FILE.png", help="the run and its predictions, final loss against peak LR, "
                   "and the bound against peak LR")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import SAMPLE_RUN
    from ..reporting import report

    check_out(args.out, (".csv", ".json"), "--out")
    check_out(args.plot, (".png",), "--plot")
    if args.peak_lr is None and (args.D == 0 or args.G == 0):
        raise CliError("the optimal peak LR needs D > 0 and G > 0; give --peak-lr instead")
    schedules = [O.parse_schedule(s) for s in args.schedules]
    O.check_horizon(args.steps, "--steps")
    run_schedules = []
    if not args.no_run:
        path = args.log or str(SAMPLE_RUN)
        for option in ("out", "plot"):
            target = getattr(args, option)
            if target is not None and _files.clashes(target, [path]):
                raise CliError(f"--{option} {target!r} is the input {path!r}; choose another output file")
        run_schedules = [O.parse_schedule(s) for s in args.run_schedules]
        for T in args.run_steps or ():
            O.check_horizon(T, "--run-steps")
    rep = report(args.log, loss=args.loss, model=args.model, run_schedules=run_schedules, run_steps=args.run_steps,
                 boot=args.boot, run=not args.no_run, schedules=schedules, steps=args.steps, warmup=args.warmup,
                 peak_lr=args.peak_lr, D=args.D, G=args.G, L_star=args.L_star, backend=args.backend,
                 repeat=args.repeat, exam=not args.no_exam, figure=bool(args.plot))
    print(rep.summary())
    if args.out:
        write_table(args.out, rep.columns, rep.rows)
        print(f"wrote {args.out}")
    if args.plot:
        from .. import plot

        D, G, L = args.D, args.G, args.L_star
        if rep.run is None:
            save_plot(lambda: plot.peak_lr_figure(rep.terms, D=D or 1.0, G=G or 1.0, L_star=L,
                                                  title=f"bound vs peak LR, T = {args.steps}"), args.plot)
        else:
            fit, shown = rep.run.fit, rep.run
            save_plot(lambda: plot.report_figure(
                fit.steps, fit.loss, fit.prediction, shown.lr, shown.figure_curves, shown.figure_scans, rep.terms,
                fit_mask=fit.fitted, burn_mask=getattr(fit, "burned", None), peak=shown.peak_lr,
                level=shown.level, bound_T=args.steps, title=f"{shown.name}: model {fit.model.name}"), args.plot)
    return 0
