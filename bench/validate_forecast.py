"""Forecasts of runs in progress, scored on how the runs really ended.

Every real run of shared/data (the W&B exports described in bench/validate_predictions.py)
is cut at 10%, 25%, 50% and 75% of its horizon; :class:`cdfast.Forecaster`, given the
run's whole planned schedule and the losses logged before the cut, forecasts the final
loss.  Two tables:

* validation losses (``val_loss``, every 200 steps) -> the last logged validation loss;
* training losses (``train_loss``, every 50 steps, noisy) -> the final training loss, the
  mean of the last 2% of the run's logged training losses.

Each row: how many runs, how many forecasts were declined (with a reason instead of
numbers), the median and worst relative error of the forecasts made (a decline counts as
a miss at 50% and 75%: the worst is then reported as "declined"), and the coverage of the
90% interval.  ``--calibrate`` also prints the interval constants that give 0.90 coverage
on these runs (how K_DROP, K_SPREAD and MODEL_FLOOR in cdfast/forecasting.py were chosen),
cross-validated over groups of runs.  ``--speed`` times ``update`` + ``forecast`` per
logged loss on a 25k-step run logged every 50 steps.

Run:  python bench/validate_forecast.py [--data DIR] [--every K] [--calibrate] [--speed] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
import warnings

import numpy as np

import cdfast

from cdfast.io import read_log

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
CUTS = (0.10, 0.25, 0.50, 0.75)
DIVERGED = 1.2
GOALS = {  # the goals: cut -> (median %, worst %, max declined share)
    "val": {0.25: (1.0, 4.0, 0.2), 0.50: (0.25, 2.5, 0.0)},
    "train": {0.25: (None, 10.0, None), 0.50: (1.5, 5.0, 0.0)},
}


def runs(data: pathlib.Path, kind: str, every: int):
    paths = sorted(data.rglob("*.json"))[::every]
    for path in paths:
        try:
            log = read_log(path, loss="val_loss" if kind == "val" else "train_loss")
        except (ValueError, KeyError):
            continue
        if log.lr is None or log.loss.size < 8:
            continue
        s, y = log.steps, log.loss
        if s[0] > 0.1 * log.T or s[-1] < 0.98 * log.T:  # branched (no start) or unfinished logs
            continue
        if not np.all(np.isfinite(y)) or y[-1] > DIVERGED * y.min():
            continue
        if kind == "val":
            target = float(y[-1])
        else:
            n = max(1, int(round(0.02 * y.size)))
            target = float(np.mean(y[-n:]))
        yield path.stem, log.lr, s, y, target, log.T


def score(data: pathlib.Path, kind: str, every: int) -> list[dict]:
    rows = []
    for name, lr, s, y, target, T in runs(data, kind, every):
        for cut in CUTS:
            k = s <= cut * T
            fc = cdfast.Forecaster(lr, noisy=(kind == "train"))
            fc.update(s[k], y[k])
            f = fc.forecast()
            row = dict(run=name, kind=kind, cut=cut, T=T, target=target, ok=f.ok, reason=f.reason)
            if f.ok:
                row.update(pred=f.loss, low=f.low, high=f.high, err=f.loss / target - 1.0,
                           covered=bool(f.low <= target <= f.high), **_features(fc, f))
            rows.append(row)
    return rows


def _features(fc, f) -> dict:
    """What the interval is built from (recomputed here from the forecast's own pieces)."""
    return dict(drop=f.drop, spread=f.spread, noise_T=f.noise_T, noise=f.noise)


def table(rows: list[dict], kind: str, markdown: bool) -> None:
    head = ["cut", "runs", "declined", "median %", "worst %", "90% coverage", "goal (median / worst)"]
    lines = []
    for cut in CUTS:
        sel = [r for r in rows if r["kind"] == kind and r["cut"] == cut]
        if not sel:
            continue
        made = [r for r in sel if r["ok"]]
        e = 100 * np.abs([r["err"] for r in made]) if made else np.array([np.nan])
        declined = len(sel) - len(made)
        worst = f"{np.max(e):.2f}" if made else "-"
        if declined and cut >= 0.5:
            worst += " (+declined)"
        goal = GOALS[kind].get(cut)
        g = "-" if goal is None else f"{goal[0] if goal[0] is not None else '-'} / {goal[1]}"
        cov = np.mean([r["covered"] for r in made]) if made else np.nan
        lines.append([f"{int(100 * cut)}%", str(len(sel)), str(declined), f"{np.median(e):.3f}", worst,
                      f"{cov:.2f}", g])
    title = ("validation loss -> last validation loss" if kind == "val"
             else "training loss (noisy) -> mean of the last 2% of training losses")
    print(f"\n{title}")
    if markdown:
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for ln in lines:
            print("| " + " | ".join(ln) + " |")
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *lines)]
        for ln in [head, *lines]:
            print("  ".join(x.rjust(w) for x, w in zip(ln, widths)))
    worst = sorted((r for r in rows if r["kind"] == kind and r["ok"]), key=lambda r: -abs(r["err"]))[:3]
    for r in worst:
        print(f"  worst: {100 * r['err']:+.2f}% at {int(100 * r['cut'])}% [{r['low']:.4f}, {r['high']:.4f}] "
              f"target {r['target']:.4f}  {r['run'][:80]}")
    reasons = {}
    for r in rows:
        if r["kind"] == kind and not r["ok"]:
            key = r["reason"].split(":")[0]
            reasons[(int(100 * r["cut"]), key)] = reasons.get((int(100 * r["cut"]), key), 0) + 1
    for (c, why), n in sorted(reasons.items()):
        print(f"  declined at {c}%: {n} x {why}")


def calibrate(rows: list[dict]) -> None:
    """The interval constants that bring 90% coverage closest to 0.90 at every cut and for both
    kinds of loss, chosen on every second run and scored on the others (and then on all)."""
    made = [r for r in rows if r["ok"]]
    names = sorted({r["run"] for r in made})
    half_a = {n for i, n in enumerate(names) if i % 2 == 0}

    def coverage(sel, k_drop, floor, k_noise):
        out = {}
        for r in sel:
            h = math.sqrt((k_drop * r["drop"]) ** 2 + (r["spread"]) ** 2 + floor ** 2 + r["noise_T"] ** 2
                          + (k_noise * r["noise"]) ** 2)
            out.setdefault((r["kind"], r["cut"]), []).append(abs(r["err"]) <= h * (1 + abs(r["err"])))
        return {k: float(np.mean(v)) for k, v in out.items()}

    def loss(cov):
        return max(abs(c - 0.91) for c in cov.values())

    grid = [(kd, fl, kn) for kd in np.arange(0.10, 1.21, 0.05) for fl in (0.001, 0.002, 0.003, 0.004, 0.006, 0.008, 0.01)
            for kn in np.arange(0.0, 1.01, 0.1)]
    train = [r for r in made if r["run"] in half_a]
    test = [r for r in made if r["run"] not in half_a]
    best = min(grid, key=lambda g: loss(coverage(train, *g)))
    print(f"\ncalibration (chosen on half of the runs, {len(train)} forecasts): K_DROP = {best[0]:.2f}, "
          f"MODEL_FLOOR = {best[1]:.3f}, K_NOISE = {best[2]:.1f}")
    for name, sel in (("chosen half", train), ("other half", test), ("all", made)):
        cov = coverage(sel, *best)
        print(f"  coverage on the {name}: " + ", ".join(f"{k} {int(100 * c)}%: {v:.2f}" for (k, c), v in sorted(cov.items())))


def speed(data: pathlib.Path) -> None:
    """Median milliseconds per update + forecast on a 25k-step run's training losses (every 50 steps)."""
    path = next(p for p in sorted(data.rglob("*iter25000*.json")) if "cos-zero-124m" in p.name)
    log = read_log(path, loss="train_loss")
    fc = cdfast.Forecaster(log.lr, noisy=True)
    times, restarts = [], 0
    for s, y in zip(log.steps, log.loss):
        t0 = time.perf_counter()
        fc.update(s, y)
        fc.forecast()
        times.append(time.perf_counter() - t0)
    t = 1000 * np.array(times)
    print(f"\nupdate + forecast, {len(t)} training losses of a {log.T}-step run: median {np.median(t):.1f} ms, "
          f"90th percentile {np.quantile(t, 0.9):.1f} ms, max {t.max():.1f} ms, total {t.sum() / 1000:.1f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=pathlib.Path, default=DATA)
    ap.add_argument("--every", type=int, default=1, help="use every K-th run (quicker, for development)")
    ap.add_argument("--kinds", default="val,train")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--dump", type=pathlib.Path, help="write every forecast as JSON lines (for calibration)")
    ap.add_argument("--calibrate", action="store_true", help="choose the interval constants on half the runs")
    ap.add_argument("--load", type=pathlib.Path, help="calibrate from a --dump file instead of forecasting again")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"validate_forecast: no data at {args.data}; pass --data DIR (the W&B exports of the public "
              "repository fabian-sp/lr-scheduling, folder data/)", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")
    if args.load:
        calibrate([json.loads(line) for line in open(args.load)])
        return 0
    rows = []
    for kind in args.kinds.split(","):
        t0 = time.perf_counter()
        got = score(args.data, kind, args.every)
        rows += got
        table(got, kind, args.markdown)
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    if args.dump:
        with open(args.dump, "w") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    if args.calibrate:
        calibrate(rows)
    if args.speed:
        speed(args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
