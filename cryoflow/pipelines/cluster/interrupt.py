"""Ctrl-C on a local cluster: only the client process handles it.

A terminal sends SIGINT to the whole foreground process group, so every worker process of a
``LocalCluster`` (children of the client) got it too, raised ``KeyboardInterrupt`` in its event
loop and printed ~15 lines of traceback each while the client was still stopping.
:class:`IgnoreSigint`, registered on the local cluster's workers only (never on the workers of a
scheduler you run yourself), makes them ignore it: the client stops submitting, cancels, closes
the cluster (which stops the workers) and the command line exits 130.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

PLUGIN_NAME = "cryoflow-ignore-sigint"


class IgnoreSigint(WorkerPlugin):
    """Worker plugin: the worker process ignores SIGINT (see the module docstring)."""

    name = PLUGIN_NAME

    def setup(self, worker: Any) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # the worker's event loop
            signal.signal(signal.SIGINT, signal.SIG_IGN)
