"""Argument types and option groups shared by the commands; input errors as :class:`CliError`.

Every argument type raises ``argparse.ArgumentTypeError`` with the fix; :class:`Parser`
turns argparse's errors into one line (``cdfast: error: ...``, status 2).  The option
groups (:func:`add_schedule_options`, :func:`add_constants`) and the readers of their
values (:func:`schedule_from_args`, :func:`read_lr`) are here so that every command spells
them the same way.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

import numpy as np

from .. import schedules as S
from ..io.table import read_lr_file

EXIT_USAGE = 2
EXIT_NOT_QUALIFIED = 1  # cdfast exam: the schedule failed Condition 2.5 (for scripts)


class CliError(Exception):
    """An input problem reported as ``cdfast: error: <message>`` with status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2 (argparse prints usage too)
        raise CliError(f"{message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------------------
# argument types


def number(text: str) -> float:
    try:
        v = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def nonneg(text: str) -> float:
    v = number(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; give a value >= 0")
    return v


def positive(text: str) -> float:
    v = number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return v


def count(text: str, low: int = 1) -> int:
    v = number(text)
    if not v.is_integer() or v < low:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {low} (1e6 and 1_000_000 work)")
    return int(v)


def steps(text: str) -> int:
    return count(text, 1)


def nonneg_int(text: str) -> int:
    return count(text, 0)


def step_list(text: str) -> list[int]:
    return [steps(part) for part in text.split(",") if part.strip()]


def fraction(text: str) -> float:
    v = number(text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must lie in (0, 1]: the fraction of the run's horizon T that is "
                                         "fitted (1 = every logged point)")
    return v


def level(text: str) -> float:
    v = number(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must lie in (0, 1), e.g. 0.9 for a 90% interval")
    return v


def burn_in(text: str) -> int | float:
    """``--burn-in``: a number of steps (>= 1, whole) or a fraction of T (in [0, 1))."""
    v = number(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; give steps (e.g. 2000) or a fraction of T (e.g. 0.05)")
    if v < 1:
        return float(v)
    if not v.is_integer():
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of steps or a fraction of T below 1")
    return int(v)


# ---------------------------------------------------------------------------
# schedules


def parse_schedule(spec: str) -> tuple[str, dict[str, Any]]:
    """``"wsd:decay_frac=0.2,decay=sqrt"`` -> ``("wsd", {"decay_frac": 0.2, "decay": "sqrt"})``."""
    try:
        return S.parse(spec)
    except ValueError as exc:
        raise CliError(str(exc)) from None


schedule_label = S.label


def add_schedule_options(p: argparse.ArgumentParser, *, peak_help: str = "peak learning rate for --schedule "
                         "(default: the bound-optimal one)", steps_help: str = "number of steps for --schedule",
                         warmup_default: int | None = 0, warmup_help: str = "linear warmup steps") -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--schedule", metavar="NAME[:k=v,...]",
                     help=f"built-in schedule ({', '.join(S.FAMILIES)}), e.g. wsd:decay_frac=0.2")
    src.add_argument("--lr-file", metavar="FILE", help="learning rates: .npy, .csv or one value per line")
    p.add_argument("--steps", "-T", type=steps, metavar="T", help=steps_help)
    p.add_argument("--peak-lr", type=positive, default=None, metavar="X", help=peak_help)
    p.add_argument("--warmup", type=nonneg_int, default=warmup_default, metavar="W", help=warmup_help)


def add_constants(p: argparse.ArgumentParser) -> None:
    p.add_argument("--D", type=nonneg, default=1.0, help="distance ||w0 - w*|| (default 1)")
    p.add_argument("--G", type=nonneg, default=1.0, help="gradient bound G (default 1)")
    p.add_argument("--L-star", dest="L_star", type=number, default=0.0, help="optimal loss L* (default 0)")


def model_help() -> str:
    from .. import models

    return (f"loss model: {', '.join(models.MODELS)} (default {models.DEFAULT_MODEL}; 'bound' is the paper's "
            "Generalization 1; see docs/models.md)")


def read_lr(path: str) -> np.ndarray:
    """Learning rates from an LR file (cdfast.io.read_lr_file), with float16 files refused
    where float16 has lost them: it keeps 3 significant digits, rounds values below
    6.1e-5 coarsely and flushes those below 6e-8 to 0."""
    lr = read_lr_file(path)
    if path.lower().endswith(".npy"):
        dtype = np.load(path, mmap_mode="r", allow_pickle=False).dtype
        if dtype.kind == "f" and dtype.itemsize < 4:
            started = np.cumsum(lr > 0) > 0  # zeros before the first positive LR are a warmup from 0
            tiny = np.flatnonzero(started & (lr < float(np.finfo(dtype).tiny)))
            if tiny.size:
                i = int(tiny[-1])
                raise CliError(f"LR file {path!r} stores {dtype.name}, which keeps 3 significant digits, loses "
                               f"precision below {float(np.finfo(dtype).tiny):.2g} and flushes values below 6e-8 to 0 "
                               f"(lr[{i}] is {lr[i]:g} there); save the learning rates as float32 or float64")
    return lr


def check_horizon(T: int, option: str, arrays: float = 3) -> None:
    """Refuse a horizon whose arrays cannot fit in memory, before allocating them."""
    from .._memory import check_fits

    check_fits(T, what=f"{option} {T}", arrays=arrays, fix=f"choose a smaller {option}")


def schedule_from_args(args: argparse.Namespace) -> tuple[str, np.ndarray, bool]:
    """(label, lr or unit-peak shape, is_shape) from --schedule/--lr-file."""
    if args.lr_file:
        if args.steps is not None or args.warmup or args.peak_lr is not None:
            raise CliError("--steps, --warmup and --peak-lr apply to --schedule, not to --lr-file")
        return os.path.basename(args.lr_file), read_lr(args.lr_file), False
    if not args.schedule:
        raise CliError("give a schedule: --schedule NAME --steps T, or --lr-file FILE")
    if args.steps is None:
        raise CliError("--schedule needs --steps T (the horizon, e.g. --steps 1e5)")
    check_horizon(args.steps, "--steps")
    name, params = parse_schedule(args.schedule)
    shape = S.make(name, args.steps, **params, **({"warmup": args.warmup} if args.warmup else {}))
    return schedule_label(name, params), shape, True
