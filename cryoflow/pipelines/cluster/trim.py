"""Hand freed heap memory back to the OS from worker processes (glibc ``malloc_trim``).

A worker that back-projects, encodes and writes thousands of blocks allocates and frees
buffers of a few MiB all the time. glibc serves them from the heap (below
``MALLOC_MMAP_THRESHOLD_``, see :data:`cryoflow.pipelines.cluster.connect.WORKER_MALLOC`) and returns
only the free memory at the top of the heap, so free pages in its middle stay resident and a
worker's memory creeps up with the number of tasks, not with the data it holds: a
back-projection of 8x the worker's memory limit peaked at 873-875 MiB per worker against
844-847 at 1x (``VmHWM``), and after thousands of tasks a ``malloc_trim(0)`` gave back up to
180 MiB. :class:`TrimMemory` checks the worker's resident memory once a second and trims when
it has grown by more than ``slack_mib`` since the last trim: then 769-831 MiB at every size. A
trim costs about 1 ms, or about 20 ms when it returns 200 MiB, so at most one per second stays
within 2% of a worker's time. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

PLUGIN_NAME = "cryoflow-trim-memory"


def _libc_trim() -> Any | None:
    """glibc's ``malloc_trim``, or None where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def resident_bytes() -> int:
    """This process's resident memory now (Linux ``/proc/self/statm``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class TrimMemory(WorkerPlugin):
    """Worker plugin: ``malloc_trim(0)`` whenever resident memory grew by ``slack_mib``.

    Parameters
    ----------
    interval : float
        Seconds between checks.
    slack_mib : float
        Growth of resident memory since the last trim (or start) that triggers a trim.
    """

    name = PLUGIN_NAME

    def __init__(self, interval: float = 1.0, slack_mib: float = 32.0) -> None:
        self.interval = float(interval)
        self.slack = int(slack_mib * 2**20)
        self.trims = 0
        self._trim: Any | None = None
        self._callback: Any | None = None
        self._base = 0

    def setup(self, worker: Any) -> None:
        from tornado.ioloop import PeriodicCallback

        self._trim = _libc_trim()
        self._base = resident_bytes()
        if self._trim is None or not self._base:  # no glibc, or no /proc to watch
            return
        self._callback = PeriodicCallback(self.check, self.interval * 1000)
        self._callback.start()

    def teardown(self, worker: Any) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def check(self) -> None:
        """Trim if resident memory grew by more than the slack since the last trim."""
        if self._trim is None:
            return
        if resident_bytes() - self._base > self.slack:
            self._trim(0)
            self.trims += 1
            self._base = resident_bytes()
