"""Cluster connection: local clusters bind to loopback and print the dashboard link."""

from __future__ import annotations

import pytest

from cryoflow.errors import ConfigError
from cryoflow.pipelines.cluster import ClusterConfig, compute_with_progress, connect


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
