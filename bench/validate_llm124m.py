"""Generalization 1 on real runs: the 17 GPT-style 124M runs of fabian-sp/lr-scheduling.

What is fitted: the validation loss logged every 200 steps (``history.val``), the loss of
``w_t`` after ``t`` updates on the same validation batches each time.  The training loss
is noisier (one batch) and is the loss of the batch used for update ``t``, i.e. of
``w_{t-1}``.  The trainer evaluates the last step ``T`` on the *full* validation set
(``summary["final-val/loss"]``, about 1% higher than the subset loss), so the "final
loss" scored here is the last logged subset loss (step ``T - 200``), predicted at that
step.

Two protocols, each scored by the relative error of the predicted final loss:
* half split: fit steps ``<= T/2`` of a run, predict its second half (R^2 on the second
  half is computed on second-half points only, against their own mean);
* cross-run: leave one run out, fit the others jointly, predict the left-out run.
Runs that diverged (``WandbRun.diverged``: last loss > 1.2 x best) are excluded from fits
and scores, and listed.

Variants are principled options of ``cdfast.fit_loss_curves``: a burn-in (steps, or a
fraction of T), the Huber log-residual fit (``robust``), a fitted peak-LR exponent
(``peak_power="fit"``, since AdamW's step is not eta * gradient), and constants shared
per schedule family (``WandbRun.family``) instead of across all runs.  A variant is chosen
by held-out error only: for each run, the candidate with the smallest root-mean-square
held-out error over the *other* runs (nested leave-one-run-out; RMS rather than median
because the aim also bounds the worst run, and a median choice picks variants with one
large miss); the variant with the smallest RMS over all runs is printed too.

Data: the W&B exports of the public repository fabian-sp/lr-scheduling (MIT licence),
folder ``data/``; ``--data DIR`` points to them (default: ``shared/data/llm124m`` beside
the repository).  Without them the script exits with status 2 and says how to get them.

Run:  python bench/validate_llm124m.py [--data DIR]
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import sys
import time
from dataclasses import dataclass

import numpy as np

import cdfast
from cdfast.fit import r_squared
from cdfast.io import read_wandb_json

DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llm124m"
# the 17 runs: cosine (peak LRs 1e-4 .. 5e-3, T = 25k, 50k), constant after warmup, WSD with 80% cooldown
PATTERNS = ("cos-zero-124m_*.json", "stable-124m_*.json", "ann124-0.8_*lr0.001_*.json")
HALF_BURN_INS = (0, 1000, 2000, 4000, 6000, 0.1, 0.2, 0.3)  # int: steps, float: fraction of T
CROSS_BURN_INS = (0, 2000, 4000, 8000, 12000)


@dataclass(frozen=True)
class Run:
    label: str
    family: str
    lr: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    terms: tuple
    diverged: bool

    @property
    def T(self) -> int:
        return self.lr.shape[0]


def load_runs(data: pathlib.Path = DATA) -> list[Run]:
    """All runs, LR rebuilt from the config, bound terms computed once at the logged steps."""
    runs = []
    for path in sorted(p for pattern in PATTERNS for p in data.glob(pattern)):
        w = read_wandb_json(path)
        steps, loss = w.curve("val", "val_loss")
        lr = w.lr()
        label = f"{w.family:<16s} lr={w.config['lr']:<7g} T={w.T}"
        runs.append(Run(label, w.family, lr, steps, loss, cdfast.bound_curve_terms(lr, at=steps), w.diverged()))
    return runs


def label(v: tuple) -> str:
    burn, robust, *rest = v
    b = f"{burn:g}T" if isinstance(burn, float) else str(burn)
    s = f"b={b}{' huber' if robust else ''}"
    if rest:
        power, group = rest
        s += (" p=fit" if power == "fit" else "") + (" per-family" if group else "")
    return s


# ---------------------------------------------------------------------------
# protocol 1: first half -> second half


def half_split(run: Run, burn, robust: bool):
    """(fit, final-loss relative error, 2nd-half R^2, whole-curve R^2) of one variant."""
    f = cdfast.fit_loss_curves([run.lr], [run.steps], [run.loss], fit_steps=[run.steps <= run.T // 2],
                               robust=robust, terms=[run.terms], burn_in=burn, model="bound")
    second = run.steps > run.T // 2
    err = (f.prediction[-1] - run.loss[-1]) / run.loss[-1]
    return f, err, r_squared(run.loss[second], f.prediction[second]), r_squared(run.loss, f.prediction)


# ---------------------------------------------------------------------------
# protocol 2: leave one run out


def cross_run(runs: list[Run], burn, robust: bool, power, per_family: bool) -> np.ndarray:
    """Relative error of each run's final loss predicted by a joint fit of the others."""
    errs = np.empty(len(runs))
    for i, run in enumerate(runs):
        train = [r for j, r in enumerate(runs) if j != i and (not per_family or r.family == run.family)]
        p = power if len({r.lr.max() for r in train}) > 1 else 1.0  # one peak LR: the exponent is moot
        f = cdfast.fit_loss_curves([r.lr for r in train], [r.steps for r in train], [r.loss for r in train],
                                   terms=[r.terms for r in train], robust=robust, burn_in=burn, peak_power=p,
                                   model="bound")
        errs[i] = (f.predict(run.lr, at=run.steps[-1:])[0] - run.loss[-1]) / run.loss[-1]
    return errs


def nested_choice(errors: np.ndarray) -> np.ndarray:
    """errors[k, i] = |error| of run i with variant k; the variant for run i is chosen on the others."""
    return np.array([int(np.argmin(np.sqrt(np.mean(np.delete(errors, i, axis=1) ** 2, axis=1))))
                     for i in range(errors.shape[1])])


def table(runs: list[Run], variants: list, errs: np.ndarray, title: str) -> tuple[np.ndarray, int]:
    """Print the per-variant summary; return the nested choice per run and the best-RMS variant."""
    a = np.abs(errs)
    rms = np.sqrt(np.mean(a ** 2, axis=1))
    print(f"  {title}: final-loss |error| (%) per variant, median / max / RMS over runs")
    for k, v in enumerate(variants):
        print(f"    {label(v):<34s} {100 * np.median(a[k]):6.2f} {100 * np.max(a[k]):6.2f} {100 * rms[k]:6.2f}")
    return nested_choice(a), int(np.argmin(rms))


def missing_data(data: pathlib.Path) -> str:
    """How to get the runs when they are not at ``data``."""
    return (f"the 124M-model runs are not at {data}. They are the W&B exports of the public repository "
            "fabian-sp/lr-scheduling (MIT licence), folder data/: `git clone --depth 1 "
            "https://github.com/fabian-sp/lr-scheduling` and run `python bench/validate_llm124m.py --data "
            f"lr-scheduling/data` (the {' '.join(PATTERNS)} files are used).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=pathlib.Path, default=DATA,
                        help=f"folder holding the runs' W&B exports (default: {DATA})")
    data = parser.parse_args(argv).data
    if not data.is_dir() or not any(p for pattern in PATTERNS for p in data.glob(pattern)):
        print(f"validate_llm124m: {missing_data(data)}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    allruns = load_runs(data)
    runs = [r for r in allruns if not r.diverged]
    print(f"{len(allruns)} runs loaded in {time.perf_counter() - t0:.2f} s; diverged (excluded from fits and "
          f"scores): {[r.label for r in allruns if r.diverged]}\n")

    print("Protocol 1: fit the first half, predict the second half")
    hv = list(itertools.product(HALF_BURN_INS, (False, True)))
    res = [[half_split(r, *v) for r in runs] for v in hv]
    herr = np.array([[x[1] for x in row] for row in res])
    hpick, hbest = table(runs, hv, herr, "first half -> second half")
    print(f"\n  per run: in-sample R^2 (paper form, whole curve); paper form (first half, plain) and the variant "
          f"chosen on the other runs: 2nd-half R^2, final-loss error")
    for i, r in enumerate(runs):
        whole = cdfast.fit_loss_curves([r.lr], [r.steps], [r.loss], terms=[r.terms], model="bound")
        _, pe, pr2, _ = res[0][i]
        _, ce, cr2, _ = res[hpick[i]][i]
        print(f"    {r.label}  R^2 {whole.r2:.3f} | paper {pr2:8.2f} {100 * pe:+6.2f}% | "
              f"{label(hv[hpick[i]]):<14s} {cr2:8.2f} {100 * ce:+6.2f}%")
    chosen = np.array([herr[hpick[i], i] for i in range(len(runs))])
    r2c = np.array([res[hpick[i]][i][2] for i in range(len(runs))])
    print(f"  => nested choice: median |err| {100 * np.median(np.abs(chosen)):.2f}%, max {100 * np.max(np.abs(chosen)):.2f}%;"
          f" best-RMS variant {label(hv[hbest])}: {100 * np.median(np.abs(herr[hbest])):.2f}% / "
          f"{100 * np.max(np.abs(herr[hbest])):.2f}%; paper form {100 * np.median(np.abs(herr[0])):.2f}% / "
          f"{100 * np.max(np.abs(herr[0])):.2f}%")
    print(f"     2nd-half R^2 >= 0.95 on {int(np.sum(r2c >= 0.95))} of {len(runs)} runs (median {np.median(r2c):.2f})")

    print("\nProtocol 2: cross-run (leave one run out, joint fit of the others' whole curves)")
    cv = list(itertools.product(CROSS_BURN_INS, (False, True), (1.0, "fit"), (False, True)))
    cerr = np.array([cross_run(runs, *v) for v in cv])
    cpick, cbest = table(runs, cv, cerr, "cross-run")
    print("\n  per run: paper form (no burn-in, shared, p=1) and the variant chosen on the other runs")
    for i, r in enumerate(runs):
        print(f"    {r.label}  paper {100 * cerr[0, i]:+7.2f}% | {label(cv[cpick[i]]):<34s} {100 * cerr[cpick[i], i]:+6.2f}%")
    cchosen = np.array([cerr[cpick[i], i] for i in range(len(runs))])
    print(f"  => nested choice: median |err| {100 * np.median(np.abs(cchosen)):.2f}%, max {100 * np.max(np.abs(cchosen)):.2f}%;"
          f" best-RMS variant {label(cv[cbest])}: {100 * np.median(np.abs(cerr[cbest])):.2f}% / "
          f"{100 * np.max(np.abs(cerr[cbest])):.2f}%; paper form {100 * np.median(np.abs(cerr[0])):.2f}% / "
          f"{100 * np.max(np.abs(cerr[0])):.2f}%")
    f = cdfast.fit_loss_curves([r.lr for r in runs], [r.steps for r in runs], [r.loss for r in runs],
                               terms=[r.terms for r in runs], robust=True, burn_in=4000, peak_power="fit",
                               model="bound")
    print(f"  joint fit of all {len(runs)} runs (b=4000 huber p=fit): peak LR power {f.peak_power:.3f}")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
