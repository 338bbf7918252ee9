"""Dask: lazy stacked bounds and sweeps on a dask.distributed cluster (two local processes).

The cluster listens on the loopback interface only.  Sizes are small: these tests check
that the cluster computes exactly what NumPy computes, and that errors keep their
global row and step.
"""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="dask is an optional extra: pip install 'cdfast[dask]'")
distributed = pytest.importorskip("dask.distributed", reason="dask.distributed is part of 'cdfast[dask]'")

import cdfast  # noqa: E402
from cdfast import schedules as S  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def _lr(rows=12, T=3000):
    shapes = [S.cosine(T), S.linear(T), S.wsd(T, decay_frac=0.3)]
    return 1e-3 * np.stack([shapes[i % 3] * (1 + i / rows) for i in range(rows)])


def test_stacked_functions_return_lazy_arrays_equal_to_numpy():
    lr = _lr()
    g = np.random.default_rng(0).uniform(0.5, 2.0, lr.shape[-1])
    x = da.from_array(lr, chunks=(5, -1))
    bound = cdfast.last_iterate_bound(x, D=2.0, G=0.5, grad_sq=g)
    assert isinstance(bound, da.Array) and bound.chunks == ((5, 5, 2),)
    assert np.array_equal(bound.compute(scheduler="sync"), cdfast.last_iterate_bound(lr, D=2.0, G=0.5, grad_sq=g))
    a, b = cdfast.bound_terms(x)
    ea, eb = cdfast.bound_terms(lr)
    assert np.array_equal(a.compute(scheduler="sync"), ea) and np.array_equal(b.compute(scheduler="sync"), eb)
    avg = cdfast.average_iterate_bound(x, D=da.from_array(np.linspace(1, 2, 12), chunks=4))
    assert np.array_equal(avg.compute(scheduler="sync"), cdfast.average_iterate_bound(lr, D=np.linspace(1, 2, 12)))
    at = [1, 100, 3000]
    curve = cdfast.bound_curve(x, at=at)
    assert curve.shape == (12, 3)
    assert np.array_equal(curve.compute(scheduler="sync"), cdfast.bound_curve(lr, at=at))
    eta, best = cdfast.optimal_peak_lr(x)
    e2, b2 = cdfast.optimal_peak_lr(lr)
    assert np.array_equal(eta.compute(scheduler="sync"), e2) and np.array_equal(best.compute(scheduler="sync"), b2)


def test_the_cluster_computes_what_numpy_computes(client):
    lr = _lr(rows=16)
    x = da.from_array(lr, chunks=(4, -1))
    got = client.gather(client.compute(cdfast.last_iterate_bound(x)))
    assert np.array_equal(got, cdfast.last_iterate_bound(lr))
    a, b = client.gather(client.compute(cdfast.bound_curve_terms(x, at=[10, 3000])))
    ea, eb = cdfast.bound_curve_terms(lr, at=[10, 3000])
    assert np.array_equal(a, ea) and np.array_equal(b, eb)


def test_errors_name_the_global_row_and_step():
    lr = _lr()
    lr[7, 123] = np.nan
    x = da.from_array(lr, chunks=(5, -1))
    with pytest.raises(ValueError, match=r"lr\[7, 123\] is nan"):
        cdfast.last_iterate_bound(x).compute(scheduler="sync")
    with pytest.raises(ValueError, match=r"lr\[7, 123\] is nan"):
        cdfast.bound_curve(x, at=[3000]).compute(scheduler="sync")
    with pytest.raises(ValueError, match=r"D\[11\] = -1.0 must be >= 0"):
        D = da.from_array(np.r_[np.ones(11), -1.0], chunks=5)
        cdfast.last_iterate_bound(da.from_array(_lr(), chunks=(5, -1)), D=D).compute(scheduler="sync")
    with pytest.raises(ValueError, match=r"split into 3 chunks along its last axis"):
        cdfast.last_iterate_bound(da.from_array(_lr(), chunks=(5, 1000)))


def test_sweep_on_the_cluster_equals_the_local_sweep(client):
    spec = {"wsd": {"decay_frac": list(np.linspace(0.05, 0.9, 12))}, "cosine": {"warmup": [0, 100]}}
    kwargs = dict(T=[1000, 3000], peak_lr=[1e-3, 1e-2], chunk_size=8000, exam_T=[300, 1000, 3000, 10000, 30000])
    remote = cdfast.sweep(spec, client=client, **kwargs)
    local = cdfast.sweep(spec, **kwargs)
    assert remote.dtype == local.dtype
    for k in local.dtype.names:
        assert np.array_equal(remote[k], local[k], equal_nan=local[k].dtype.kind == "f"), k
