"""``cdfast sweep``: bounds for schedule families x parameters x horizons x peak LRs, to CSV/Parquet."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..schedules import _spec_value
from . import _options as O
from ._options import CliError
from ._output import check_out, print_table


def _sweep_schedule(spec: str) -> tuple[str, dict[str, list[Any]]]:
    """``"wsd:decay_frac=0.1|0.2,decay=sqrt"`` -> ``("wsd", {"decay_frac": [0.1, 0.2], "decay": ["sqrt"]})``."""
    name, params = O.parse_schedule(spec)
    return name, {k: [_spec_value(v) for v in str(val).split("|")] if isinstance(val, str) else [val]
                  for k, val in params.items()}


def _peak_lrs(text: str) -> np.ndarray:
    """``1e-4,3e-4`` (a list) or ``1e-4:1e-2:9`` (9 values, log-spaced)."""
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise argparse.ArgumentTypeError(f"{text!r}: a log grid is START:STOP:COUNT, e.g. 1e-4:1e-2:9")
        lo, hi, count = O.positive(parts[0]), O.positive(parts[1]), O.count(parts[2])
        return np.geomspace(lo, hi, count)
    return np.array([O.positive(v) for v in text.split(",") if v.strip()])


def add_parser(sub) -> None:
    w = sub.add_parser("sweep", help="bounds for schedule families x parameters x horizons x peak LRs, to CSV/Parquet",
                       description="One row per schedule, horizon and peak LR: the bound of eq. (2.4), the optimal "
                       "peak LR and bound, and the qualifying exam (Condition 2.5).  Parameter values are separated "
                       "by |, e.g. --schedule 'wsd:decay_frac=0.1|0.2|0.3,decay=linear|sqrt'.")
    w.add_argument("--schedule", action="append", required=True, metavar="NAME[:k=v1|v2,...]",
                   help="schedule family and parameter values (repeat for more families)")
    w.add_argument("--steps", "-T", type=O.step_list, required=True, metavar="T1,T2,...", help="horizons")
    w.add_argument("--peak-lr", type=_peak_lrs, default=None, metavar="X1,X2|START:STOP:N",
                   help="peak LRs (a list, or N log-spaced values); default: only the optimal one")
    O.add_constants(w)
    w.add_argument("--no-exam", action="store_true", help="skip the qualifying-exam column")
    w.add_argument("--chunk-size", type=O.steps, default=1 << 22, metavar="N",
                   help="float64 values per chunk of schedules (the memory bound; default 4Mi)")
    w.add_argument("--backend", default=None, choices=("auto", "numba", "c"))
    w.add_argument("--scheduler", metavar="ADDRESS", help="run on a dask.distributed scheduler, e.g. tcp://host:8786")
    w.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    w.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    w.add_argument("--top", type=O.steps, default=10, help="rows printed (best optimal bounds; default 10)")
    w.add_argument("--out", metavar="FILE.csv|FILE.parquet", help="write the whole table")
    w.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..sweep import sweep, write_table

    if args.out is not None and not args.out.lower().endswith((".csv", ".parquet")):
        raise CliError(f"--out {args.out!r} must end in .csv or .parquet")
    check_out(args.out, (".csv", ".parquet"), "--out")
    schedules = [_sweep_schedule(spec) for spec in args.schedule]
    client = None
    if args.scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            raise ImportError("--scheduler needs dask: python -m pip install 'cdfast[dask]'") from None
        client = Client(args.scheduler)
    try:
        table = sweep(schedules, args.steps, args.peak_lr, D=args.D, G=args.G, L_star=args.L_star,
                      exam=not args.no_exam, chunk_size=args.chunk_size, backend=args.backend, client=client,
                      progress=None if args.progress is None else args.progress)
    finally:
        if client is not None:
            client.close()
    best = np.argsort(table["optimal_bound"], kind="stable")
    seen: list[int] = []
    for i in best:  # the best schedules at their optimal peak LR, one row each
        if not any(table["schedule"][j] == table["schedule"][i] and table["T"][j] == table["T"][i] for j in seen):
            seen.append(int(i))
        if len(seen) == args.top:
            break
    cols = ["schedule", "T", "optimal_peak_lr", "optimal_bound"] + (["qualified"] if not args.no_exam else [])
    print_table(cols, [[table[c][i].item() for c in cols] for i in seen],
                title=f"cdfast sweep: {len(table)} rows ({len(set(table['schedule']))} schedules x "
                      f"{len(args.steps)} horizons); best {len(seen)} by optimal bound")
    if args.out:
        write_table(table, args.out)
        print(f"wrote {args.out}")
    return 0
