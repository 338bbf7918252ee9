"""The C kernels under AddressSanitizer + UBSan (or valgrind) over the edge cases.

tests/c/memcheck.c calls every kernel with exactly-sized heap buffers: lengths around
the chunk and block sizes, NaN / inf / negative entries at the start, middle and end,
a zero final LR, subnormal, huge and all-zero input, n == 0 and malformed ``at``.
Skips when no C compiler with sanitizers (and no valgrind) is available.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "csrc" / "cdfast.c", ROOT / "csrc" / "curve.c", ROOT / "tests" / "c" / "memcheck.c"]
BASE = ["-g", "-O1", "-fopenmp", "-ffp-contract=off", f"-I{ROOT / 'csrc'}"]


def _build(tmp_path, extra):
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return None
    exe = tmp_path / "memcheck"
    done = subprocess.run([cc, *BASE, *extra, *map(str, SOURCES), "-lm", "-o", str(exe)],
                          capture_output=True, text=True, timeout=300)
    return exe if done.returncode == 0 else None


def test_c_kernels_are_memory_clean(tmp_path):
    exe = _build(tmp_path, ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
    if exe is not None:
        cmd, env = [str(exe)], {**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"}
    elif shutil.which("valgrind") and (exe := _build(tmp_path, [])) is not None:
        cmd, env = ["valgrind", "--error-exitcode=99", "--leak-check=full", "-q", str(exe)], dict(os.environ)
    else:
        pytest.skip("neither a C compiler with -fsanitize=address,undefined nor valgrind is available")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all kernels clean" in done.stdout
