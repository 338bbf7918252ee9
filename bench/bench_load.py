"""A single long bound on a busy machine: steadiness under load, as ratios within one run.

    python bench/bench_load.py                 # quiet, then under load; both backends
    python bench/bench_load.py --T 1e7 --calls 20 --spinners 1
    python -m pytest bench/bench_load.py --benchmark-only

The script starts its own load: ``--spinners`` processes that spin in a loop, each
pinned to one core (the highest-numbered cores first).  For each condition (quiet,
loaded) and backend it times ``--calls`` calls of ``last_iterate_bound`` at ``--T``
steps, and as many ``numpy.sum`` calls over the same array, in the same conditions,
interleaved.  It prints the median and the slowest call, and the two ratios that
matter: slowest / median (steadiness: target <= 3 under load) and median / median of
``numpy.sum`` (speed: target <= 2.5 quiet, <= 5 with one core busy).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

import cdfast  # noqa: E402
from cdfast import schedules as S  # noqa: E402

SPIN = "import os, sys\nif hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass\n"


@contextlib.contextmanager
def spinning(count: int):
    """``count`` busy processes, each pinned to one core (none if count == 0)."""
    ncpu = os.cpu_count() or 1
    procs = [subprocess.Popen([sys.executable, "-c", SPIN, str((ncpu - 1 - i) % ncpu)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) for i in range(count)]
    try:
        time.sleep(0.3 if count else 0.0)  # let the scheduler settle
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def time_calls(lr: np.ndarray, backend: str, calls: int) -> tuple[np.ndarray, np.ndarray]:
    """(bound times, numpy.sum times), interleaved call by call, in seconds."""
    cdfast.last_iterate_bound(lr, backend=backend)  # compile / warm up outside the timing
    np.sum(lr)
    ours, base = np.empty(calls), np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        cdfast.last_iterate_bound(lr, backend=backend)
        t1 = time.perf_counter()
        np.sum(lr)
        t2 = time.perf_counter()
        ours[i], base[i] = t1 - t0, t2 - t1
    return ours, base


def measure(T: int, calls: int, spinners: int, backends: list[str]) -> list[dict]:
    lr = 1e-3 * S.cosine(T)
    rows = []
    for load in sorted({0, spinners}):
        with spinning(load):
            for be in backends:
                ours, base = time_calls(lr, be, calls)
                med, worst, base_med = float(np.median(ours)), float(ours.max()), float(np.median(base))
                rows.append(dict(load=load, backend=be, median_ms=1e3 * med, max_ms=1e3 * worst,
                                 max_over_median=worst / med, numpy_sum_ms=1e3 * base_med,
                                 median_over_sum=med / base_med))
    return rows


def print_rows(rows: list[dict], T: int, calls: int) -> None:
    print(f"last_iterate_bound at T = {T:.0e}, {calls} calls per row; numpy.sum over the same array, "
          f"interleaved (cores: {os.cpu_count()})")
    head = f"{'busy cores':>10} {'backend':>7} {'median ms':>10} {'max ms':>8} {'max/median':>10} " \
           f"{'sum ms':>7} {'median/sum':>10}"
    print(head)
    for r in rows:
        print(f"{r['load']:>10} {r['backend']:>7} {r['median_ms']:>10.2f} {r['max_ms']:>8.2f} "
              f"{r['max_over_median']:>10.2f} {r['numpy_sum_ms']:>7.2f} {r['median_over_sum']:>10.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=float, default=1e7)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--spinners", type=int, default=1, help="busy processes, one per core (default 1)")
    p.add_argument("--backend", action="append", help="backend(s) to time (default: all available)")
    p.add_argument("--repeat", type=int, default=1, help="repeat the whole measurement")
    args = p.parse_args(argv)
    backends = args.backend or list(cdfast.available_backends())
    for _ in range(args.repeat):
        print_rows(measure(int(args.T), args.calls, args.spinners, backends), int(args.T), args.calls)
    return 0


# ---------------------------------------------------------------------------
# pytest-benchmark entry points: the same measurement, 20 rounds per backend and load.

try:
    import pytest
except ImportError:  # pragma: no cover - the script does not need pytest
    pytest = None

if pytest is not None:
    T_BENCH = 10**7

    @pytest.mark.parametrize("load", [0, 1])
    @pytest.mark.parametrize("label", ["numpy.sum"] + [f"cdfast {b}" for b in cdfast.available_backends()])
    def test_under_load(benchmark, load, label):
        lr = 1e-3 * S.cosine(T_BENCH)
        if label == "numpy.sum":
            fn, args = np.sum, (lr,)
        else:
            fn, args = cdfast.last_iterate_bound, (lr, 1.0, 1.0, 0.0, None, label.split()[1])
        fn(*args)
        benchmark.group = f"T=1e7, {load} busy core(s)"
        benchmark.extra_info.update(label=label, baseline="numpy.sum" if label != "numpy.sum" else None)
        with spinning(load):
            benchmark.pedantic(fn, args=args, rounds=20, iterations=1, warmup_rounds=1)
        benchmark.extra_info["max_over_median"] = benchmark.stats.stats.max / benchmark.stats.stats.median


if __name__ == "__main__":
    sys.exit(main())
