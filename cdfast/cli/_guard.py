"""Inputs and outputs checked before any work; a closed stdout; SIGTERM.

* :func:`check_paths` refuses missing inputs, folders given as files, and outputs that
  would replace an input (also through links) or each other;
* :class:`QuietPipe` keeps a command running to the end when its stdout reader has gone
  (``cdfast ... | head -1``);
* :func:`on_sigterm` removes the temporary files and ends the command with status 143.
"""

from __future__ import annotations

import argparse
import io
import os
from typing import Any, Sequence

from .. import _files
from ._options import CliError

# options naming files read (files only) and logs read (a file or a folder)
INPUT_FILES = {"lr_file": "--lr-file", "loss_file": "--loss-file", "wandb": "--wandb",
               "predict_lr_file": "--predict-lr-file"}
INPUT_LOGS = {"paths": "PATH", "log": "LOG"}
OUTPUTS = {"out": "--out", "plot": "--plot", "torch": "--torch"}


def _given(args: argparse.Namespace, attr: str) -> list[str]:
    v = getattr(args, attr, None)
    if v is None:
        return []
    return [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]


def check_paths(args: argparse.Namespace, extra_inputs: Sequence[str] = ()) -> None:
    """Refuse missing inputs, folders given as files, and outputs that would replace an
    input (the same file, also through symbolic or hard links) or each other."""
    inputs: list[str] = list(extra_inputs)
    for attr, option in INPUT_FILES.items():
        for path in _given(args, attr):
            if os.path.isdir(path):
                raise CliError(f"{option} {path!r} is a directory; give a file")
            if not os.path.exists(path):
                raise CliError(f"{option} {path!r} does not exist")
            inputs.append(path)
    for attr, option in INPUT_LOGS.items():
        for path in _given(args, attr):
            if not os.path.exists(path):
                raise CliError(f"{option} {path!r} does not exist")
            inputs.append(path)
    seen: dict[str, str] = {}
    for attr, option in OUTPUTS.items():
        for path in _given(args, attr):
            if os.path.isdir(path):
                raise CliError(f"{option} {path!r} is a directory; give a file name")
            clash = _files.clashes(path, inputs)
            if clash is not None:
                how = "" if os.path.abspath(clash) == os.path.abspath(path) else " (through a link)"
                raise CliError(f"{option} {path!r} is the input {clash!r}{how}; writing it would replace your "
                               "data: choose another output file")
            real = os.path.realpath(path)
            if real in seen:
                raise CliError(f"{option} {path!r} and {seen[real]} name the same file; give two different outputs")
            seen[real] = option


class QuietPipe:
    """stdout that goes quiet when its reader has gone (``cdfast ... | head -1``): the
    command still runs to the end and writes its files, without a BrokenPipeError."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()

    def _silence(self) -> None:
        self.broken = True
        try:  # what is still buffered goes to /dev/null, also at interpreter exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Terminated(BaseException):
    """Raised by the SIGTERM handler so that ``finally`` blocks remove temporary files."""


def _terminate(signum: int, frame: Any) -> None:
    _files.remove_temporaries()
    raise Terminated()


def on_sigterm(signum: int, frame: Any) -> None:
    _files.run_or_defer(_terminate, signum, frame)  # never between creating a temporary file and recording it
