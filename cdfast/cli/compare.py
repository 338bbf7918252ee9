"""``cdfast compare``: rank the loss models on training logs (held-out prediction error)."""

from __future__ import annotations

import argparse

from ._output import check_out, write_table


def add_parser(sub) -> None:
    cm = sub.add_parser("compare", help="rank the loss models on training logs (held-out prediction error)",
                        description="Fit every loss model to the logs and rank them by how well they predict "
                        "held-out points (cdfast.compare_models).")
    cm.add_argument("paths", nargs="+", metavar="PATH", help="training logs (any format cdfast.io.read_log reads)")
    cm.add_argument("--loss", metavar="NAME", help="the loss column (default: a validation loss, else the train loss)")
    cm.add_argument("--models", metavar="A,B,...", help="models to compare (default: all)")
    cm.add_argument("--out", metavar="FILE.csv", help="the leaderboard as CSV or JSON")
    cm.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import read_log
    from ..models import compare_models

    check_out(args.out, (".csv", ".json"), "--out")
    logs = [read_log(p, loss=args.loss) for p in args.paths]
    models = None if not args.models else [m.strip() for m in args.models.split(",") if m.strip()]
    board = compare_models(logs, models=models)
    print(board)
    if args.out:
        columns = list(board.rows[0])
        write_table(args.out, columns, [[r[c] for c in columns] for r in board.rows])
        print(f"wrote {args.out}")
    return 0
