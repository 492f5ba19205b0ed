"""How much faster two plain processes run than one on this machine: the ceiling of "2 workers".

The 2-worker targets assume two free cores. On a shared or small machine two processes doing
the same work at once may each run slower than one alone (shared caches, memory bandwidth,
virtual CPUs that share a physical core), whatever Dask does. :func:`concurrent_speedup` runs
a workload in 1 and in ``n`` spawned processes started together (a barrier) and returns the
aggregate speed-up, the figure a Dask run with ``n`` workers can at best reach.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from typing import Any


def _child(
    setup: Callable[[], Any], run: Callable[[Any], object], repeat: int, barrier, out
) -> None:
    state = setup()
    run(state)  # warm-up
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(repeat):
        run(state)
    out.put((time.perf_counter() - t0) / repeat)


def _timed(n: int, setup: Callable[[], Any], run: Callable[[Any], object], repeat: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(setup, run, repeat, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    times = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return max(times)


def concurrent_speedup(
    setup: Callable[[], Any], run: Callable[[Any], object], n: int = 2, repeat: int = 2
) -> float:
    """Aggregate throughput of ``n`` concurrent processes over one process alone.

    ``setup`` (in each process, untimed) returns the state ``run(state)`` works on; both must
    be importable top-level functions (the processes are spawned).
    """
    one = _timed(1, setup, run, repeat)
    many = _timed(n, setup, run, repeat)
    return n * one / many
