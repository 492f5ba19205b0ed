"""Run a cryoflow pipeline on Slurm: a scheduler here, workers as Slurm jobs (dask-jobqueue).

Run this on a login node, or inside a small long-running job::

    python deploy/slurm/cluster.py PIPELINE.yaml --cpu-jobs 8
    # optional GPU workers joining the same scheduler (address printed below):
    sbatch --export=ALL,SCHEDULER=tls://10.0.0.5:8786 deploy/slurm/submit-gpu-workers.sbatch

CPU workers come from ``jobqueue.slurm-cpu`` (adaptive between 0 and ``--cpu-jobs``). Each
retires before its walltime (``--lifetime``); cryoflow's run is resumable, so a lost worker only
costs the chunks it was computing. The dashboard listens on 127.0.0.1: SSH-tunnel to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import dask
import yaml


def load_jobqueue_config(path: Path) -> None:
    """Merge a ``jobqueue.yaml`` into the Dask configuration (highest priority)."""
    with open(path) as f:
        dask.config.update(dask.config.config, yaml.safe_load(f), priority="new")


def make_cluster(config_name: str = "slurm-cpu", config: Path | None = None):  # noqa: ANN201
    """Build (without submitting jobs) the ``SLURMCluster`` described by ``config_name``."""
    from dask_jobqueue import SLURMCluster

    load_jobqueue_config(config or Path(__file__).with_name("jobqueue.yaml"))
    return SLURMCluster(config_name=config_name)


def main() -> None:
    from distributed import Client

    from cryoflow.pipelines.engine.config import load_pipeline
    from cryoflow.pipelines.engine.run import run_pipeline

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pipeline", type=Path)
    parser.add_argument("--cpu-jobs", type=int, default=4)
    parser.add_argument("--config", type=Path, default=Path(__file__).with_name("jobqueue.yaml"))
    args = parser.parse_args()
    pipeline = load_pipeline(args.pipeline)  # validate before any job is submitted
    cluster = make_cluster("slurm-cpu", args.config)
    cluster.adapt(minimum_jobs=0, maximum_jobs=args.cpu_jobs)
    print(cluster.job_script())
    print(f"scheduler for extra (GPU) workers: {cluster.scheduler_address}")
    with Client(cluster) as client:
        print(f"dashboard (tunnel to it): {client.dashboard_link}")
        summary = run_pipeline(pipeline, client)
    raise SystemExit(0 if summary.ok else 1)


if __name__ == "__main__":
    main()
