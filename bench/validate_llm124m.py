"""Generalization 1 on real runs: the 17 GPT-style 124M runs in ../shared/data/llm124m.

Prints, per run:
* in-sample R^2 of the three-constant fit on the whole validation-loss curve;
* "fit the first half, predict the second half": R^2 on the second half, R^2 of that
  model on the whole curve, and the relative error of the predicted last logged loss,
  for the paper's plain fit and for variants;
* cross-run prediction: a joint fit on all other runs predicts this run's last loss
  (leave one run out).

Variants (all three-constant, the paper's form):
* burn-in ``b``: drop the logged points at steps <= b from the fit (the early transient
  is the least convex part of training);
* ``robust``: Huber loss on log residuals.
The burn-in is *not* chosen on the run being scored: for each run, the candidate with
the smallest median held-out error over the *other* runs is used (nested
leave-one-run-out), so no held-out point of a run influences its own prediction.

Run:  python bench/validate_llm124m.py
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

import cdfast
from cdfast.io import read_wandb_json

DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llm124m"
BURN_INS = (0, 500, 1000, 2000, 4000)


def diverged(loss: np.ndarray) -> bool:
    """A run whose last logged loss exceeds its best by 20% did not train (it diverged)."""
    return bool(loss[-1] > 1.2 * loss.min())


def load_runs(data: pathlib.Path = DATA):
    """[(label, lr, steps, loss, terms)] with the bound terms computed once per schedule."""
    runs = []
    for path in sorted(data.glob("*.json")):
        run = read_wandb_json(path)
        steps, loss = run.curve("val", "val_loss")
        lr = run.lr()
        c = run.config
        label = f"{path.name.split('_')[0]:<14s} {c['scheduler']:>3s} lr={c['lr']:<7g} T={run.T}"
        label += " DIVERGED" if diverged(loss) else ""
        runs.append((label, lr, steps, loss, cdfast.bound_curve_terms(lr, at=steps)))
    return runs


def half_split(runs, burn: int, robust: bool):
    """Per run: (fit, last-point relative error, second-half R^2, whole-curve R^2)."""
    out = []
    for _, lr, steps, loss, terms in runs:
        T = lr.shape[0]
        mask = (steps <= T // 2) & (steps > burn)
        f = cdfast.fit_loss_curves([lr], [steps], [loss], fit_steps=[mask], robust=robust, terms=[terms])
        err = (f.prediction[-1] - loss[-1]) / loss[-1]
        out.append((f, err, f.r2_holdout, cdfast.fit.r_squared(loss, f.prediction)))
    return out


def nested_choice(errors: np.ndarray) -> np.ndarray:
    """errors[k, i] = |error| of run i with candidate k; pick k per run from the others."""
    n = errors.shape[1]
    pick = np.empty(n, dtype=int)
    for i in range(n):
        others = np.delete(errors, i, axis=1)
        pick[i] = int(np.argmin(np.median(others, axis=1)))
    return pick


def cross_run(runs, burn: int, robust: bool) -> np.ndarray:
    """Leave one run out: joint fit on the others (steps > burn), predict its last loss."""
    errs = np.empty(len(runs))
    for i in range(len(runs)):
        train = [r for j, r in enumerate(runs) if j != i]
        f = cdfast.fit_loss_curves(
            [r[1] for r in train], [r[2] for r in train], [r[3] for r in train],
            fit_steps=[r[2] > burn for r in train], robust=robust, terms=[r[4] for r in train],
        )
        _, lr, steps, loss, _ = runs[i]
        pred = f.predict(lr, at=steps[-1:])[0]
        errs[i] = (pred - loss[-1]) / loss[-1]
    return errs


def main() -> int:
    if not DATA.is_dir():
        print(f"data not found at {DATA}; nothing to validate")
        return 1
    t0 = time.perf_counter()
    runs = load_runs()
    t_load = time.perf_counter() - t0
    lr, steps, loss, _ = runs[-1][1:]
    t1 = time.perf_counter()
    cdfast.fit_loss_curve(lr, steps, loss)
    t_fit = time.perf_counter() - t1
    print(f"{len(runs)} runs loaded (LR rebuilt, bound terms at logged steps) in {t_load:.2f} s; "
          f"one full fit of a {lr.size}-step run with {steps.size} points: {t_fit * 1e3:.0f} ms\n")

    print("In-sample fit on the whole curve (paper form, plain least squares)")
    for label, lr, steps, loss, terms in runs:
        f = cdfast.fit_loss_curves([lr], [steps], [loss], terms=[terms])
        print(f"  {label}  R^2 = {f.r2:.4f}  L_inf = {f.L_inf:.3f}  D~^2 = {f.D_sq:.3g}  G~^2 = {f.G_sq:.3g}")

    print("\nFirst half -> second half")
    table = {}
    for robust in (False, True):
        for burn in BURN_INS:
            table[(burn, robust)] = half_split(runs, burn, robust)
    keys = list(table)
    header = "  ".join(f"b={b}{'r' if r else ''}" for b, r in keys)
    print(f"  last-loss relative error (%) per variant (b = burn-in steps, r = robust):\n  {'run':<42s}{header}")
    errs = np.array([[res[1] for res in table[k]] for k in keys])  # (variant, run)
    for i, (label, *_) in enumerate(runs):
        print(f"  {label:<42s}" + "".join(f"{100 * e:>+8.2f}" for e in errs[:, i]))
    for name, agg in (("median |err|", np.median), ("max |err|", np.max)):
        print(f"  {name:<42s}" + "".join(f"{100 * v:>8.2f}" for v in agg(np.abs(errs), axis=1)))

    paper = table[(0, False)]
    print("\n  paper form (no burn-in, plain): per run R^2 on 2nd half / R^2 of that model on the whole curve")
    for (label, *_), (f, e, r2h, r2all) in zip(runs, paper):
        print(f"  {label}  fit R^2 = {f.r2:.4f}  2nd-half R^2 = {r2h:8.3f}  whole-curve R^2 = {r2all:.4f}  "
              f"last-loss err = {100 * e:+.2f}%")

    pick = nested_choice(np.abs(errs))
    chosen = np.array([errs[pick[i], i] for i in range(len(runs))])
    print("\n  variant chosen per run by nested leave-one-run-out (never by the run's own held-out points):")
    for i, (label, *_) in enumerate(runs):
        b, r = keys[pick[i]]
        f, e, r2h, r2all = table[keys[pick[i]]][i]
        print(f"  {label}  burn-in {b:>4d}{' robust' if r else '       '}  2nd-half R^2 = {r2h:8.3f}  "
              f"whole-curve R^2 = {r2all:.4f}  last-loss err = {100 * e:+.2f}%")
    print(f"  => median |err| = {100 * np.median(np.abs(chosen)):.2f}%  max |err| = {100 * np.max(np.abs(chosen)):.2f}%  "
          f"(paper form: median {100 * np.median(np.abs(errs[0])):.2f}%, max {100 * np.max(np.abs(errs[0])):.2f}%)")
    r2h = np.array([table[keys[0]][i][2] for i in range(len(runs))])
    print(f"  paper form: 2nd-half R^2 >= 0.95 on {int(np.sum(r2h >= 0.95))} of {len(runs)} runs "
          f"(median {np.median(r2h):.2f})")

    print("\nCross-run prediction (leave one run out, joint fit on the other 16 whole curves)")
    cr = {(b, r): cross_run(runs, b, r) for b in (0, 2000, 4000) for r in (False, True)}
    ck = list(cr)
    cerr = np.array([cr[k] for k in ck])
    print(f"  {'run':<42s}" + "".join(f"  b={b}{'r' if r else ''}" for b, r in ck))
    for i, (label, *_) in enumerate(runs):
        print(f"  {label:<42s}" + "".join(f"{100 * e:>+8.2f}" for e in cerr[:, i]))
    for name, agg in (("median |err|", np.median), ("max |err|", np.max)):
        print(f"  {name:<42s}" + "".join(f"{100 * v:>8.2f}" for v in agg(np.abs(cerr), axis=1)))
    cpick = nested_choice(np.abs(cerr))
    cchosen = np.array([cerr[cpick[i], i] for i in range(len(runs))])
    print(f"  nested choice: median |err| = {100 * np.median(np.abs(cchosen)):.2f}%  "
          f"max |err| = {100 * np.max(np.abs(cchosen)):.2f}%")
    ok = np.array(["DIVERGED" not in r[0] for r in runs])
    print("  without the diverged run (it is also left out of the joint fits):")
    cr2 = {k: cross_run([r for r, o in zip(runs, ok) if o], *k) for k in ck}
    cerr2 = np.array([cr2[k] for k in ck])
    for name, agg in (("median |err|", np.median), ("max |err|", np.max)):
        print(f"  {name:<42s}" + "".join(f"{100 * v:>8.2f}" for v in agg(np.abs(cerr2), axis=1)))
    cpick2 = nested_choice(np.abs(cerr2))
    cchosen2 = np.array([cerr2[cpick2[i], i] for i in range(cerr2.shape[1])])
    print(f"  nested choice: median |err| = {100 * np.median(np.abs(cchosen2)):.2f}%  "
          f"max |err| = {100 * np.max(np.abs(cchosen2)):.2f}%")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
