"""Training logs for ``fit`` and ``predict``: the runs of PATH arguments, with --lr-file or
--schedule replacing a log's learning rates, and the fit of a loss model to them."""

from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .. import schedules as S
from ..io.table import read_loss_file
from . import _options as O
from ._options import CliError


@dataclass(frozen=True)
class Run:
    """One logged run as the fit needs it."""

    name: str
    lr: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    grad_sq: np.ndarray | None
    describe: str
    first_logged: int
    branch_step: int = 0
    lr_known: int | None = None  # a log read before its end: the last update whose LR it knows
    divergence: tuple[int, float] | None = None  # (step, loss) where the run diverged (TrainingLog.divergence)

    @property
    def T(self) -> int:
        return int(self.lr.shape[0])


def lr_override(args: argparse.Namespace, T_default: int | None) -> tuple[str, np.ndarray] | None:
    """The LRs of --lr-file, or of --schedule (with --steps, default the log's T, and --peak-lr)."""
    if getattr(args, "lr_file", None):
        if args.steps is not None or args.warmup or args.peak_lr is not None:
            raise CliError("--steps, --warmup and --peak-lr apply to --schedule, not to --lr-file")
        return os.path.basename(args.lr_file), O.read_lr(args.lr_file)
    if not getattr(args, "schedule", None):
        return None
    if args.peak_lr is None:
        raise CliError("--schedule needs --peak-lr for a fit: the fitted constants depend on the LR scale")
    T = args.steps or T_default
    if T is None:
        raise CliError("--schedule needs --steps T (the run's horizon)")
    O.check_horizon(T, "--steps")
    name, params = O.parse_schedule(args.schedule)
    shape = S.make(name, T, **params, **({"warmup": args.warmup} if args.warmup else {}))
    return O.schedule_label(name, params), args.peak_lr * shape


def schedule_like(args: argparse.Namespace, ref_lr: np.ndarray | None, horizon: str) -> tuple[str, np.ndarray]:
    """(label, lr) of --lr-file, or of --schedule NAME --steps T whose peak LR and warmup default
    to those of ``ref_lr`` (a logged run's LRs; ``--peak-lr`` is needed without it)."""
    from ..reporting import warmup_of

    if args.lr_file:
        if args.steps is not None or args.warmup is not None or args.peak_lr is not None:
            raise CliError("--steps, --warmup and --peak-lr apply to --schedule, not to --lr-file")
        return os.path.basename(args.lr_file), O.read_lr(args.lr_file)
    if args.steps is None:
        raise CliError(f"--schedule needs --steps T ({horizon})")
    O.check_horizon(args.steps, "--steps")
    name, params = O.parse_schedule(args.schedule)
    if args.peak_lr is None and ref_lr is None:
        raise CliError("the log records no learning rate: give the peak LR with --peak-lr X")
    peak = args.peak_lr if args.peak_lr is not None else float(ref_lr.max())
    warmup = args.warmup if args.warmup is not None else (warmup_of(ref_lr) if ref_lr is not None else 0)
    if warmup >= args.steps:
        raise CliError(f"the warmup ({warmup} steps{'' if args.warmup is not None else ', from the logged run'}) "
                       f"does not fit in --steps {args.steps}; set --warmup")
    lr = peak * S.make(name, args.steps, **params, **({"warmup": warmup} if warmup else {}))
    return (f"{O.schedule_label(name, params)}, T = {args.steps}, peak LR {peak:g}"
            + (f", warmup {warmup}" if warmup else "")), lr


def _run_from_log(log: Any, path: str, grad: bool) -> Run:
    lr, steps, loss = log.curve()
    branch = int((log.meta.get("lr") or {}).get("branch_step", 0) or 0) if isinstance(log.meta.get("lr"), dict) else 0
    source = f"learning rates: {log.lr_source}" if log.lr_source else ""
    describe = (f"{log.format}, T = {log.T}, {steps.shape[0]} losses ({log.loss_name}) at steps "
                f"{steps[0]}..{steps[-1]}" + (f"; {source}" if source else ""))
    return Run(log.name or os.path.basename(os.path.normpath(path)), lr, steps, loss,
               log.grad_sq() if grad else None, describe, int(steps[0]), branch,
               log.lr_known_steps if log.unfinished else None, log.divergence)


def read_runs(args: argparse.Namespace, paths: Sequence[str], *, grad: bool = False) -> list[Run]:
    """The runs of PATH arguments (any log cdfast.io.read_log reads), with --lr-file or
    --schedule replacing the logged learning rates of a single log."""
    from ..io import LogWarning, read_log

    runs = []
    override_given = bool(getattr(args, "lr_file", None) or getattr(args, "schedule", None))
    if override_given and len(paths) > 1:
        raise CliError("--lr-file/--schedule give one run's learning rates; with several logs, each log must "
                       "carry its own (or fit them one at a time)")
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LogWarning)  # a divergence is printed with the fit (Run.divergence)
            log = read_log(path, loss=getattr(args, "loss", None))
            if override_given:
                label, lr = lr_override(args, log.T)
                log = read_log(path, loss=getattr(args, "loss", None), lr=lr)
        if log.lr is None:
            raise CliError(f"{path!r}: the log records no learning rate and has no config that gives it; "
                           "add --lr-file FILE or --schedule NAME --peak-lr X (--steps T)")
        runs.append(_run_from_log(log, path, grad))
    return runs


def runs_from_fit_args(args: argparse.Namespace) -> list[Run]:
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
        override = lr_override(args, int(steps[-1]))
        if override is None:
            raise CliError("--loss-file needs the run's learning rates: --lr-file FILE or --schedule NAME --peak-lr X "
                           "--steps T")
        label, lr = override
        if steps[-1] > lr.shape[0]:
            raise CliError(f"the loss file logs step {steps[-1]} but the schedule has only {lr.shape[0]} steps")
        return [Run(label, lr, steps, loss, None, f"{os.path.basename(args.loss_file)}: {steps.shape[0]} losses at "
                    f"steps {steps[0]}..{steps[-1]}, T = {lr.shape[0]}", int(steps[0]))]
    if not paths:
        raise CliError("give a training log: cdfast fit PATH [PATH ...] (W&B export, trainer_state.json, TensorBoard, "
                       "Lightning metrics.csv, CSV/Parquet), or --loss-file FILE with --lr-file/--schedule")
    return read_runs(args, paths, grad=args.grad_norm)


def fit_window(runs: Sequence[Run], frac: float, option: str = "--fit-frac") -> list[np.ndarray]:
    """The fitted points of every run: logged steps <= frac * T; refuse a window that
    holds no point, saying why (e.g. a run branched from another's checkpoint)."""
    masks = []
    for r in runs:
        m = r.steps <= frac * (r.lr_known or r.T)  # an unfinished run: a fraction of what it has run
        if m.sum() < 3:
            why = (f"it logs losses from step {r.first_logged} on" + (f" (it was branched at step {r.branch_step} "
                   "from another run's checkpoint)" if r.branch_step else ""))
            raise CliError(f"run {r.name!r}: only {int(m.sum())} logged losses fall at steps <= {frac:g} T = "
                           f"{frac * r.T:g}, because {why}; raise {option} (1 fits every logged point) or fit it "
                           "together with its parent run")
        masks.append(m)
    return masks


def fit(runs: Sequence[Run], *, model: str | None, masks: Sequence[np.ndarray] | None,
        burn_in: int | float | None, robust: bool = False) -> Any:
    """cdfast.fit_loss_curves on the runs (one run: the same as fit_loss_curve)."""
    from ..fit import fit_loss_curves

    kwargs: dict[str, Any] = {"model": model}
    if burn_in is not None:
        kwargs["burn_in"] = burn_in
    if robust:
        kwargs["robust"] = True
    grads = [r.grad_sq for r in runs]
    if any(r.divergence is not None for r in runs):
        kwargs["divergence"] = [r.divergence for r in runs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CurveFit.warnings holds them; printed below the fit
        return fit_loss_curves([r.lr for r in runs], [r.steps for r in runs], [r.loss for r in runs],
                               fit_steps=None if masks is None else list(masks),
                               grad_sq=None if all(g is None for g in grads) else grads, **kwargs)


def print_fit(fit: Any, runs: Sequence[Run], frac: float) -> None:
    n_fit = int(fit.fitted.sum())
    burned = fit.burned if getattr(fit, "burned", None) is not None else np.zeros(fit.fitted.shape, bool)
    print(f"model {fit.model.name}: " + "   ".join(f"{k} = {v:.6g}" for k, v in fit.predicting_params.items()))
    window = "every logged step" if frac >= 1 else f"steps <= {frac:g} T"
    print(f"  fitted on {n_fit} of {fit.steps.shape[0]} logged losses ({window}"
          + (f"; {int(burned.sum())} in the burn-in left out" if burned.any() else "") + ")")
    held = "-" if not np.isfinite(fit.r2_holdout) else f"{fit.r2_holdout:.5f}"
    print(f"  R^2 (fitted points) = {fit.r2:.5f}   R^2 (held out, predicted) = {held}")
    for k, r in enumerate(runs):
        prefix = f"  {r.name}: " if len(runs) > 1 else "  "
        at_last = float(fit.prediction[fit.run == k][-1])
        text = f"{prefix}loss at the last logged step {r.steps[-1]}: model {at_last:.6g}, logged {r.loss[-1]:.6g}"
        if r.divergence is not None:  # a diverged run has no final loss to predict
            print(f"{text}; the run diverged at step {r.divergence[0]} (loss {r.divergence[1]}): no final loss")
            continue
        if r.lr_known is not None:  # never a "final loss" on a schedule held at its last logged LR
            print(text)
            print(f"  {r.name}: the run looks unfinished: its last logged LR is at step {r.lr_known} of T = {r.T}; "
                  "to forecast its end, give the rest of its schedule: cdfast forecast PATH --schedule NAME "
                  "--steps T (or --lr-file FILE)")
            continue
        if r.steps[-1] != r.T:
            final = float(fit.predict(r.lr, at=[r.T])[-1])
            text += (f"; at step T = {r.T}: model {final:.6g}" if np.isfinite(final) or r.lr[-1] != 0 else
                     f"; at step T = {r.T}: inf (the final LR is 0, where the convex bound is infinite)")
        print(text)
    for w in getattr(fit, "warnings", ()) or ():
        print(f"  warning: {w}")
