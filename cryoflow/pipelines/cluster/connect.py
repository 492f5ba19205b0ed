"""Cluster creation and connection, kept apart from library code.

Every command runs on Dask. :func:`connect` starts a local cluster of worker processes bound
to 127.0.0.1 (dashboard link printed), or connects to ``--scheduler ADDRESS`` / the
``CRYOFLOW_SCHEDULER`` setting, and registers cryoflow's worker plugins
(:func:`prepare_workers`). Progress bars: :mod:`cryoflow.pipelines.cluster.progress`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryoflow.errors import ConfigError, SchedulerLostError
from cryoflow.pipelines.cluster.retry import RETRIES


@dataclass(frozen=True)
class ClusterConfig:
    """How to reach (or build) a Dask cluster.

    scheduler : address of an existing scheduler (``tcp://host:port`` or ``tls://...``);
        ``None`` starts a local cluster.
    n_workers, threads_per_worker, memory_limit : local cluster shape.
    security : path prefix of TLS material (see :func:`cryoflow.pipelines.cluster.security.load_security`)
        or ``None``.
    report : path of a Dask performance report (HTML) to write, or ``None``.
    dashboard : serve the dashboard for a local cluster (on 127.0.0.1, random port if busy).
    retries : extra attempts of a failing task, for every computation on the client
        (:mod:`cryoflow.pipelines.cluster.retry`).
    """

    scheduler: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "4GiB"
    security: Any = None
    report: Path | None = None
    dashboard: bool = True
    resources: dict[str, float] | None = None
    retries: int = RETRIES

    @classmethod
    def from_env(cls, **overrides: Any) -> ClusterConfig:
        """Defaults, then ``CRYOFLOW_SCHEDULER`` / ``CRYOFLOW_WORKERS``, then explicit overrides."""
        kwargs: dict[str, Any] = {}
        if os.environ.get("CRYOFLOW_SCHEDULER"):
            kwargs["scheduler"] = os.environ["CRYOFLOW_SCHEDULER"]
        if os.environ.get("CRYOFLOW_WORKERS"):
            try:
                kwargs["n_workers"] = int(os.environ["CRYOFLOW_WORKERS"])
            except ValueError as exc:
                raise ConfigError(
                    f"CRYOFLOW_WORKERS must be an integer, got {os.environ['CRYOFLOW_WORKERS']!r}"
                ) from exc
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(**kwargs)
        if cfg.n_workers < 1:
            raise ConfigError(f"n_workers must be >= 1, got {cfg.n_workers}")
        return cfg


# glibc malloc settings for worker processes, set by each nanny before it spawns its worker.
# Distributed's default (MALLOC_TRIM_THRESHOLD_=65536, to hand freed memory back to the OS)
# also switches off glibc's adaptive mmap threshold, so every buffer above 128 KiB is a fresh
# mmap whose pages fault in on first touch: Blosc/zstd encoding of a 128^3 float32 chunk ran
# 2.7x slower in a worker than in a plain process (43 vs 110 ms). Here freed memory above
# 64 MiB at the top of the heap is still returned, and buffers under 16 MiB (chunks, crops,
# kernel temporaries) are reused from the heap (25 ms).
WORKER_MALLOC = {
    "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20),
    "MALLOC_MMAP_THRESHOLD_": str(16 * 2**20),
}


@contextlib.contextmanager
def worker_environ() -> Iterator[None]:
    """Context in which new nannies (``LocalCluster`` workers) spawn workers with
    :data:`WORKER_MALLOC`. For ``dask worker`` processes, set the same through
    ``DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_*`` (see ``deploy/``).

    A nanny prefers this process's environment over the Dask config for these variables, and
    Distributed writes its defaults into that environment whenever it spawns a worker, so both
    are set here and the environment is restored on exit.
    """
    import dask

    saved = {k: os.environ.get(k) for k in WORKER_MALLOC}
    os.environ.update(WORKER_MALLOC)
    try:
        with dask.config.set(
            {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC.items()}
        ):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def prepare_workers(client: Any) -> None:
    """Set up what cryoflow runs on every worker of ``client``'s cluster, present and future.

    Registers :class:`cryoflow.pipelines.cluster.trim.TrimMemory` (freed heap memory goes back to the
    OS); registering again replaces it.
    """
    from cryoflow.pipelines.cluster.trim import TrimMemory

    client.register_plugin(TrimMemory())


def _local_workers_ignore_sigint(client: Any) -> None:
    """Ctrl-C is the client's alone on a local cluster (:mod:`.interrupt`)."""
    from cryoflow.pipelines.cluster.interrupt import IgnoreSigint

    client.register_plugin(IgnoreSigint())


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def connect(config: ClusterConfig | None = None, *, quiet: bool = False) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for ``config``; closes what it started on exit."""
    from distributed import LocalCluster, performance_report

    from cryoflow.pipelines.cluster.retry import retrying_client

    Client = retrying_client()  # noqa: N806  (every task retried: one policy, retry.py)
    cfg = config or ClusterConfig()
    with _client_log_level(), contextlib.ExitStack() as stack:
        if cfg.scheduler:
            client = stack.enter_context(
                Client(cfg.scheduler, security=cfg.security, set_as_default=False)
            )
            _say(f"cryoflow: connected to scheduler {cfg.scheduler}", quiet)
        else:
            stack.enter_context(worker_environ())
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=cfg.n_workers,
                    threads_per_worker=cfg.threads_per_worker,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                    scheduler_kwargs=None if cfg.dashboard else {"dashboard": False},
                    memory_limit=cfg.memory_limit,
                    resources=cfg.resources,
                    security=cfg.security,
                    silence_logs=40,
                )
            )
            client = stack.enter_context(Client(cluster, set_as_default=False))
            _local_workers_ignore_sigint(client)
            _say(
                f"cryoflow: local cluster with {cfg.n_workers} worker process(es) "
                f"at {cluster.scheduler_address}",
                quiet,
            )
        client.cryoflow_retries = cfg.retries
        prepare_workers(client)
        link = getattr(client, "dashboard_link", None)
        if link:
            _say(f"cryoflow: dashboard {link}", quiet)
        if cfg.report is not None:
            Path(cfg.report).parent.mkdir(parents=True, exist_ok=True)
            # performance_report needs a current client; ours is not the global default
            stack.enter_context(client.as_current())
            stack.enter_context(_report_unless_lost(performance_report(filename=str(cfg.report))))
        try:
            yield client
        except SchedulerLostError:
            # the client closes next: its own logs (a cancelled reconnection, with a traceback)
            # would bury the one line that says what happened; restored once it has closed
            logging.getLogger("distributed.client").setLevel(logging.CRITICAL)
            raise
        except KeyboardInterrupt:
            if not cfg.scheduler:  # our own workers stop next: their parting comm errors are noise
                _quiet_workers(client)
            raise


def _silence_distributed() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def _quiet_workers(client: Any) -> None:
    """Local workers about to be closed after Ctrl-C: Distributed's own log lines (a peer's
    stream closing mid transfer, with a traceback) would bury "interrupted; rerun to resume"."""
    _silence_distributed()
    try:
        client.run(_silence_distributed, on_error="ignore")
    except Exception:  # a worker already gone: nothing left to quiet  # noqa: BLE001
        pass


@contextlib.contextmanager
def _client_log_level() -> Iterator[None]:
    """The level of Distributed's client logger, restored on exit."""
    logger = logging.getLogger("distributed.client")
    level = logger.level
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _report_unless_lost(report: Any) -> Iterator[None]:
    """``report`` (a performance report), not written when the run ended because the
    scheduler was lost: writing it needs the scheduler, and its own traceback would hide the
    one line that says what happened."""
    report.__enter__()
    try:
        yield
    except SchedulerLostError:
        raise  # no report: the scheduler that holds it is gone
    report.__exit__(None, None, None)


def gpu_resources(device: str) -> dict[str, float] | None:
    """The Dask resources a task on ``device`` needs: ``{"GPU": 1}`` for CUDA, else none."""
    return {"GPU": 1} if str(device).startswith("cuda") else None
