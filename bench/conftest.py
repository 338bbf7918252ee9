"""Benchmark plumbing: shared CASES from tests/, and a ratio table at the end of the run.

Timings on a shared machine are noisy, so results are reported as ratios between
benchmarks of the same group measured in the same run (e.g. ``bound numba`` vs
``numpy.sum`` on the same array).  Each benchmark names its baseline in
``benchmark.extra_info["baseline"]``.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    by_key = {(b.group, b.extra_info.get("label", b.name)): b for b in session.benchmarks}
    rows = []
    for b in session.benchmarks:
        base_label = b.extra_info.get("baseline")
        if not base_label:
            continue
        base = by_key.get((b.group, base_label))
        if base is None:
            continue
        label = b.extra_info.get("label", b.name)
        best = min((o.stats.min for o in session.benchmarks
                    if o.group == b.group and o.extra_info.get("label", "").startswith("cdfast")), default=None)
        rows.append((b.group, label, b.stats.min, base_label, b.stats.min / base.stats.min,
                     b.stats.min / best if best else float("nan")))
    if not rows:
        return
    tr = terminalreporter
    tr.write_sep("=", "ratios (min time / min time of the baseline, same run)")
    for group, label, t, base_label, ratio, vs_best in rows:
        tr.write_line(f"{group:<28} {label:<30} {t * 1e3:10.3f} ms  {ratio:9.2f} x {base_label:<12}"
                      f" {vs_best:9.2f} x fastest cdfast")
