"""Writing a learning-rate schedule for a training script.

:func:`write_schedule` writes ``eta_1 .. eta_T`` (``lr[i] = eta_{i+1}``, the LR of update
``i + 1``) in the format its extension names:

=========  ==================================================================================
``.csv``   columns ``step,lr``, one row per update ``step = 1 .. T`` (``lr`` = eta_step);
           ``cdfast --lr-file`` and :func:`cdfast.io.read_lr_file` read it back
``.npy``   the float64 array of the T learning rates
``.json``  the form ``torch.optim.lr_scheduler.LambdaLR`` wants: ``peak_lr`` (the optimizer's
           ``lr``) and ``multipliers = lr / peak_lr``, with ``T``
``.py``    the same as a Python module: ``PEAK_LR``, ``T``, ``MULTIPLIERS`` and
           ``lr_lambda(step)``, importable without cdfast or NumPy
=========  ==================================================================================

LambdaLR multiplies the optimizer's ``lr`` by ``lr_lambda(i)`` where ``i`` counts the
``scheduler.step()`` calls so far (0 before the first), so update ``i + 1`` uses
``multipliers[i]``; past T the last multiplier is kept::

    import json, torch
    spec = json.load(open("schedule.json"))
    mult, T = spec["multipliers"], spec["T"]
    opt = torch.optim.AdamW(model.parameters(), lr=spec["peak_lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: mult[min(i, T - 1)])
    # ... opt.step(); sched.step()  once per update

Every value is written with Python's shortest round-trip representation, so the file
holds exactly the float64 learning rates (and multipliers).  Writes are atomic: a
temporary file beside the target, renamed into place.
"""

from __future__ import annotations

import json
import os
from typing import IO, Any

import numpy as np
from numpy.typing import ArrayLike

from .. import _files
from .. import _validate as V

__all__ = ["SCHEDULE_FORMATS", "write_schedule", "lambdalr_form"]

#: extensions :func:`write_schedule` writes
SCHEDULE_FORMATS = (".csv", ".npy", ".json", ".py")


def lambdalr_form(lr: ArrayLike) -> tuple[float, np.ndarray]:
    """``(peak_lr, multipliers)`` with ``peak_lr = max(lr)`` and ``multipliers = lr / peak_lr``
    (LambdaLR's base LR and factors; every multiplier is in [0, 1])."""
    x = V.as_vector(lr, "lr")
    V.check_values(x, "lr")
    peak = float(x.max())
    if peak <= 0.0:
        raise ValueError("lr is all zeros; a schedule needs a positive learning rate")
    return peak, x / peak


def _csv(fh: IO[str], x: np.ndarray) -> None:
    fh.write("step,lr\n")
    fh.writelines(f"{t},{v!r}\n" for t, v in enumerate(x.tolist(), start=1))


def _json(fh: IO[str], x: np.ndarray, source: str) -> None:
    peak, mult = lambdalr_form(x)
    spec = {
        "format": "cdfast LambdaLR schedule",
        "source": source,
        "T": int(x.shape[0]),
        "peak_lr": peak,
        "usage": "optimizer lr = peak_lr; LambdaLR(optimizer, lambda i: multipliers[min(i, T - 1)]); "
                 "update i + 1 uses peak_lr * multipliers[i]",
        "multipliers": mult.tolist(),
    }
    json.dump(spec, fh, indent=None, separators=(",", ":"))
    fh.write("\n")


def _python(fh: IO[str], x: np.ndarray, source: str, module: str) -> None:
    peak, mult = lambdalr_form(x)
    T = int(x.shape[0])
    name = module if module.isidentifier() else "schedule"
    fh.write(
        '"""Learning-rate schedule written by cdfast (SOURCE says from what).\n\n'
        f"T = {T} updates; update t (1-based) uses the learning rate PEAK_LR * MULTIPLIERS[t - 1]\n"
        "(the last multiplier after T).  With PyTorch:\n\n"
        f"    from {name} import PEAK_LR, lr_lambda\n"
        "    optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK_LR)\n"
        "    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)\n"
        "    # optimizer.step(); scheduler.step()  once per update\n"
        '"""\n\n'
        f"SOURCE = {source!r}\nPEAK_LR = {peak!r}\nT = {T}\n\nMULTIPLIERS = (\n"
    )
    fh.writelines(f"    {v!r},\n" for v in mult.tolist())
    fh.write(
        ")\n\n\n"
        "def lr_lambda(step: int) -> float:\n"
        '    """LambdaLR\'s factor after ``step`` scheduler steps: the multiplier of update ``step + 1``."""\n'
        "    return MULTIPLIERS[min(step, T - 1)]\n"
    )


def write_schedule(path: str | os.PathLike, lr: ArrayLike, *, source: str = "") -> None:
    """Write the learning rates ``lr`` (``lr[i] = eta_{i+1}``) to ``path``, atomically.

    Parameters
    ----------
    path : str or PathLike
        Ends in ``.csv`` (``step,lr`` per update), ``.npy`` (float64 array), ``.json`` or
        ``.py`` (the ``LambdaLR`` form: peak LR and multipliers; see the module docstring).
    lr : array_like, shape (T,)
        Finite, non-negative learning rates with at least one positive.
    source : str
        One line saying where the schedule comes from (written into ``.json`` and ``.py``).

    Raises
    ------
    ValueError
        An unknown extension, or ``lr`` not finite and non-negative.
    """
    p = os.fspath(path)
    ext = os.path.splitext(p)[1].lower()
    if ext not in SCHEDULE_FORMATS:
        raise ValueError(f"schedule file {p!r} must end in {', '.join(SCHEDULE_FORMATS)}")
    x = V.as_vector(lr, "lr")
    V.check_values(x, "lr")
    if ext == ".npy":
        _files.atomic_write(p, lambda fh: np.save(fh, x, allow_pickle=False), "wb")
        return
    if ext in (".json", ".py"):
        lambdalr_form(x)  # fail before creating the file
    writer: dict[str, Any] = {
        ".csv": lambda fh: _csv(fh, x),
        ".json": lambda fh: _json(fh, x, source),
        ".py": lambda fh: _python(fh, x, source, os.path.splitext(os.path.basename(p))[0]),
    }
    _files.atomic_write(p, writer[ext], "w")
