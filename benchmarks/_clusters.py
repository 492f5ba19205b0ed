"""The one place the particle benchmarks get cryoflow's cluster helpers from.

``worker_environ`` and ``prepare_workers`` live in ``cryoflow.pipelines.cluster.connect``,
``compute_with_progress`` in ``cryoflow.pipelines.cluster.progress``; when their import paths
change, only this file changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from cryoflow.pipelines.cluster.connect import prepare_workers, worker_environ
from cryoflow.pipelines.cluster.progress import compute_with_progress

__all__ = ["compute_with_progress", "local_cluster", "peak_rss_mib", "reset_peak_rss"]


@contextlib.contextmanager
def local_cluster(
    n_workers: int, *, memory_limit: str = "4GiB", resources: dict | None = None
) -> Iterator[Any]:
    """A real ``LocalCluster`` of ``n_workers`` single-threaded worker processes and its Client,
    set up as cryoflow's own clusters are (worker malloc settings, memory trimming)."""
    from distributed import Client, LocalCluster

    with (
        worker_environ(),
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit=memory_limit,
            resources=resources,
            silence_logs=50,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(n_workers)
        prepare_workers(client)
        yield client


def peak_rss_mib() -> float:
    """Peak resident memory (``VmHWM``) of the calling process, MiB (run it on workers)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    """Reset the calling process's ``VmHWM`` to its current RSS (Linux ``clear_refs`` 5)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")
