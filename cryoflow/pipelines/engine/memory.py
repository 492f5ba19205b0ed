"""Per-task memory of ``cryoflow run``'s steps, estimated from their chunking.

A worker that goes over its memory limit is killed by its nanny, and Dask reports only
``KilledWorker``. Following httomo's memory estimators (each method states the memory it
needs per unit of work, from the sizes it is given), a step's per-task memory is estimated
from its plan before anything runs: the largest chunk a task of the step writes, times
:data:`WORKING_SET` (the task holds its inputs, its result, a temporary of the same size
and the encoded copy of the result). ``cryoflow check`` prints each step's estimate and
refuses a step that cannot fit in :data:`USABLE` of ``cluster.memory_limit``; a
``memory_limit`` below :data:`MIN_WORKER_BYTES` is refused outright (a worker process needs
that much before it runs anything). When a worker dies running a step's task anyway, the
failure names the step, its chunk, the estimate and what to change (:func:`explain_killed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryoflow.errors import ConfigError

__all__ = [
    "MIN_WORKER_BYTES",
    "USABLE",
    "WORKING_SET",
    "TaskMemory",
    "explain_killed",
    "parse_memory_limit",
    "task_memory",
]

#: a worker process (Python, NumPy, Dask, Zarr, their buffers) uses ~150-200 MB before any task
MIN_WORKER_BYTES = 256 * 2**20
#: per-task working set in units of the task's largest output chunk
WORKING_SET = 4
#: share of the worker limit a task may plan for (Dask spills to disk from 60 % and pauses at 80 %)
USABLE = 0.6


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def parse_memory_limit(text: str) -> int:
    """``cluster.memory_limit`` in bytes (``"2GiB"``, ``"4 GB"``, ``"500MB"``); ``ConfigError``
    naming the value when it cannot be parsed or is below :data:`MIN_WORKER_BYTES`."""
    from dask.utils import parse_bytes

    try:
        value = int(parse_bytes(str(text)))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"memory_limit must be a size like 2GiB or 500MB, got {text!r}") from exc
    if value < MIN_WORKER_BYTES:
        raise ConfigError(
            f"memory_limit {text!r} ({_mib(value)}) cannot work: a worker process needs about "
            f"{_mib(MIN_WORKER_BYTES)} before it runs any task; give at least 256MiB "
            "(2GiB or more for reconstruction and networks)"
        )
    return value


@dataclass(frozen=True)
class TaskMemory:
    """The largest task of a step: the output ``key`` it writes, its chunk ``shape`` and
    ``dtype``, that chunk's bytes and the estimated working set of the task."""

    step: str
    key: str
    shape: tuple[int, ...]
    dtype: str
    chunk_bytes: int
    estimate_bytes: int

    def describe(self) -> str:
        shape = " x ".join(str(s) for s in self.shape)
        return (
            f"{self.step}: ~{_mib(self.estimate_bytes)} per task ({self.key} chunks of {shape} "
            f"{self.dtype}, {_mib(self.chunk_bytes)}, x{WORKING_SET})"
        )

    def check(self, limit_bytes: int, limit_text: str) -> None:
        """Refuse a task that cannot fit in :data:`USABLE` of a worker's ``limit_bytes``."""
        if self.estimate_bytes > USABLE * limit_bytes:
            raise ConfigError(
                f"{self.describe()} does not fit in {USABLE:.0%} of memory_limit {limit_text!r}: "
                f"make the step's chunks smaller (its chunk option) or raise memory_limit to at "
                f"least {_mib(self.estimate_bytes / USABLE)}"
            )


def task_memory(plan: Any) -> TaskMemory | None:
    """The estimate for the largest chunk any output of ``plan`` writes (None: no output)."""
    import numpy as np

    best: TaskMemory | None = None
    for out in plan.outputs:
        shape = tuple(int(max(c)) if c else 1 for c in out.data.chunks)
        dtype = np.dtype(out.data.dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if best is None or n > best.chunk_bytes:
            best = TaskMemory(plan.step, out.key, shape, str(dtype), n, WORKING_SET * n)
    return best


def explain_killed(plan: Any, memory_limit: str, exc: BaseException) -> str:
    """Why a worker died running ``plan``'s task (Dask's ``KilledWorker``), and what to do."""
    est = task_memory(plan)
    size = f"; {est.describe()}" if est is not None else ""
    return (
        f"a worker died running this step's task, most likely over its memory_limit "
        f"{memory_limit!r}{size}: make the step's chunks smaller or raise cluster.memory_limit "
        f"(Dask: {type(exc).__name__})"
    )
