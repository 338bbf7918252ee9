"""cffi build script (API / out-of-line mode) for the C reference kernels.

Run by setuptools through ``cffi_modules`` during ``pip install``: it reads the
declarations between the CDEF markers of csrc/cdfast.h into ``cdef`` (the header is
the single source of the C contract) and compiles csrc/cdfast.c into the extension
module ``cdfast._kernels._cdfast``.

Flags: -O3 for vectorisation, -march=native when the compiler accepts it (the host's
vector ISA, as Numba uses), -ffp-contract=off so that no multiply-add is fused (the
Numba kernels round every operation separately; the backends must agree to the last
bit), and OpenMP for the exact curve when the compiler has it.  ``CDFAST_CFLAGS``
adds flags last, so it can override, e.g. ``-march=x86-64-v2`` for a portable build.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

from cffi import FFI

ROOT = pathlib.Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"


def _cdef() -> str:
    header = (CSRC / "cdfast.h").read_text()
    start = header.index("/* CDEF-BEGIN */") + len("/* CDEF-BEGIN */")
    return header[start : header.index("/* CDEF-END */")]


def _compiler_accepts(flags: list[str]) -> bool:
    """Does the C compiler accept ``flags`` (compile and link a trivial program)?"""
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp, "probe.c")
        src.write_text("int main(void) { return 0; }\n")
        try:
            done = subprocess.run(
                [cc, *flags, str(src), "-o", str(pathlib.Path(tmp, "probe"))],
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0


def _flags() -> tuple[list[str], list[str]]:
    if sys.platform == "win32":
        return ["/O2", "/fp:precise"], []
    compile_args = ["-O3", "-ffp-contract=off", "-std=c99"]
    link_args: list[str] = []
    # The extension is built on the machine that runs it: use its vector ISA (AVX2
    # halves the cost of the division loops against the SSE2 baseline).  Vector
    # instructions round like scalar ones, and -ffp-contract=off still forbids FMA.
    if _compiler_accepts(["-march=native"]):
        compile_args.append("-march=native")
    if _compiler_accepts(["-fopenmp"]):
        compile_args.append("-fopenmp")
        link_args.append("-fopenmp")
    compile_args += os.environ.get("CDFAST_CFLAGS", "").split()
    return compile_args, link_args


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
_compile_args, _link_args = _flags()
ffibuilder.set_source(
    "cdfast._kernels._cdfast",
    '#include "cdfast.h"',
    # setuptools wants paths relative to setup.py (the build runs from the project root)
    sources=["csrc/cdfast.c", "csrc/curve.c", "csrc/gradient.c"],
    include_dirs=["csrc"],
    extra_compile_args=_compile_args,
    extra_link_args=_link_args,
    libraries=[] if sys.platform == "win32" else ["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(ROOT), verbose=True)
