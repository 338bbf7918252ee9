"""``cdfast plan`` and ``cdfast refine``: which schedule to run, written for a training script."""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from ..reporting import BOOT, curve_points
from . import _options as O
from ._options import CliError
from ._output import check_out, save_plot

PLAN_POINTS = 400  # steps of each predicted curve in the --plot figure


def _lr_range(text: str) -> tuple[float, float]:
    """``--peak-lr-range LO:HI`` (two positive LRs, LO < HI)."""
    parts = text.split(":")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: give LOW:HIGH, e.g. 1e-4:1e-1")
    lo, hi = O.positive(parts[0]), O.positive(parts[1])
    if lo >= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: LOW must be below HIGH")
    return lo, hi


def add_parser(sub) -> None:
    pl = sub.add_parser("plan", help="which schedule to run for T steps: best peak LRs and the optimal schedule",
                        description="Fit a loss model to the log (every logged loss), then for horizon T report the "
                        "best peak LR of cosine, WSD and linear decay and the schedule that minimises the model's "
                        "predicted final loss (cdfast.optimal_schedule), each with its predicted final loss and "
                        "interval; write one of them (default: the optimal one) for a training script.  Every "
                        "schedule has the same linear warmup, then decays over the remaining steps.")
    pl.add_argument("log", metavar="LOG", help="training log (any format cdfast.io.read_log reads)")
    pl.add_argument("--steps", "-T", type=O.steps, default=None, metavar="T",
                    help="horizon of the planned run (default: the log's)")
    pl.add_argument("--warmup", type=O.nonneg_int, default=None, metavar="W",
                    help="warmup steps of every schedule (default: the run's)")
    pl.add_argument("--schedules", nargs="+", default=["cosine", "wsd", "linear"], metavar="NAME[:k=v,...]",
                    help="decays to compare (default: cosine wsd linear; WSD decays over its last 20%%)")
    pl.add_argument("--peak-lr-range", type=_lr_range, default=None, metavar="LOW:HIGH",
                    help="range of every schedule's peak LR (default: what the run supports, 0.8x-1.25x its peak "
                    "LR; beyond it needs --extrapolate)")
    pl.add_argument("--extrapolate", action="store_true",
                    help="allow peak LRs beyond what the run supports (default range: 1e-3 to 1e3 times its peak "
                    "LR); schedules whose peak lies outside are marked as extrapolations")
    pl.add_argument("--from-step", type=O.steps, default=None, metavar="t",
                    help="plan from the run's checkpoint at step t: the first t LRs are the run's logged ones, only "
                    "the rest is planned (the best cooldown from there to --steps)")
    pl.add_argument("--allow-steps", action="store_true",
                    help="allow one-step LR changes above the warmup ramp's step or 1%% of the peak (step schedules)")
    pl.add_argument("--not-monotone", action="store_true",
                    help="let the optimal schedule rise after the warmup (default: non-increasing; needs "
                    "--allow-steps)")
    pl.add_argument("--quiet", "-q", action="store_true", help="no progress bar while the plan is solved")
    pl.add_argument("--loss", metavar="NAME", help="the loss column (default: a validation loss, else the train loss)")
    pl.add_argument("--model", metavar="NAME", help=O.model_help() + "; it must give the gradient of its final loss "
                    "(the convex-bound models)")
    pl.add_argument("--level", type=O.level, default=0.9, metavar="P", help="interval level (default 0.9)")
    pl.add_argument("--boot", type=O.nonneg_int, default=BOOT, metavar="N",
                    help=f"bootstrap refits per interval (default {BOOT}; 0: no intervals, else >= 20)")
    pl.add_argument("--write", default="optimal", metavar="NAME",
                    help="the schedule --out and --torch write (default: optimal; or one of --schedules)")
    pl.add_argument("--out", metavar="FILE.csv|FILE.npy", help="one learning rate per step (CSV: step,lr)")
    pl.add_argument("--torch", metavar="FILE.json|FILE.py",
                    help="the LambdaLR form: peak LR and multipliers (a .py file also defines lr_lambda)")
    pl.add_argument("--plot", metavar="FILE.png", help="the schedules and their predicted loss curves")
    pl.set_defaults(func=run_plan)

    rf = sub.add_parser("refine", help="Defazio et al.'s refined schedule from a log's gradient norms",
                        description="Build the refined schedule of Defazio et al. (2023) from the gradient norms "
                        "the run logged (eta_t ~ g_t^-2 sum_{p>t} g_p^-2), write it, and show how it differs from "
                        "the exact optimum of eq. (2.4) for the same norms (and from the monotone optimum and "
                        "linear decay), each at its best peak LR.")
    rf.add_argument("log", metavar="LOG", help="training log with a gradient-norm column")
    rf.add_argument("--smoothing", type=O.nonneg, default=0.0, metavar="F",
                    help="median filter of the norms, width F * T (their tau; default 0: none)")
    rf.add_argument("--peak-lr", type=O.positive, default=None, metavar="X",
                    help="largest LR of the written schedule (default: the run's peak LR)")
    rf.add_argument("--out", metavar="FILE.csv|FILE.npy", help="one learning rate per step (CSV: step,lr)")
    rf.add_argument("--torch", metavar="FILE.json|FILE.py", help="the LambdaLR form: peak LR and multipliers")
    rf.set_defaults(func=run_refine)


def _write_schedules(args: argparse.Namespace, lr: np.ndarray, what: str, source: str) -> None:
    """--out (one LR per step: CSV step,lr or .npy) and --torch (LambdaLR form: .json or .py)."""
    from ..io import write_schedule

    if args.out:
        write_schedule(args.out, lr, source=source)
        print(f"wrote {args.out} ({what}: one learning rate per step, {lr.shape[0]} steps)")
    if args.torch:
        write_schedule(args.torch, lr, source=source)
        print(f"wrote {args.torch} ({what} for torch.optim.lr_scheduler.LambdaLR: optimizer lr = "
              f"{float(lr.max()):.6g}, multipliers lr / peak; docs/optimal_schedules.md)")


def run_plan(args: argparse.Namespace) -> int:
    check_out(args.out, (".csv", ".npy"), "--out")
    check_out(args.torch, (".json", ".py"), "--torch")
    check_out(args.plot, (".png",), "--plot")
    families = [O.parse_schedule(s) for s in args.schedules]
    labels = [O.schedule_label(n, p) for n, p in families]
    if args.write not in labels + ["optimal"]:
        raise CliError(f"--write {args.write!r} is not one of the planned schedules: {', '.join(labels + ['optimal'])}")
    from ..io import read_log
    from ..plan import plan_schedule

    log = read_log(args.log, loss=args.loss)
    if log.lr is None:
        raise CliError(f"{args.log!r}: the log records no learning rate and has no config that gives it; "
                       "cdfast plan fits the run's loss against its learning rates")
    T = args.steps or log.T
    O.check_horizon(T, "--steps")
    if args.warmup is not None and args.warmup >= T:
        raise CliError(f"--warmup {args.warmup} must be below --steps {T}: at least one step must follow the warmup")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit's warnings are printed below the table
        plan = plan_schedule(log, T, warmup=args.warmup, families=families, peak_lr_range=args.peak_lr_range,
                             extrapolate=args.extrapolate, smooth=not args.allow_steps, from_step=args.from_step,
                             monotone=not args.not_monotone, level=args.level, n_boot=args.boot, model=args.model,
                             progress=False if args.quiet else None)
    print(plan.summary())
    for w in plan.fit.warnings:
        print(f"  warning (fit): {w}")
    chosen = plan[args.write]
    start = f"from step {plan.from_step} of the run" if plan.from_step else f"warmup {plan.warmup}"
    source = (f"cdfast plan: the {chosen.name} schedule for T = {T} ({start}) under model "
              f"{plan.fit.model.name} fitted to {plan.run_name}")
    _write_schedules(args, chosen.lr, f"the {chosen.name} schedule", source)
    if args.plot:
        from .. import plot

        at = curve_points(T, PLAN_POINTS)
        curves = [{"label": s.name, "lr": s.lr, "steps": at, "loss": plan.predict(s.name, at=at), "final": s.loss,
                   "lo": s.lo, "hi": s.hi} for s in plan.schedules]
        save_plot(lambda: plot.plan_figure(
            curves, logged_steps=log.steps, logged_loss=log.loss, run_lr=log.lr,
            level=plan.level if args.boot else None,
            title=f"plan for T = {T}: model {plan.fit.model.name} fitted to {plan.run_name}"), args.plot)
    return 0


def run_refine(args: argparse.Namespace) -> int:
    check_out(args.out, (".csv", ".npy"), "--out")
    check_out(args.torch, (".json", ".py"), "--torch")
    from ..io import read_log
    from ..plan import refine_schedule

    log = read_log(args.log)
    res = refine_schedule(log, smoothing=args.smoothing, peak_lr=args.peak_lr)
    print(res.summary())
    source = f"cdfast refine: Defazio et al.'s refined schedule from the gradient norms of {res.run_name}"
    _write_schedules(args, res.lr, "the refined schedule", source)
    return 0
