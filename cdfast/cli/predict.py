"""``cdfast predict``: fit a training log, predict its loss curve under another schedule or horizon."""

from __future__ import annotations

import argparse

import numpy as np

from .. import _validate as V
from ..reporting import curve_points, interval
from . import _logs
from . import _options as O
from ._options import CliError
from ._output import check_out, print_table, save_plot, with_interval, write_table


def add_parser(sub) -> None:
    pr = sub.add_parser("predict", help="fit a training log, predict its loss curve under another schedule/horizon",
                        description="Fit a loss model to the log (every logged point by default), then predict the "
                        "loss curve under another schedule, horizon or peak LR, with an interval when the model "
                        "gives one.  The schedule keeps the run's peak LR and warmup unless told otherwise.")
    pr.add_argument("log", metavar="PATH", help="training log (any format cdfast.io.read_log reads)")
    O.add_schedule_options(pr, peak_help="peak LR of the predicted schedule (default: the run's)",
                           steps_help="horizon of the predicted schedule", warmup_default=None,
                           warmup_help="warmup steps of the predicted schedule (default: the run's)")
    pr.add_argument("--loss", metavar="NAME", help="the loss column (default: a validation loss, else the train loss)")
    pr.add_argument("--model", metavar="NAME", help=O.model_help())
    pr.add_argument("--fit-frac", type=O.fraction, default=1.0, metavar="F",
                    help="fit the logged steps <= F*T (default 1: all of them)")
    pr.add_argument("--burn-in", type=O.burn_in, default=None, metavar="S",
                    help="leave steps 1..S out of the fit (S < 1: a fraction of T; default: the model's)")
    pr.add_argument("--level", type=O.level, default=0.9, metavar="P", help="interval level (default 0.9)")
    pr.add_argument("--points", type=O.nonneg_int, default=500,
                    help="steps of the predicted curve, evenly spaced, including T (0 = every step; default 500)")
    pr.add_argument("--out", metavar="FILE.csv", help="step, lr, loss (and lo, hi: the interval)")
    pr.add_argument("--plot", metavar="FILE.png", help="the run, its fit and the predicted curve with its interval")
    pr.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_out(args.out, (".csv", ".json"), "--out")
    check_out(args.plot, (".png",), "--plot")
    runs = _logs.read_runs(argparse.Namespace(loss=args.loss), [args.log])
    run = runs[0]
    if not args.lr_file and not args.schedule:
        raise CliError("give the schedule to predict: --schedule NAME[:k=v,...] --steps T, or --lr-file FILE")
    label, lr = _logs.schedule_like(args, run.lr, "the horizon to predict")
    V.check_positive_last(lr, "cdfast predict")
    masks = _logs.fit_window(runs, args.fit_frac)
    fit = _logs.fit(runs, model=args.model, masks=masks if args.fit_frac < 1 else None, burn_in=args.burn_in)
    print(f"fit of {run.name} ({run.describe})")
    _logs.print_fit(fit, runs, args.fit_frac)
    if fit.poor_fit:
        raise CliError(f"no prediction for {run.name}: {fit.poor_fit}")
    # from the first step with a positive LR: before it the model has nothing to predict (inf)
    at = curve_points(lr.shape[0], args.points, start=int(np.argmax(lr > 0)) + 1)
    predicted = fit.predict(lr, at=at)
    band = interval(fit, lr, at, args.level)
    note = f" ({100 * args.level:g}% interval)" if band is not None else ""
    print(f"prediction under {label}:")
    print(f"  final loss at step {lr.shape[0]} = {with_interval(float(predicted[-1]), band, digits=6)}{note}")
    if band is None:
        print(f"  (model {fit.model.name} gives no interval in this version)")
    for line in fit.extrapolation(lr).notes():
        print(f"  extrapolation: {line}")
    # the table starts at the first fitted step: before it lies the early transient, which the model is not
    # fitted to (its bound there is far above any loss); --out and --plot keep the whole curve
    fitted_from = int(fit.steps[fit.fitted].min())
    first = int(np.searchsorted(at, fitted_from))
    first = first if first < at.shape[0] else 0
    show = first + np.unique(np.round(np.linspace(0, at.shape[0] - 1 - first, min(at.shape[0] - first, 11))).astype(int))
    cols = ["step", "lr", "loss"] + (["lo", "hi"] if band is not None else [])
    print_table(cols, [[int(at[i]), float(lr[at[i] - 1]), float(predicted[i])]
                       + ([float(band[0][i]), float(band[1][i])] if band is not None else []) for i in show])
    if first:
        print(f"  (rows from step {int(at[first])} on: the model is fitted from step {fitted_from}, after the early "
              "transient, which it does not describe"
              f"{'; --out and --plot hold the whole curve' if args.out or args.plot else ''})")
    if args.out:
        rows = [[int(s), float(lr[s - 1]), float(p)] + ([float(band[0][i]), float(band[1][i])] if band is not None else [])
                for i, (s, p) in enumerate(zip(at, predicted))]
        write_table(args.out, cols, rows)
        print(f"wrote {args.out}")
    if args.plot:
        from .. import plot

        burned = fit.burned if getattr(fit, "burned", None) is not None else None
        save_plot(lambda: plot.prediction_figure(
            fit.steps, fit.loss, fit.prediction, run.lr,
            [{"label": label, "lr": lr, "steps": at, "loss": predicted,
              **({"lo": band[0], "hi": band[1]} if band is not None else {})}],
            fit_mask=fit.fitted, burn_mask=burned, level=args.level, title=f"{run.name}: model {fit.model.name}"),
            args.plot)
    return 0
