"""Cluster connection: local clusters bind to loopback and print the dashboard link."""

from __future__ import annotations

import pytest

from cryoflow.errors import ConfigError
from cryoflow.pipelines.cluster.connect import ClusterConfig, connect
from cryoflow.pipelines.cluster.progress import compute_with_progress


def test_local_cluster_binds_loopback(capsys) -> None:
    import dask.array as da

    with connect(ClusterConfig(n_workers=1, memory_limit="1GiB")) as client:
        addr = client.scheduler.address
        assert addr.startswith("tcp://127.0.0.1:")
        for worker in client.scheduler_info()["workers"]:
            assert worker.startswith("tcp://127.0.0.1:")
        (total,) = compute_with_progress(client, [da.ones((10, 10), chunks=5).sum()], "sum")
        assert total == 100
    err = capsys.readouterr().err
    assert "dashboard http://127.0.0.1:" in err


def test_connect_to_existing_scheduler() -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=True, host="127.0.0.1", dashboard_address=None) as lc:
        with connect(ClusterConfig(scheduler=lc.scheduler_address), quiet=True) as client:
            assert client.submit(lambda x: x + 1, 1).result() == 2


def test_bad_worker_env(monkeypatch) -> None:
    monkeypatch.setenv("CRYOFLOW_WORKERS", "two")
    with pytest.raises(ConfigError, match="CRYOFLOW_WORKERS"):
        ClusterConfig.from_env()


def test_progress_keeps_order_and_duplicates_releases_and_raises_errors() -> None:
    import time

    import dask
    import dask.array as da

    def boom(x):
        raise ValueError(f"bad chunk {x}")

    def n_tasks(client) -> int:
        return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))

    with connect(ClusterConfig(n_workers=1, memory_limit="1GiB"), quiet=True) as client:
        a = da.arange(10, chunks=5).sum()
        b = da.ones(4, chunks=2).sum()
        assert compute_with_progress(client, [a, b, a], "sums", quiet=True) == [45, 4, 45]
        # every finished future was released: the cluster holds nothing once results are back
        deadline = time.monotonic() + 20
        while n_tasks(client) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert n_tasks(client) == 0
        with pytest.raises(ValueError, match="bad chunk 3"):
            compute_with_progress(client, [dask.delayed(boom)(3), b], "boom", quiet=True)


def test_release_leaves_persisted_collections_usable() -> None:
    """Computing over (or straight from) a persisted collection releases only the compute's own
    futures: later graphs still find the persisted data."""
    import dask
    import dask.array as da

    with connect(ClusterConfig(n_workers=1, memory_limit="1GiB"), quiet=True) as client:
        x = client.persist(da.arange(20, chunks=5))
        d = client.persist(dask.delayed(sum)([1, 2, 3]))
        assert compute_with_progress(client, [x.sum(), d], "first", quiet=True) == [190, 6]
        assert compute_with_progress(client, [(x * 2).sum(), d], "again", quiet=True) == [380, 6]


def test_local_workers_spawn_with_heap_friendly_malloc() -> None:
    import os

    from cryoflow.pipelines.cluster.connect import WORKER_MALLOC

    with connect(ClusterConfig(n_workers=1, memory_limit="1GiB"), quiet=True) as client:
        env = client.run(lambda: {k: os.environ.get(k) for k in WORKER_MALLOC})
    assert list(env.values()) == [WORKER_MALLOC]


def _fragment_then_check(dask_worker=None) -> dict:
    """Leave ~100 MiB of free holes inside the heap, then run the trim plugin's check once."""
    import numpy as np

    from cryoflow.pipelines.cluster.trim import PLUGIN_NAME, resident_bytes

    plugin = dask_worker.plugins[PLUGIN_NAME]
    blocks = [np.ones(2**17) for _ in range(200)]  # 1 MiB each: heap, not mmap (WORKER_MALLOC)
    kept = blocks[1::2]
    del blocks
    before, trims = resident_bytes(), plugin.trims
    plugin.check()
    after = resident_bytes()
    del kept
    return {"before": before, "after": after, "trims": plugin.trims - trims}


def test_workers_trim_freed_heap_memory() -> None:
    from cryoflow.pipelines.cluster.trim import _libc_trim

    if _libc_trim() is None:
        pytest.skip("malloc_trim is glibc's; this platform has none")
    with connect(ClusterConfig(n_workers=1, memory_limit="1GiB"), quiet=True) as client:
        (result,) = client.run(_fragment_then_check).values()
    assert result["trims"] == 1
    assert result["before"] - result["after"] > 50 * 2**20  # the holes went back to the OS
