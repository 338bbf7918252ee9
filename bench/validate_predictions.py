"""Every loss model on every real run: predictions scored on data the fit did not see.

The runs are the W&B exports of shared/data (LLaMA-style models of 8-24 layers trained
with AdamW on SlimPajama/OpenWebText2 under cosine, WSD and constant schedules, from the
public repository fabian-sp/lr-scheduling, folder data/, MIT licence).  Put that folder
(or shared/data with its llm124m/ and lr-scheduling/ folders) beside the repository, or
pass --data.  Each file is read with :func:`cdfast.io.read_log` (validation loss; the LR
rebuilt from the config and checked against the logged LR).  Runs that diverged (last
loss > 1.2 x best) are left out and listed.

Runs share a *group* when they share the setup: dataset, depth, width, heads, peak LR,
batch size and trainer version (the set of config keys).  Three protocols:

A  within a run: fit the steps <= T/2 of a run (every run logged from the start with at
   least 8 points there), predict the rest; score the last logged loss.
B  horizon transfer: in a group with cosine runs of one floor at several horizons, fit
   the shortest and predict each longer one.
C  schedule transfer: in a group with a constant-LR run and a cosine run decaying to
   (almost) zero, fit those two together and predict every other run of the group
   (WSD cooldowns of every length, branched cooldowns, other horizons and floors).

Scores: the relative error of the predicted last logged loss (median, worst), and the
whole-curve error: the mean relative error over the predicted run's points after 10% of
its horizon (the first 10% is the early transient no model here describes).  Fit time is
the wall time of the fit call (the machine is shared: compare models within one run).
Interval coverage: how often the held-out last loss falls inside ``CurveFit.interval``
(level 0.9), when --intervals is given.  Intervals are skipped for MPL (each of its
refits costs an O(T M) loss-drop sum; ``--intervals`` scores the other models).

Run:  python bench/validate_predictions.py [--models ...] [--protocols ABC] [--markdown]
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np

import cdfast
from cdfast.io import read_log
from cdfast.models import names as model_names

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
DIVERGED = 1.2
CURVE_FROM = 0.1  # whole-curve error over steps > this fraction of T


@dataclass
class Run:
    label: str
    lr: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    T: int
    group: tuple
    kind: str  # "constant", "cosine", "wsd", other scheduler names
    floor: float  # cosine floor as a fraction of the peak
    first: int


def _kind(cfg: dict, lr: np.ndarray) -> tuple[str, float]:
    sched = str(cfg.get("scheduler", "?"))
    floor = float(lr[-1] / lr.max())
    if sched == "cos":
        return "cosine", round(floor, 2)
    if sched == "wsd" and not cfg.get("wsd_fract_decay"):
        return "constant", 1.0
    return sched, floor


def load(data: pathlib.Path) -> tuple[list[Run], list[str]]:
    runs, skipped = [], []
    for path in sorted(data.rglob("*.json")):
        log = read_log(path)
        if log.loss.size == 0 or log.loss[-1] > DIVERGED * log.loss.min():
            skipped.append(f"{path.name} (diverged)")
            continue
        c = log.config
        group = (c.get("dataset"), c.get("n_layer"), c.get("n_embd"), c.get("n_head"), c.get("lr"),
                 c.get("batch_size", 0) * c.get("acc_steps", 1), len(c))
        kind, floor = _kind(c, log.lr)
        runs.append(Run(path.stem, log.lr, log.steps, log.loss, log.T, group, kind, floor, int(log.steps[0])))
    return runs, skipped


@dataclass
class Task:
    protocol: str
    train: list[tuple[Run, np.ndarray]]
    test: list[Run]


def tasks(runs: list[Run], protocols: str) -> list[Task]:
    out = []
    groups = collections.defaultdict(list)
    for r in runs:
        groups[r.group].append(r)
    if "A" in protocols:
        for r in runs:
            half = r.steps <= r.T // 2
            if r.first <= r.T // 10 and half.sum() >= 8 and (~half).any():
                out.append(Task("A", [(r, half)], [r]))
    if "B" in protocols:
        for g in groups.values():
            fams = collections.defaultdict(list)
            for r in g:
                if r.kind == "cosine" and r.first <= r.T // 10:
                    fams[r.floor].append(r)
            for fam in fams.values():
                fam.sort(key=lambda r: r.T)
                longer = [r for r in fam if r.T > fam[0].T]
                if longer:
                    out.append(Task("B", [(fam[0], np.ones(fam[0].steps.size, bool))], longer))
    if "C" in protocols:
        for g in groups.values():
            const = [r for r in g if r.kind == "constant" and r.first <= r.T // 10]
            cos = [r for r in g if r.kind == "cosine" and r.floor < 0.01 and r.first <= r.T // 10]
            if const and cos:
                c0, c1 = max(const, key=lambda r: r.T), max(cos, key=lambda r: r.T)
                rest = [r for r in g if r is not c0 and r is not c1]
                if rest:
                    out.append(Task("C", [(c0, np.ones(c0.steps.size, bool)), (c1, np.ones(c1.steps.size, bool))], rest))
    return out


def evaluate(task: Task, model: str, intervals: bool, n_boot: int = 100) -> list[dict]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cdfast.FitWarning)
        fit = cdfast.fit_loss_curves([r.lr for r, _ in task.train], [r.steps for r, _ in task.train],
                                     [r.loss for r, _ in task.train], model=model,
                                     fit_steps=[m for _, m in task.train])
    dt = time.perf_counter() - t0
    rows = []
    for r in task.test:
        score = r.steps > r.T // 2 if task.protocol == "A" else r.steps > CURVE_FROM * r.T
        pred = fit.predict(r.lr, at=r.steps)
        rel = pred / r.loss - 1.0
        row = dict(protocol=task.protocol, model=model, run=r.label, final=float(rel[-1]),
                   curve=float(np.mean(np.abs(rel[score]))), time=dt)
        if intervals and model != "mpl":
            lo, hi = fit.interval(r.lr, at=r.steps[-1:], n_boot=n_boot)
            row["covered"] = bool(lo[0] <= r.loss[-1] <= hi[0])
        rows.append(row)
    return rows


def summarise(rows: list[dict], models: list[str], protocols: str, markdown: bool) -> None:
    head = ["protocol", "model", "n", "final median %", "final worst %", "curve mean %", "fit time ms"]
    if any("covered" in r for r in rows):
        head.append("90% interval coverage")
    table = []
    for p in protocols:
        for m in models:
            sel = [r for r in rows if r["protocol"] == p and r["model"] == m]
            if not sel:
                continue
            fe = 100 * np.abs([r["final"] for r in sel])
            ce = 100 * np.array([r["curve"] for r in sel])
            tm = 1000 * np.median([r["time"] for r in sel])
            line = [p, m, str(len(sel)), f"{np.median(fe):.3f}", f"{fe.max():.3f}", f"{ce.mean():.3f}", f"{tm:.0f}"]
            if len(head) > len(line):
                line.append(f"{np.mean([r['covered'] for r in sel]):.2f}" if "covered" in sel[0] else "-")
            table.append(line)
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for line in table:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *table)]
        for line in [head, *table]:
            print("  ".join(x.rjust(w) for x, w in zip(line, widths)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=pathlib.Path, default=DATA)
    ap.add_argument("--models", nargs="+", default=list(model_names()))
    ap.add_argument("--protocols", default="ABC")
    ap.add_argument("--intervals", action="store_true", help="also score CurveFit.interval coverage (slower)")
    ap.add_argument("--boot", type=int, default=100, help="bootstrap replicates per interval (default 100)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--worst", type=int, default=0, help="list the N worst predictions per model and protocol")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"validate_predictions: no data at {args.data}. Get the W&B exports from the public repository "
              "fabian-sp/lr-scheduling (folder data/, MIT licence) and pass --data DIR.", file=sys.stderr)
        return 2
    runs, skipped = load(args.data)
    todo = tasks(runs, args.protocols)
    print(f"{len(runs)} runs ({len(skipped)} left out: {', '.join(skipped) or 'none'}); "
          + ", ".join(f"{p}: {sum(t.protocol == p for t in todo)} fits, "
                      f"{sum(len(t.test) for t in todo if t.protocol == p)} predictions" for p in args.protocols))
    rows = []
    for m in args.models:
        for t in todo:
            rows += evaluate(t, m, args.intervals, args.boot)
    summarise(rows, args.models, args.protocols, args.markdown)
    if args.worst:
        for p in args.protocols:
            for m in args.models:
                sel = sorted((r for r in rows if r["protocol"] == p and r["model"] == m), key=lambda r: -abs(r["final"]))
                for r in sel[: args.worst]:
                    print(f"  {p} {m}: {100 * r['final']:+.3f}% {r['run'][:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
