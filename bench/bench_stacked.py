"""Stacked schedules and sweeps: throughput as ratios within one run, and memory per worker.

    python -m pytest bench/bench_stacked.py --benchmark-only     # throughput table
    python bench/bench_stacked.py                                # the same, plus rows/s
    python bench/bench_stacked.py --dask-sweep                   # 1e5 schedules x 1e4 steps on a
                                                                 # LocalCluster: time, peak RSS per worker

Throughput (group "stacked 256x1e5"): one call on lr of shape (256, 10^5) against the
loop of 256 one-schedule calls (target: at most 0.7x its time on 2 cores) and against
``numpy.sum`` over the same 25.6 M values (the memory-bound floor).  The benchmarks
also assert that the stacked call equals the loop bit for bit.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

import cdfast  # noqa: E402
from cdfast import schedules as S  # noqa: E402

ROWS, T = 256, 10**5
BACKENDS = cdfast.available_backends()


def stack(rows: int = ROWS, T: int = T) -> np.ndarray:
    """``rows`` different schedules: WSD with decay fractions 0.05 .. 0.95, peak 1e-3."""
    return 1e-3 * np.stack([S.wsd(T, decay_frac=f) for f in np.linspace(0.05, 0.95, rows)])


def loop(lr: np.ndarray, backend: str) -> np.ndarray:
    return np.array([cdfast.last_iterate_bound(row, backend=backend) for row in lr])


def stacked(lr: np.ndarray, backend: str) -> np.ndarray:
    return cdfast.last_iterate_bound(lr, backend=backend)


def _best(fn, *args, repeat: int = 7) -> float:
    fn(*args)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def throughput(repeat: int = 7) -> None:
    lr = stack()
    t_sum = _best(np.sum, lr, repeat=repeat)
    print(f"lr of shape {lr.shape} ({lr.nbytes / 2**20:.0f} MiB); best of {repeat}; numpy.sum {1e3 * t_sum:.2f} ms")
    print(f"{'backend':>8} {'stacked ms':>11} {'loop ms':>9} {'stacked/loop':>13} {'rows/s':>10} "
          f"{'elements/s':>11} {'stacked/sum':>12}")
    for be in BACKENDS:
        assert np.array_equal(stacked(lr, be), loop(lr, be))
        t_st = _best(stacked, lr, be, repeat=repeat)
        t_lp = _best(loop, lr, be, repeat=repeat)
        print(f"{be:>8} {1e3 * t_st:>11.2f} {1e3 * t_lp:>9.2f} {t_st / t_lp:>13.2f} {ROWS / t_st:>10.0f} "
              f"{lr.size / t_st:>11.3g} {t_st / t_sum:>12.2f}")


def dask_sweep(schedules: int = 10**5, steps: int = 10**4, workers: int = 2, chunk_size: int = 1 << 22) -> None:
    """A sweep of ``schedules`` WSD shapes x ``steps`` on a two-process LocalCluster."""
    from dask.distributed import Client, LocalCluster

    def peak_rss_mib() -> float:
        # VmHWM: this process's own peak resident set (ru_maxrss would carry over the
        # parent's peak into a spawned worker)
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def run(client, count):
        fracs = np.linspace(0.01, 0.99, count)
        t0 = time.perf_counter()
        table = cdfast.sweep({"wsd": {"decay_frac": fracs}}, [steps], exam=False, client=client,
                             chunk_size=chunk_size)
        assert table.shape == (count,) and np.all(np.isfinite(table["optimal_bound"]))
        return table, time.perf_counter() - t0

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, worker_dashboard_address=None) as cluster, Client(cluster) as client:
        small = max(2 * workers * max(1, chunk_size // steps), 1)  # one or two chunks per worker
        run(client, small)  # imports, compiled kernels, one chunk in flight
        warm = client.run(peak_rss_mib)
        table, elapsed = run(client, schedules)
        after = client.run(peak_rss_mib)
    total = schedules * steps * 8 / 2**30
    print(f"dask sweep: {schedules} schedules x {steps} steps ({total:.1f} GiB of schedules if built at once), "
          f"chunks of {chunk_size * 8 / 2**20:.0f} MiB, {workers} workers: {elapsed:.1f} s "
          f"({schedules / elapsed:.0f} schedules/s)")
    for w in after:
        print(f"  worker {w}: peak RSS {warm[w]:.0f} MiB after a {small}-schedule sweep, "
              f"{after[w]:.0f} MiB after the {schedules}-schedule sweep")
    print(f"  driver: peak RSS {peak_rss_mib():.0f} MiB; table {table.nbytes / 2**20:.1f} MiB")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--dask-sweep", action="store_true", help="also run the 1e5 x 1e4 sweep on a LocalCluster")
    p.add_argument("--schedules", type=int, default=10**5)
    p.add_argument("--steps", type=int, default=10**4)
    args = p.parse_args(argv)
    throughput(args.repeat)
    if args.dask_sweep:
        dask_sweep(args.schedules, args.steps)
    return 0


# ---------------------------------------------------------------------------
# pytest-benchmark: the same comparison, as ratios in bench/conftest.py's table

try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:
    _GROUP = f"stacked {ROWS}x{T:.0e}"

    @pytest.fixture(scope="module")
    def lr():
        return stack()

    def test_numpy_sum(benchmark, lr):
        benchmark.group = _GROUP
        benchmark.extra_info.update(label="numpy.sum")
        benchmark(np.sum, lr)

    @pytest.mark.parametrize("backend", BACKENDS)
    def test_loop_of_1d_calls(benchmark, lr, backend):
        benchmark.group = _GROUP
        benchmark.extra_info.update(label=f"loop of 1-D calls {backend}", baseline="numpy.sum")
        benchmark.pedantic(loop, args=(lr, backend), rounds=5, iterations=1, warmup_rounds=1)

    @pytest.mark.parametrize("backend", BACKENDS)
    def test_stacked_call(benchmark, lr, backend):
        assert np.array_equal(stacked(lr, backend), loop(lr, backend))
        benchmark.group = _GROUP
        benchmark.extra_info.update(label=f"cdfast stacked {backend}", baseline=f"loop of 1-D calls {backend}")
        benchmark.pedantic(stacked, args=(lr, backend), rounds=5, iterations=1, warmup_rounds=1)


if __name__ == "__main__":
    sys.exit(main())
