"""The two-dimensional law (eq. 5.1) on real runs, next to a Chinchilla-style law.

For each data set the runs of the smaller model sizes are fitted and the final losses
of the larger sizes are predicted, by

* ``cdfast.ScalingLaw2D`` (Generalization 4, eq. 5.1): per size a line
  ``L = L_inf(N) + Q(N) / sqrt(tokens)`` through its runs, and ``L_inf``, ``Q`` as power
  laws in ``N`` for the sizes that were not fitted;
* ``cdfast.fit_chinchilla_law``: ``L = E + A / N^alpha + B / D^beta`` (Hoffmann et al.
  2022, Approach 3), fitted to the same runs.

Both laws see exactly the same runs and predict exactly the same held-out runs; the
score is the relative error of each predicted final loss (median and worst over the
held-out runs).  A split "hold out k" fits every size but the k largest.

Data sets:

* SlimPajama and OpenWebText2: the W&B exports of fabian-sp/lr-scheduling whose config
  marks them as one experiment (``wandb_run_prefix`` "ann0.2": Llama-style models of 8
  layers x 384 to 24 layers x 1024, WSD with a 20% linear cooldown, two or three horizons
  per size, one peak LR per size).  N = ``summary["parameters"]``; the final loss is
  ``summary["final-val/loss"]`` (full validation set after the last step); tokens =
  iterations x batch_size x acc_steps x world_size x sequence_length.  The trainer
  (llm-baselines) records its config after dividing the global batch among the
  ``world_size`` processes, so batch_size x acc_steps is one process's share; the
  product is the global batch (102,400 tokens per step; 204,800 for the 24 x 1024
  model, acc_steps 4).
* Chinchilla: the final losses of Hoffmann et al. (2022, Fig. 4) as reconstructed by
  Besiroglu et al. (2024); tokens = FLOP / (6 N).  As in that replication the 5 runs with
  the highest loss (models of 1.7B-6.8B parameters trained on < 1B tokens) are dropped;
  sizes read off the figure within 1e-4 of each other are merged.

Only sizes with at least two distinct horizons are used (both laws), since eq. (5.1)
needs a line per size.  eta_ref: no run follows ``eta_peak = eta_ref / sqrt(T)`` (each
size has one peak LR at every horizon; Chinchilla records none), so every run gets the
same eta_ref label and each size is one (size, eta_ref) cell: its line at its own
peak LR.  ``eta_ref = eta_peak sqrt(T)`` would give every run its own cell and no line.

Data: ``--data DIR`` (default ``shared/data`` beside the repository) holding
``chinchilla_svg_extracted_data.csv`` and the W&B exports (searched recursively).
Without them the script exits with status 2 and says how to get them.

Run:  python bench/validate_scaling.py [--data DIR] [--n-starts K] [--verbose]
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys
from dataclasses import dataclass

import numpy as np

import cdfast

DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHINCHILLA_CSV = "chinchilla_svg_extracted_data.csv"
EXPERIMENT = "ann0.2"  # config["wandb_run_prefix"] of the multi-size WSD experiment
LLM_SETS = (("SlimPajama", "slimpajama"), ("OpenWebText2", "openwebtext2"))
HOLDOUTS = (1, 2, 4)  # plus half of the sizes, when that is another split
DROP_HIGHEST = 5  # Chinchilla runs dropped as outliers, as in Besiroglu et al. (2024)
# Besiroglu et al. (2024), Table 1, their fit to the same 240 runs: (E, A, B, alpha, beta)
EPOCH_FIT = (1.8172, 482.01, 2085.43, 0.3478, 0.3658)


@dataclass(frozen=True)
class Runs:
    """Final losses of one data set: model size, tokens seen, loss and a label per run."""

    name: str
    N: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    labels: tuple[str, ...]

    def sizes(self) -> np.ndarray:
        return np.unique(self.N)

    def subset(self, keep: np.ndarray) -> "Runs":
        return Runs(self.name, self.N[keep], self.tokens[keep], self.loss[keep],
                    tuple(l for l, k in zip(self.labels, keep) if k))


def tokens_per_step(config: dict) -> int:
    """Global batch in tokens: batch_size x acc_steps x world_size x sequence_length."""
    keys = ("batch_size", "acc_steps", "world_size", "sequence_length")
    missing = [k for k in keys if not isinstance(config.get(k), int)]
    if missing:
        raise ValueError(f"the config has no integer {', '.join(missing)}; cannot count tokens")
    return int(np.prod([config[k] for k in keys]))


def read_llm_runs(data: pathlib.Path) -> dict[str, Runs]:
    """The runs of the multi-size experiment, per dataset, read with cdfast.io.read_log."""
    found: dict[str, list] = {key: [] for _, key in LLM_SETS}
    for path in sorted(data.rglob("*.json")):
        log = cdfast.io.read_log(path)
        c = log.config
        if c.get("wandb_run_prefix") != EXPERIMENT or c.get("dataset") not in found:
            continue
        if c.get("scheduler") != "wsd" or c.get("wsd_fract_decay") != 0.2:
            raise ValueError(f"{path.name}: expected WSD with a 20% cooldown, got {c.get('scheduler')} "
                             f"{c.get('wsd_fract_decay')}")
        summary = log.meta["summary"]
        found[c["dataset"]].append((float(summary["parameters"]), float(log.T * tokens_per_step(c)),
                                    float(summary["final-val/loss"]), log.name))
    out = {}
    for title, key in LLM_SETS:
        rows = sorted(found[key])
        if rows:
            N, tok, loss, names = zip(*rows)
            out[title] = Runs(title, np.array(N), np.array(tok), np.array(loss), tuple(names))
    return out


def merge_sizes(N: np.ndarray, rtol: float = 1e-4) -> np.ndarray:
    """Sizes within ``rtol`` of their sorted neighbour replaced by their group's mean."""
    order = np.argsort(N, kind="stable")
    new = np.r_[True, N[order][1:] / N[order][:-1] - 1.0 > rtol]
    label = np.empty(N.size, dtype=np.int64)
    label[order] = np.cumsum(new) - 1
    means = np.bincount(label, weights=N) / np.bincount(label)
    return means[label]


def read_chinchilla(path: pathlib.Path, drop_highest: int = DROP_HIGHEST) -> Runs:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    N = np.array([float(r["Model Size"]) for r in rows])
    C = np.array([float(r["Training FLOP"]) for r in rows])
    L = np.array([float(r["loss"]) for r in rows])
    keep = np.ones(L.size, dtype=bool)
    if drop_highest:
        keep[np.argsort(L, kind="stable")[-drop_highest:]] = False
    N, C, L = N[keep], C[keep], L[keep]
    labels = tuple(f"N={n / 1e9:.3f}B C={c:.3g}" for n, c in zip(N, C))
    return Runs("Chinchilla", merge_sizes(N), C / (6 * N), L, labels)


def with_lines(runs: Runs) -> Runs:
    """Only the sizes with >= 2 distinct horizons (a line in 1/sqrt(tokens) each)."""
    keep = np.zeros(runs.N.size, dtype=bool)
    for n in runs.sizes():
        sel = runs.N == n
        keep |= sel & (np.unique(runs.tokens[sel]).size >= 2)
    return runs.subset(keep)


@dataclass(frozen=True)
class Result:
    runs: str
    holdout: int
    train_sizes: np.ndarray
    test_sizes: np.ndarray
    n_train: int
    n_test: int
    err_2d: np.ndarray
    err_chin: np.ndarray
    err_floor: np.ndarray  # eq. 5.1 with L_inf(N) = E + a N^-p (nan where < 3 sizes are fitted)
    law: cdfast.ScalingLaw2D
    chin: cdfast.ChinchillaFit
    test: Runs
    pred_2d: np.ndarray
    pred_chin: np.ndarray

    @property
    def factor(self) -> float:
        """How far the largest held-out size lies beyond the largest fitted one."""
        return float(self.test_sizes[-1] / self.train_sizes[-1])


def compare(runs: Runs, holdout: int, n_starts: int | None = 64) -> Result:
    """Fit both laws on all but the ``holdout`` largest sizes; predict those sizes' runs."""
    sizes = runs.sizes()
    if not 1 <= holdout <= sizes.size - 2:
        raise ValueError(f"{runs.name}: holding out {holdout} of {sizes.size} sizes leaves fewer than 2 to fit")
    train = runs.N < sizes[-holdout]
    fit, test = runs.subset(train), runs.subset(~train)
    law = cdfast.ScalingLaw2D.fit(fit.N, fit.tokens, np.ones(fit.N.size), fit.loss, n_boot=0)
    chin = cdfast.fit_chinchilla_law(fit.N, fit.tokens, fit.loss, n_starts=n_starts)
    p2d = np.asarray(law.predict_loss(test.N, test.tokens), dtype=np.float64)
    pch = chin.predict(test.N, test.tokens)
    try:
        floor = cdfast.ScalingLaw2D.fit(fit.N, fit.tokens, np.ones(fit.N.size), fit.loss, n_boot=0, L_inf_form="floor")
        pfl = np.asarray(floor.predict_loss(test.N, test.tokens), dtype=np.float64)
    except ValueError:  # fewer than 3 fitted sizes
        pfl = np.full(test.N.size, np.nan)
    return Result(runs.name, holdout, fit.sizes(), test.sizes(), fit.N.size, test.N.size,
                  (p2d - test.loss) / test.loss, (pch - test.loss) / test.loss, (pfl - test.loss) / test.loss,
                  law, chin, test, p2d, pch)


def splits(runs: Runs) -> list[int]:
    n = runs.sizes().size
    return sorted({k for k in (*HOLDOUTS, n // 2) if 1 <= k <= n - 2})


def fmt_size(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def table(results: list[Result]) -> str:
    head = ("| data | fitted sizes | held-out sizes | runs fit / held out | N beyond fit "
            "| eq. 5.1 median / worst | eq. 5.1, L_inf with a floor | Chinchilla law median / worst |")
    rows = [head, "|" + "---|" * 8]
    flagged = False
    for r in results:
        a2, ac = np.abs(r.err_2d), np.abs(r.err_chin)
        mark = " (a)" if r.train_sizes.size < 3 else ""
        flagged |= bool(mark)
        rows.append(
            f"| {r.runs} | {r.train_sizes.size}: {fmt_size(r.train_sizes[0])}-{fmt_size(r.train_sizes[-1])} "
            f"| {r.test_sizes.size}: {fmt_size(r.test_sizes[0])}-{fmt_size(r.test_sizes[-1])} "
            f"| {r.n_train} / {r.n_test} | {r.factor:.2g}x "
            f"| {100 * np.median(a2):.2f}% / {100 * a2.max():.2f}% "
            + (f"| {100 * np.median(np.abs(r.err_floor)):.2f}% / {100 * np.abs(r.err_floor).max():.2f}% "
               if np.isfinite(r.err_floor).all() else "| - ")
            + f"| {100 * np.median(ac):.2f}% / {100 * ac.max():.2f}%{mark} |")
    if flagged:
        rows.append("\n(a) two fitted sizes cannot determine E, A and alpha: fits with the same objective "
                    "predict the held-out sizes differently, so this error is not a property of the law.")
    return "\n".join(rows)


def details(r: Result) -> str:
    out = [f"{r.runs}, hold out {r.holdout}: {r.law.summary().splitlines()[0]}", f"  {r.chin.summary()}"]
    for n, l, q in zip(r.law.sizes, r.law.L_inf, r.law.Q):
        out.append(f"    fitted line N = {fmt_size(n)}: L = {l:.4f} + {q:.4g}/sqrt(tokens)")
    out.append("    held-out run                                 tokens    loss   eq.5.1 (err)     Chinchilla (err)")
    for i in range(r.n_test):
        out.append(f"    {r.test.labels[i][:40]:<40s} {fmt_size(r.test.N[i]):>6s} {r.test.tokens[i]:9.3g} "
                   f"{r.test.loss[i]:6.3f}  {r.pred_2d[i]:6.3f} ({100 * r.err_2d[i]:+6.2f}%)  "
                   f"{r.pred_chin[i]:6.3f} ({100 * r.err_chin[i]:+6.2f}%)")
    return "\n".join(out)


def missing_data(data: pathlib.Path) -> str:
    return (f"validate_scaling: the runs are not at {data}. The W&B exports are the folder data/ of the "
            "public repository fabian-sp/lr-scheduling (MIT licence); the Chinchilla losses are "
            "data/svg_extracted_data.csv of epoch-research/analyzing-chinchilla. Put both in one folder "
            f"(the CSV named {CHINCHILLA_CSV}) and run `python bench/validate_scaling.py --data FOLDER`.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=pathlib.Path, default=DATA,
                        help=f"folder with the W&B exports and {CHINCHILLA_CSV} (default: {DATA})")
    parser.add_argument("--n-starts", type=int, default=64,
                        help="BFGS runs per Chinchilla-law fit from the best-ranked grid points "
                             "(0: every one of the 4500 points, as Hoffmann et al.)")
    parser.add_argument("--verbose", action="store_true", help="print every fitted line and held-out run")
    args = parser.parse_args(argv)
    chin_csv = args.data / CHINCHILLA_CSV
    if not args.data.is_dir() or not chin_csv.is_file():
        print(missing_data(args.data), file=sys.stderr)
        return 2
    n_starts = None if args.n_starts == 0 else args.n_starts

    sets = list(read_llm_runs(args.data).values()) + [read_chinchilla(chin_csv)]
    print("Data sets (sizes with >= 2 distinct horizons):")
    results = []
    for runs in sets:
        used = with_lines(runs)
        horizons = [np.unique(used.tokens[used.N == n]).size for n in used.sizes()]
        print(f"  {runs.name}: {used.N.size} runs, {used.sizes().size} sizes "
              f"{fmt_size(used.sizes()[0])}-{fmt_size(used.sizes()[-1])}, {min(horizons)}-{max(horizons)} "
              f"horizons per size, tokens {used.tokens.min():.3g}-{used.tokens.max():.3g}"
              + (f" ({runs.N.size - used.N.size} runs of single-horizon sizes left out)"
                 if used.N.size < runs.N.size else ""))
        for k in splits(used):
            results.append(compare(used, k, n_starts))

    print("\nFinal loss of the held-out (larger) sizes, |relative error| over their runs:\n")
    print(table(results))
    if args.verbose:
        for r in results:
            print("\n" + details(r))

    chin = read_chinchilla(chin_csv)
    full = cdfast.fit_chinchilla_law(chin.N, chin.tokens, chin.loss, n_starts=n_starts)
    E, A, B, alpha, beta = EPOCH_FIT
    print(f"\nCheck: the Chinchilla law on all {chin.N.size} Chinchilla runs: {full.summary()}")
    print(f"       Besiroglu et al. (2024) on the same runs: E = {E}, A = {A}, B = {B}, "
          f"alpha = {alpha}, beta = {beta}")
    print("The paper's Table 2 (per-size lines in 1/sqrt(tokens)): python bench/chinchilla_table2.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
