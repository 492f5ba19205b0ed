"""``cryoflow verify``: leftovers of interrupted writes, stale results, and (``--deep``) damaged
chunks, in a store.

A command, not a stage of ``cryoflow run``; the checks themselves are the store's
(:mod:`cryoflow.io.verify`). The deep check reads every storage chunk of every array: here,
in this process, for a small store; scattered over a Dask cluster (one task per
:class:`~cryoflow.io.verify.ChunkBatch`, each opening the store itself) when a scheduler or a
worker count is given, or when the store has at least :data:`CLUSTER_FROM_CHUNKS` chunks.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryoflow.io.chunks import ChunkProblem
from cryoflow.io.verify import Leftover, check_batch, plan_deep_check, verify_store

__all__ = [
    "CLUSTER_FROM_CHUNKS",
    "DeepReport",
    "Leftover",
    "deep_verify",
    "task_store",
    "verify_store",
]

#: a store with at least this many chunks is deep-checked on a cluster even when none was named
CLUSTER_FROM_CHUNKS = 512
#: storage chunks per deep-check task
CHUNKS_PER_TASK = 16


@dataclass(frozen=True)
class DeepReport:
    """What the deep check found: every damaged chunk or unusable array (``problems``), how
    many arrays and chunks it read, and whether it ran on a cluster."""

    problems: tuple[ChunkProblem, ...]
    n_arrays: int
    n_chunks: int
    on_cluster: bool


def task_store(store: object) -> object:
    """``store`` as a task sends it to a worker: a local path made absolute (a worker's working
    directory need not be ours); a URL or a ``zarr.Group`` unchanged."""
    if isinstance(store, str | os.PathLike) and "://" not in os.fspath(store):
        return os.path.abspath(os.fspath(store))
    return store


def deep_verify(
    store: object,
    cluster: Any = None,
    *,
    use_cluster: bool | None = None,
    chunks_per_task: int = CHUNKS_PER_TASK,
    quiet: bool = False,
) -> DeepReport:
    """Read and check every chunk of every array of ``store``.

    ``cluster``: the :class:`~cryoflow.pipelines.cluster.connect.ClusterConfig` to run on
    when the check runs on a cluster; ``use_cluster``: True/False to decide, ``None`` for
    "when the store has at least :data:`CLUSTER_FROM_CHUNKS` chunks". Progress (chunks
    checked) goes to stderr when it is a terminal (or ``CRYOFLOW_PROGRESS=1``).
    """
    plan = plan_deep_check(store, chunks_per_batch=chunks_per_task)
    found = list(plan.problems)
    on_cluster = bool(
        plan.batches
        and (use_cluster if use_cluster is not None else plan.n_chunks >= CLUSTER_FROM_CHUNKS)
    )
    if on_cluster:
        found.extend(_on_cluster(store, plan.batches, cluster, quiet))
    else:
        with _serial_progress(plan.n_chunks, quiet) as advance:
            for batch in plan.batches:
                found.extend(check_batch(store, batch))
                advance(len(batch.chunks))
    return DeepReport(tuple(found), plan.n_arrays, plan.n_chunks, on_cluster)


def _on_cluster(
    store: object, batches: tuple[Any, ...], cluster: Any, quiet: bool
) -> list[ChunkProblem]:
    from dask.base import tokenize

    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.cluster.progress import wait_with_progress

    where = task_store(store)
    with connect(cluster, quiet=quiet) as client:
        futures = [
            client.submit(
                check_batch,
                where,
                batch,
                key=f"verify-deep-{batch.array}-{i}-{tokenize(where, batch)}",
                pure=False,
            )
            for i, batch in enumerate(batches)
        ]
        results = wait_with_progress(client, futures, "verify: chunks", quiet=quiet, release=True)
    return [p for batch_problems in results for p in batch_problems]


@contextlib.contextmanager
def _serial_progress(total: int, quiet: bool) -> Any:
    """A progress bar over ``total`` chunks on a terminal; yields ``advance(n)``."""
    show = not quiet and (sys.stderr.isatty() or os.environ.get("CRYOFLOW_PROGRESS") == "1")
    if not show or total == 0:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("verify: chunks", total=total)
        advance: Callable[[int], object] = lambda n: bar.advance(task, n)  # noqa: E731
        yield advance
