"""Calling the API from several threads at once gives the same results as one thread."""

from __future__ import annotations

import threading

import numpy as np

import cdfast
from cdfast import schedules as S


LONG = 700_001  # above the segmented (threaded) single-bound path's threshold


def _run(lr, backend):
    long_lr = 1e-3 * S.wsd(LONG, decay_frac=0.3)
    return (
        cdfast.last_iterate_bound(lr, backend=backend),
        cdfast.last_iterate_bound(long_lr, backend=backend),
        cdfast.bound_curve(lr, at=np.arange(500, lr.size + 1, 500), method="exact", backend=backend),
        cdfast.bound_curve(lr, method="fast", backend=backend),
    )


def test_concurrent_calls_agree_with_serial_ones():
    lr = 1e-3 * S.cosine(50_000, warmup=500)
    backends = cdfast.available_backends()
    expected = {b: _run(lr, b) for b in backends}
    mismatches: list[str] = []
    failures: list[BaseException] = []

    def work(b):
        try:
            for _ in range(2):
                got = _run(lr, b)
                if got[:2] != expected[b][:2] or not all(np.array_equal(x, y) for x, y in zip(got[2:], expected[b][2:])):
                    mismatches.append(b)
        except BaseException as exc:  # surfaced below, with the thread's error
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(b,)) for b in backends * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert not mismatches
