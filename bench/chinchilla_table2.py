"""Generalization 3 on the Chinchilla runs: the paper's Table 2.

Groups the 245 runs (Epoch AI's reconstruction of Hoffmann et al. 2022, Fig. 4) by model
size, fits ``loss = L_inf + k / sqrt(tokens)`` with ``tokens = FLOP / (6 N)`` per size, and
prints every size with at least 3 horizons.

Run:  python bench/chinchilla_table2.py
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys

import numpy as np

import cdfast

DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinchilla_svg_extracted_data.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generalization 3 on the Chinchilla runs (the paper's Table 2)")
    parser.add_argument("--data", type=pathlib.Path, default=DATA,
                        help=f"the CSV of final losses (default: {DATA})")
    data = parser.parse_args(argv).data
    if not data.is_file():
        print(f"chinchilla_table2: the Chinchilla final losses are not at {data}. They are the file "
              "data/svg_extracted_data.csv of the public repository epoch-research/analyzing-chinchilla "
              "(Besiroglu et al. 2024): download it and run `python bench/chinchilla_table2.py --data "
              "svg_extracted_data.csv`.", file=sys.stderr)
        return 2
    with data.open() as fh:
        rows = list(csv.DictReader(fh))
    N = np.array([float(r["Model Size"]) for r in rows])
    C = np.array([float(r["Training FLOP"]) for r in rows])
    L = np.array([float(r["loss"]) for r in rows])
    fits = cdfast.fit_horizon_law_by_group(N, C / (6 * N), L)
    print(f"{len(rows)} runs, {len(fits)} model sizes with >= 3 horizons\n")
    print(f"{'size':>9s} {'horizons':>8s} {'slope k':>9s} {'L_inf':>7s} {'R^2':>6s} {'max rel err':>11s}")
    for size, f in fits.items():
        print(f"{size / 1e9:8.3f}B {f.n:8d} {f.k:9.3g} {f.L_inf:7.3f} {f.r2:6.3f} {f.max_rel_error:10.2%}")
    r2 = np.array([f.r2 for f in fits.values()])
    print(f"\nmin R^2 = {r2.min():.3f}, median R^2 = {np.median(r2):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
