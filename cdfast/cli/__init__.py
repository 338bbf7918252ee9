"""The ``cdfast`` command line: report, fit, predict, forecast, compare, plan, refine, curve, exam, bench, sweep.

``main(argv) -> int`` parses, runs one subcommand, and returns the exit status.  The
command line only parses arguments, calls the library and prints (docs/cli.md):

* every input error (a bad number, an unknown schedule, a missing file or a folder given
  as a file, a malformed log, NaN, a zero final LR, a horizon too large for memory) ends
  with one line ``cdfast: error: ...`` on stderr and status 2, never a traceback;
* an output that names an input (also through links) is refused before any work, and
  outputs are written atomically, so the user's files are never modified;
* a closed stdout (``| head``) is silenced and the command still writes its files;
  SIGTERM removes the temporary files and exits with status 143;
* ``cdfast exam`` exits with status 1 when the schedule is not qualified.

Layout: one module per command or family of commands, each with ``add_parser(sub)``
(registers its subcommand(s), ``set_defaults(func=...)``) and the function(s) that run
them; :data:`COMMANDS` lists them in the order of ``cdfast --help``.  A new command is a
new module plus one entry in :data:`COMMANDS`.  Shared pieces: :mod:`._options`
(argument types, option groups, :class:`CliError`), :mod:`._output` (tables, files,
figures), :mod:`._guard` (paths checked before any work, closed stdout, SIGTERM),
:mod:`._logs` (training logs read for fit and predict).  Heavy modules (the exam,
fitting, log readers, matplotlib) are imported inside the commands only.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Sequence

from ..reporting import BOUND_SCHEDULES as DEFAULT_SCHEDULES
from . import bench, compare, curve, exam, fit, forecast, plan, predict, report, sweep
from ._guard import Terminated as _Terminated
from ._guard import check_paths
from ._guard import on_sigterm as _on_sigterm
from ._options import EXIT_NOT_QUALIFIED, EXIT_USAGE, CliError, Parser, parse_schedule, schedule_label
from ._output import atomic_write, write_table

__all__ = ["main", "build_parser", "COMMANDS", "CliError", "parse_schedule", "schedule_label", "atomic_write",
           "write_table", "check_paths", "DEFAULT_SCHEDULES", "EXIT_USAGE", "EXIT_NOT_QUALIFIED"]

#: the command modules, in the order of ``cdfast --help`` (plan also registers refine)
COMMANDS = [report, curve, exam, fit, predict, forecast, compare, plan, bench, sweep]


def build_parser() -> Parser:
    from .. import __version__

    p = Parser(prog="cdfast", description="Convex loss bounds for learning-rate schedules "
               "(Bu, Xu, Mao, ICLR 2026; Defazio et al. 2023 Cor. 12).")
    p.add_argument("--version", action="version", version=f"cdfast {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return EXIT_USAGE
        check_paths(args)
        return args.func(args)
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except (CliError, ValueError, TypeError, OSError, ImportError, ArithmeticError) as exc:
        print(f"cdfast: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError as exc:
        print(f"cdfast: error: out of memory{': ' + _one_line(exc) if str(exc) else ''}; "
              "choose a smaller --steps or fewer points", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cdfast: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("cdfast: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    0: done; 1: ``cdfast exam`` found the schedule not qualified; 2: bad input (one line
    on stderr); 130 / 143: interrupted / terminated (SIGTERM), temporary files removed.
    """
    from ._guard import QuietPipe

    stdout = QuietPipe(sys.stdout)
    saved_stdout, sys.stdout = sys.stdout, stdout  # type: ignore[assignment]
    saved_term = None
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
        saved_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(argv)
    finally:
        stdout.flush()
        sys.stdout = saved_stdout
        if saved_term is not None:
            signal.signal(signal.SIGTERM, saved_term)
