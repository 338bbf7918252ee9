"""``cdfast forecast``: the final loss of a run in progress, from its log and its planned schedule."""

from __future__ import annotations

import argparse

import numpy as np

from . import _logs
from . import _options as O
from ._options import CliError
from ._output import check_out, print_table, save_plot, write_table

#: the points of the run (fractions of what is logged) whose forecasts the figure shows
FIGURE_FRACTIONS = (1 / 3, 2 / 3, 1.0)


def add_parser(sub) -> None:
    pr = sub.add_parser("forecast", help="forecast the final loss of a run in progress, with an interval",
                        description="Read the log of a run in progress and forecast its loss at the end of its "
                        "planned schedule, with an interval.  The schedule is the log's own when the log knows it "
                        "to the end (e.g. a W&B export with its config); a run read before its end (e.g. a Hugging "
                        "Face output folder halfway through max_steps) needs the rest: --schedule NAME --steps T "
                        "(peak LR and warmup default to the logged ones) or --lr-file FILE.")
    pr.add_argument("log", metavar="PATH", help="training log (any format cdfast.io.read_log reads)")
    O.add_schedule_options(pr, peak_help="peak LR of the planned schedule (default: the logged one)",
                           steps_help="the planned horizon T", warmup_default=None,
                           warmup_help="warmup steps of the planned schedule (default: the logged run's)")
    pr.add_argument("--loss", metavar="NAME", help="the loss column (default: a validation loss, else the train loss)")
    noise = pr.add_mutually_exclusive_group()
    noise.add_argument("--noisy", dest="noisy", action="store_true", default=None,
                       help="treat the losses as noisy training losses (default: decided from the data)")
    noise.add_argument("--not-noisy", dest="noisy", action="store_false", help="treat the losses as validation losses")
    pr.add_argument("--level", type=O.level, default=0.9, metavar="P", help="interval level (default 0.9)")
    pr.add_argument("--out", metavar="FILE.csv", help="the forecast curve: step, loss, lo, hi")
    pr.add_argument("--plot", metavar="FILE.png", help="the logged losses and the forecasts as of a third, two "
                    "thirds and all of them, with their bands")
    pr.set_defaults(func=run)


def _planned(args: argparse.Namespace, log) -> tuple[str, np.ndarray | None]:
    """(label, lr) of the planned schedule from --schedule/--lr-file, or (label, None): the log's own."""
    if not args.lr_file and not args.schedule:
        if args.steps is not None or args.warmup is not None or args.peak_lr is not None:
            raise CliError("--steps, --warmup and --peak-lr describe a --schedule; give --schedule NAME too")
        return f"the log's own ({log.lr_source})", None
    return _logs.schedule_like(args, None if log.lr is None else log.lr[: log.lr_known_steps], "the planned horizon")


def run(args: argparse.Namespace) -> int:
    from ..forecasting import forecast_log
    from ..io import read_log

    check_out(args.out, (".csv", ".json"), "--out")
    check_out(args.plot, (".png",), "--plot")
    log = read_log(args.log, loss=args.loss)
    label, lr = _planned(args, log)
    f = forecast_log(log, lr, level=args.level, noisy=args.noisy)
    print(f"run {log.name}: {log.steps.size} losses ({log.loss_name}) up to step {f.step} of T = {f.T} "
          f"({100 * f.fraction:.1f}% of the run); schedule: {label}")
    print(f.summary())
    if f.ok and f.steps.size:  # the curve still ahead (none once the log reaches T)
        show = np.unique(np.round(np.linspace(0, f.steps.size - 1, min(f.steps.size, 6))).astype(int))
        print_table(["step", "loss", "lo", "hi"], [[int(f.steps[i]), float(f.curve[i]), float(f.curve_low[i]),
                                                   float(f.curve_high[i])] for i in show])
    if args.out:
        if not f.ok:
            raise CliError(f"no forecast to write to {args.out}: {f.reason}")
        write_table(args.out, ["step", "loss", "lo", "hi"],
                    [[int(s), float(y), float(a), float(b)] for s, y, a, b in zip(f.steps, f.curve, f.curve_low,
                                                                                   f.curve_high)])
        print(f"wrote {args.out}")
    if args.plot:
        from .. import plot

        last = int(log.steps[-1])
        points = sorted({max(1, int(round(q * last))) for q in FIGURE_FRACTIONS})
        fs = [forecast_log(log, lr, level=args.level, noisy=args.noisy, until=u) for u in points]
        save_plot(lambda: plot.forecast_figure(fs, log.steps, log.loss, title=f"{log.name}: forecasts of its final "
                                               f"loss at T = {f.T}"), args.plot)
    return 0
