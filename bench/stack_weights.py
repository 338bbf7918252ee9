"""Cross-validated stacking: which weighted combination of models predicts held-out runs best?

Reads the per-prediction scores that ``bench/validate_predictions.py --save FILE`` writes
(every model on the same held-out predictions).  A combination ``sum_k w_k pred_k`` with
``w_k >= 0``, ``sum w_k = 1`` has the relative error ``sum_k w_k e_k`` (``e_k`` each
model's relative error), so every candidate is scored exactly from the saved errors,
without refitting.

The weights of a candidate set of models are learned across runs and scored out of
sample: leave one *setup* out (every prediction of runs of one setup, i.e. data set and
architecture, in any protocol), learn the weights on the rest, score the left-out
predictions.  The learned objective is the mean absolute final-loss error, each real
protocol (A, B, M, C, D) weighing the same.  The table gives, per protocol, the median and
worst error of the cross-validated combination next to each member alone; the weights
learned on all setups are what a default built from the set would use.

Run:  python bench/stack_weights.py FILE [--sets "power-bound sat-bound" "power-bound sat-bound annealing" ...]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys

import numpy as np
from scipy.optimize import minimize

REAL = "ABMCD"
DEFAULT_SETS = [
    "power-bound sat-bound",
    "power-bound sat-bound bound-alpha",
    "power-bound sat-bound annealing",
    "power-bound sat-bound bound-alpha annealing",
    "power-bound sat-bound mpl",
    "power-bound sat-bound annealing mpl",
]


def table(rows: list[dict]) -> tuple[np.ndarray, list[str], list[tuple]]:
    """Errors (predictions x models), model names, and (protocol, setup, task, run) of each prediction."""
    models = sorted({r["model"] for r in rows})
    keyed = collections.defaultdict(dict)
    for r in rows:
        if r["protocol"] in REAL:
            keyed[(r["protocol"], r["setup"], r["task"], r["run"])][r["model"]] = r["final"]
    keys = [k for k, v in keyed.items() if len(v) == len(models)]
    E = np.array([[keyed[k][m] for m in models] for k in keys])
    return E, models, keys


def learn(E: np.ndarray, protocols: np.ndarray) -> np.ndarray:
    """Simplex weights minimising the protocol-balanced mean absolute error (smoothed at 1e-5)."""
    k = E.shape[1]
    per = [protocols == p for p in np.unique(protocols)]

    def obj(z):
        w = np.exp(z - z.max())
        w /= w.sum()
        e = E @ w
        a = np.sqrt(e * e + 1e-10)
        return sum(float(a[m].mean()) for m in per)

    best = None
    for z0 in [np.zeros(k), *np.eye(k) * 3.0]:
        out = minimize(obj, z0, method="Nelder-Mead", options=dict(xatol=1e-6, fatol=1e-10, maxiter=4000))
        if best is None or out.fun < best.fun:
            best = out
    w = np.exp(best.x - best.x.max())
    return w / w.sum()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows")
    ap.add_argument("--sets", nargs="+", default=DEFAULT_SETS)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    rows = json.load(open(args.rows))
    E, models, keys = table(rows)
    prot = np.array([k[0] for k in keys])
    setups = np.array([k[1] for k in keys])
    print(f"{len(keys)} predictions, {len(set(setups))} setups, models: {', '.join(models)}")
    if args.markdown:
        print("| model or combination (final-loss error median / worst %) | " + " | ".join(REAL) + " |")
        print("|---|" + "---|" * len(REAL))
    else:
        print("set".ljust(48) + "".join(f"{p:>14}" for p in REAL))

    def show(name, e):
        cells = []
        for p in REAL:
            a = 100 * np.abs(e[prot == p])
            cells.append(f"{np.median(a):.3f} / {a.max():.3f}" if a.size else "-")
        if args.markdown:
            print(f"| {name.strip()} | " + " | ".join(cells) + " |")
        else:
            print(name.ljust(48) + "".join(f"{c:>16}" for c in cells))

    for m in models:
        show(m, E[:, models.index(m)])
    for s in args.sets:
        names = s.split()
        if any(n not in models for n in names):
            continue
        cols = [models.index(n) for n in names]
        X = E[:, cols]
        cv = np.empty(len(keys))
        for u in np.unique(setups):
            out = setups == u
            w = learn(X[~out], prot[~out])
            cv[out] = X[out] @ w
        show("cross-validated weights: " + " + ".join(names), cv)
        show("   equal weights: " + " + ".join(names), X.mean(axis=1))
        w = learn(X, prot)
        weights = ", ".join(f"{n} {v:.3f}" for n, v in zip(names, w))
        if args.markdown:
            print(f"| (weights learned on all setups: {weights}) |" + " |" * len(REAL))
        else:
            print("   weights on all setups: " + weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
