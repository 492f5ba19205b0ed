"""Long actions of the picking page, run in the background and polled for progress.

A :class:`Jobs` runs one action at a time in a thread and records its phase, so the page
asks ``GET /api/jobs/<id>`` until it is ``done`` or ``failed``. The action here is "find the
rest" (:func:`find_rest`): network-assisted picking, trained on the page's examples, run on
the Dask cluster by :func:`cryoflow.pipelines.stages.pick.find_particles` (the same function
``cryoflow pick`` calls), its picks stored as pending in each tomogram's picks table.

The cluster (``--scheduler``, else a local cluster of worker processes) starts on the first
search and is closed with the server (:meth:`Jobs.close`).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from cryoflow.errors import ConfigError, CryoflowError
from cryoflow.pipelines.picker.marks import MarkStore

__all__ = ["Job", "Jobs", "find_rest", "load_find_particles"]

PICK_FUNCTION = "cryoflow.pipelines.stages.pick.find_particles"


@dataclass
class Job:
    """One background action: ``state`` is ``running``, ``done`` or ``failed``."""

    id: int
    action: str
    state: str = "running"
    phase: str = "starting"
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    dashboard: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def as_dict(self) -> dict[str, Any]:
        end = self.finished if self.finished is not None else time.monotonic()
        return {
            "id": self.id,
            "action": self.action,
            "state": self.state,
            "phase": self.phase,
            "error": self.error,
            "result": self.result,
            "dashboard": self.dashboard,
            "elapsed_s": round(end - self.started, 2),
        }


class Jobs:
    """The server's background actions and the cluster they run on."""

    def __init__(self, cluster: Any = None) -> None:
        self._cluster_config = cluster
        self._jobs: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._stack = contextlib.ExitStack()
        self._client: Any = None
        self._threads: list[threading.Thread] = []

    def start(self, action: str, work: Callable[[Job], dict[str, Any]]) -> Job:
        """Run ``work(job)`` in a thread; refused while another job runs."""
        with self._lock:
            if any(j.state == "running" for j in self._jobs.values()):
                raise ConfigError("another action is still running; wait for it to finish")
            job = Job(len(self._jobs) + 1, action)
            self._jobs[job.id] = job

        def body() -> None:
            try:
                job.result = work(job)
                job.state, job.phase = "done", "done"
            except CryoflowError as exc:
                job.state, job.error = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 (shown on the page, not swallowed)
                job.state = "failed"
                job.error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            finally:
                job.finished = time.monotonic()

        thread = threading.Thread(target=body, name=f"picker-{action}-{job.id}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return job

    def get(self, job_id: int) -> Job:
        if job_id not in self._jobs:
            raise ConfigError(f"no job {job_id}")
        return self._jobs[job_id]

    def client(self) -> Any:
        """The Dask client, connected (or a local cluster started) on first use."""
        if self._client is None:
            from cryoflow.pipelines.cluster.connect import ClusterConfig, connect

            cfg = self._cluster_config or ClusterConfig.from_env()
            self._client = self._stack.enter_context(connect(cfg))
        return self._client

    def close(self) -> None:
        """Wait for running jobs, then close the cluster this server started."""
        for t in self._threads:
            t.join(timeout=60)
        self._stack.close()
        self._client = None


def load_find_particles() -> Callable[..., pd.DataFrame]:
    """The picking function, imported when first needed.

    Raises
    ------
    ConfigError
        When this installation has no network-assisted picking (naming the function).
    """
    try:
        from cryoflow.pipelines.stages.pick import find_particles
    except ImportError as exc:
        raise ConfigError(
            f"network-assisted picking is not available in this installation: cannot import "
            f"{PICK_FUNCTION} ({exc})"
        ) from exc
    return find_particles  # type: ignore[no-any-return]


def find_rest(
    job: Job,
    jobs: Jobs,
    marks: MarkStore,
    names: Sequence[str],
    *,
    radius: float,
    params: dict[str, Any],
    find: Callable[..., pd.DataFrame] | None = None,
) -> dict[str, Any]:
    """Train on the marks of ``names``, pick in every one of them, store the picks.

    ``find`` defaults to :func:`load_find_particles`; ``params`` go to it as keywords.
    Returns ``{"picks": {tomogram: n_pending}, "dashboard": link}``.
    """
    job.phase = "collecting examples"
    examples, negatives = marks.training_set(names)
    if not len(examples):
        raise ConfigError("find the rest needs at least one positive example; click a particle")
    examples = examples.astype({"x": float, "y": float, "z": float})
    negatives = negatives.astype({"x": float, "y": float, "z": float})
    job.phase = "loading the picking network"
    find = find or load_find_particles()
    job.phase = "connecting to the cluster"
    client = jobs.client()
    job.dashboard = getattr(client, "dashboard_link", None)
    job.phase = f"picking in {len(names)} tomogram(s) on the cluster"
    found = find(
        marks.store,
        list(names),
        examples,
        negatives if len(negatives) else None,
        client=client,
        **params,
    )
    missing = [c for c in ("tomogram", "x", "y", "z", "score") if c not in found.columns]
    if missing:
        raise ConfigError(f"{PICK_FUNCTION} returned no columns {missing}")
    job.phase = "storing the picks"
    counts = {}
    for name in names:
        counts[name] = marks.replace_picks(name, found[found["tomogram"] == name], radius)
    return {"picks": counts, "dashboard": getattr(client, "dashboard_link", None)}
