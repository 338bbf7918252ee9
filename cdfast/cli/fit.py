"""``cdfast fit``: fit a loss model to training logs (any format), score it on held-out steps."""

from __future__ import annotations

import argparse
import os

import numpy as np

from .. import _validate as V
from .. import schedules as S
from ..reporting import curve_points
from . import _logs
from . import _options as O
from ._output import check_out, save_plot, write_table


def add_parser(sub) -> None:
    f = sub.add_parser("fit", help="fit a loss model to training logs (any format) and predict other schedules",
                       description="Fit a loss model to the logged loss curves of one or more runs (several runs "
                       "share one set of parameters), on the logged steps up to --fit-frac of each run; the rest is "
                       "held out and scored.  PATH is anything cdfast.io.read_log reads: a W&B export, a Hugging "
                       "Face trainer_state.json or output folder, TensorBoard event files, a Lightning "
                       "metrics.csv, a CSV/Parquet table.  Model 'bound' is the paper's Generalization 1: "
                       "loss(tau) = L_inf + D~^2 a_tau + G~^2 b_tau (eq. 2.4).")
    f.add_argument("paths", nargs="*", metavar="PATH", help="training logs (files or folders)")
    f.add_argument("--loss", metavar="NAME", help="the loss column (default: a validation loss, else the train loss)")
    f.add_argument("--model", metavar="NAME", help=O.model_help())
    f.add_argument("--grad-norm", action="store_true",
                   help="use the logged gradient norms as per-step G_t^2 (Schaipp et al.; grad_sq)")
    O.add_schedule_options(f, peak_help="peak LR of --schedule: required with --schedule (the fitted constants "
                           "depend on the LR scale)", steps_help="horizon of --schedule (default: the log's)")
    f.add_argument("--loss-file", metavar="FILE.csv",
                   help="older input: a CSV with columns step,loss (1-based steps), with --lr-file or --schedule")
    f.add_argument("--wandb", metavar="FILE.json", help="older spelling of PATH for a W&B export")
    f.add_argument("--fit-frac", type=O.fraction, default=0.5, metavar="F",
                   help="fit the logged steps <= F*T, predict the rest; F in (0, 1] (default 0.5, as in the paper)")
    f.add_argument("--burn-in", type=O.burn_in, default=None, metavar="S",
                   help="leave steps 1..S out of the fit and of the held-out score (S < 1: a fraction of T; "
                   "default: the model's)")
    f.add_argument("--robust", action="store_true", help="model bound: Huber loss on log residuals")
    f.add_argument("--predict", metavar="NAME[:k=v,...]", help="also predict the final loss under this schedule")
    f.add_argument("--predict-steps", type=O.steps, metavar="T", help="its horizon (default: the run's)")
    f.add_argument("--predict-peak-lr", type=O.positive, metavar="X", help="its peak LR (default: the run's)")
    f.add_argument("--predict-warmup", type=O.nonneg_int, default=0, metavar="W")
    f.add_argument("--predict-lr-file", metavar="FILE", help="predict under the LRs in FILE instead")
    f.add_argument("--out", metavar="FILE.csv", help="step, loss, fitted, used_for_fit, burn_in (and run)")
    f.add_argument("--plot", metavar="FILE.png", help="LR; data vs model with fitted, held-out and burn-in points; "
                   "residuals")
    f.set_defaults(func=run)


def _prediction_lr(args: argparse.Namespace, lr: np.ndarray) -> tuple[str, np.ndarray] | None:
    if args.predict_lr_file:
        return os.path.basename(args.predict_lr_file), O.read_lr(args.predict_lr_file)
    if not args.predict:
        return None
    name, params = O.parse_schedule(args.predict)
    T = args.predict_steps or lr.shape[0]
    O.check_horizon(T, "--predict-steps")
    peak = args.predict_peak_lr or float(lr.max())
    warm = {"warmup": args.predict_warmup} if args.predict_warmup else {}
    return f"{O.schedule_label(name, params)} (T = {T}, peak {peak:g})", peak * S.make(name, T, **params, **warm)


def run(args: argparse.Namespace) -> int:
    check_out(args.out, (".csv", ".json"), "--out")
    check_out(args.plot, (".png",), "--plot")
    runs = _logs.runs_from_fit_args(args)
    masks = _logs.fit_window(runs, args.fit_frac)
    other = _prediction_lr(args, runs[0].lr)
    if other is not None:
        V.check_positive_last(other[1], "cdfast fit --predict")
    fit = _logs.fit(runs, model=args.model, masks=masks, burn_in=args.burn_in, robust=args.robust)
    if len(runs) == 1:
        print(f"fit of {runs[0].name} ({runs[0].describe})")
    else:
        print(f"joint fit of {len(runs)} runs (one set of parameters):")
        for r in runs:
            print(f"  {r.name} ({r.describe})")
    _logs.print_fit(fit, runs, args.fit_frac)
    pred_steps = predicted = None
    if other is not None:
        olabel, olr = other
        pred_steps = curve_points(olr.shape[0], 2000)
        predicted = fit.predict(olr, at=pred_steps)
        print(f"  predicted final loss under {olabel} = {predicted[-1]:.6g}")
    burned = fit.burned if getattr(fit, "burned", None) is not None else None
    if args.out:
        names = [r.name for r in runs]
        flags = burned if burned is not None else np.zeros(fit.fitted.shape, bool)
        cols = (["run"] if len(runs) > 1 else []) + ["step", "loss", "fitted", "used_for_fit", "burn_in"]
        rows = [([names[int(k)]] if len(runs) > 1 else []) + [int(s), float(y), float(p), int(m), int(b)]
                for k, s, y, p, m, b in zip(fit.run, fit.steps, fit.loss, fit.prediction, fit.fitted, flags)]
        write_table(args.out, cols, rows)
        print(f"wrote {args.out}")
    if args.plot:
        from .. import plot

        save_plot(lambda: plot.fit_figure(
            fit.steps, fit.loss, fit.prediction, [r.lr for r in runs] if len(runs) > 1 else runs[0].lr,
            fit_mask=fit.fitted, burn_mask=burned, cutoff=[args.fit_frac * r.T for r in runs] if args.fit_frac < 1
            else None, params=fit.params, r2=fit.r2, r2_holdout=fit.r2_holdout, model=fit.model.name,
            run=fit.run, run_names=[r.name for r in runs], pred_steps=pred_steps, predicted=predicted,
            pred_lr=None if other is None else other[1],
            title=runs[0].name if len(runs) == 1 else f"{len(runs)} runs, one set of parameters"), args.plot)
    return 0
