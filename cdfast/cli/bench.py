"""``cdfast bench``: speed and agreement of the backends at a few horizons."""

from __future__ import annotations

import argparse

from .. import schedules as S
from ..reporting import backends_for, compare_backends
from . import _options as O
from ._output import print_table


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="speed and agreement of the backends at a few horizons")
    b.add_argument("--steps", "-T", type=O.step_list, default=[10**4, 10**5, 10**6], metavar="T1,T2,...")
    b.add_argument("--schedule", default="cosine", metavar="NAME[:k=v,...]")
    b.add_argument("--repeat", type=O.steps, default=5)
    b.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    backends = backends_for("all")
    name, params = O.parse_schedule(args.schedule)
    columns = ["T"] + [f"{b}_ms" for b in backends] + ["rel_diff"]
    rows = []
    for T in args.steps:
        shape = S.make(name, T, **params)
        _, times, diff = compare_backends(shape, backends, args.repeat)
        rows.append([T] + [1e3 * times[be] for be in backends] + [diff])
    print_table(columns, rows, title=f"bound_terms on {O.schedule_label(name, params)}: best of {args.repeat} "
                                     f"(backends: {', '.join(backends)})")
    if len(backends) < 2:
        print("only one backend is available, so there is nothing to compare against")
    worst = max(r[-1] for r in rows)
    print(f"largest relative difference between backends: {worst:.3g}")
    return 0
