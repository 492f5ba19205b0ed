"""One module-scoped local cluster of two worker processes (its address, for ``--scheduler``),
shared by the test modules that import ``scheduler`` from here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    ) as cluster:
        yield cluster.scheduler_address
