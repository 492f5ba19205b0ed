"""Time limits of ``cryoflow run``: a tomogram whose step stops making progress is failed.

A task that never returns (a hung read, a deadlocked library) would keep ``cryoflow run``
waiting for ever. The stream measures, per (tomogram, step), the time since its last chunk
finished (or since it was submitted); past the step's limit it asks the scheduler which of
the step's tasks are *executing* on a worker (not waiting in a queue) and for how long
(:func:`hung_tasks`). One executing for longer than the limit fails its tomogram with
:class:`~cryoflow.errors.StalledTaskError` naming the task, the step and the limit; its tasks
are cancelled, the processes of the workers running the hung tasks are ended (a running
Python thread cannot be stopped any other way; a nanny starts a fresh worker), and the other
tomograms go on. A tomogram queued behind a hung one is never blamed for it.

The limit of a step is ``cluster.stall_timeout_s`` when the pipeline sets it, else derived
from the work: the larger of :data:`FLOOR_S` and :data:`FACTOR` times the longest wait
between two chunks of that step seen so far in the run (waits include queueing behind other
tomograms, so a busy cluster raises its own limit).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FACTOR", "FLOOR_S", "StallWatch", "hung_tasks", "restart_workers"]

#: the derived limit is never below this (seconds): a first chunk may load a model
FLOOR_S = 600.0
#: derived limit = FACTOR x the longest wait between two chunks of the step
FACTOR = 20.0


@dataclass
class StallWatch:
    """Per-step stall limits: fixed (``limit_s``) or derived from the waits observed."""

    limit_s: float | None = None
    floor_s: float = FLOOR_S
    factor: float = FACTOR
    longest: dict[str, float] = field(default_factory=dict)

    def progressed(self, step: str, waited_s: float) -> None:
        """A chunk of ``step`` finished ``waited_s`` after the previous one (or the submit)."""
        self.longest[step] = max(self.longest.get(step, 0.0), float(waited_s))

    def limit(self, step: str) -> float:
        """Seconds without a finished chunk after which a tomogram's ``step`` has stalled."""
        if self.limit_s is not None:
            return float(self.limit_s)
        return max(self.floor_s, self.factor * self.longest.get(step, 0.0))

    def stalled(self, step: str, task: str, ran_s: float) -> str:
        """The failure reason of a tomogram whose ``task`` of ``step`` ran ``ran_s`` seconds."""
        return (
            f"stalled: task {task} of step {step!r} ran {ran_s:.0f} s without finishing "
            f"(limit {self.describe(step)})"
        )

    def describe(self, step: str) -> str:
        """How the limit of ``step`` was set (for the failure message)."""
        if self.limit_s is not None:
            return f"cluster.stall_timeout_s = {self.limit_s:g} s"
        return (
            f"derived: max({self.floor_s:g} s, {self.factor:g} x the longest wait between "
            f"chunks of {step}, {self.longest.get(step, 0.0):.1f} s); set "
            "cluster.stall_timeout_s to change it"
        )


def hung_tasks(client: Any, keys: set[Any], longer_than_s: float) -> list[tuple[str, str, float]]:
    """``(worker, task key, seconds)`` of every task of the graphs of ``keys`` that has been
    executing on a worker for longer than ``longer_than_s`` (the scheduler's own record of
    executing tasks, updated by worker heartbeats): tasks waiting in a queue are not hung.
    Empty when the scheduler does not answer (it is going away; the next result says so)."""
    try:
        found: list[tuple[str, str, float]] = client.run_on_scheduler(
            _hung_on_scheduler, list(keys), float(longer_than_s)
        )
    except Exception:
        return []
    return found


def _hung_on_scheduler(
    keys: list[Any], longer_than_s: float, dask_scheduler: Any = None
) -> list[tuple[str, str, float]]:
    tasks = dask_scheduler.tasks
    graph: set[Any] = set()
    stack = [tasks[k] for k in keys if k in tasks]
    while stack:
        ts = stack.pop()
        if ts not in graph:
            graph.add(ts)
            stack.extend(ts.dependencies)
    return [
        (ws.address, str(ts.key), float(seconds))
        for ws in dask_scheduler.workers.values()
        for ts, seconds in ws.executing.items()
        if ts in graph and seconds > longer_than_s
    ]


def restart_workers(client: Any, workers: list[str], log: Callable[[str], object]) -> None:
    """End the processes of ``workers``: a worker's own event loop runs ``os._exit`` (the hung
    thread cannot be stopped, and a nanny's graceful restart waits for it in vain). A nanny
    starts a fresh worker at once; the tasks the worker held that are still wanted run again
    elsewhere. A worker without a nanny is gone for good (logged)."""
    if not workers:
        return
    try:
        client.run(_exit_worker, workers=workers, wait=False)
    except Exception as exc:
        log(f"cryoflow: could not end stalled worker(s) {', '.join(workers)}: {exc}")
        return
    log(
        f"cryoflow: ended stalled worker(s) {', '.join(workers)} (a nanny restarts each; a "
        "worker without one is not replaced)"
    )


async def _exit_worker() -> None:  # a coroutine: run in the worker's loop, nothing awaited
    os._exit(70)  # EX_SOFTWARE; the nanny sees the worker die and starts a new one
