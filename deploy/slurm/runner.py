"""Single-allocation variant: scheduler, client and workers all inside ONE Slurm job.

``SLURMRunner`` (dask-jobqueue) turns the job's tasks into a cluster: task 0 runs the
scheduler, task 1 runs this script's client code, every other task is a worker. Submit with
``sbatch deploy/slurm/runner.sbatch PIPELINE.yaml``. Nothing outlives the allocation, so no
``--lifetime`` is needed; a rerun after a timeout resumes where the last one stopped.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    from dask_jobqueue.slurm import SLURMRunner
    from distributed import Client

    from cryoflow.pipelines.engine.config import load_pipeline
    from cryoflow.pipelines.engine.run import run_pipeline

    pipeline = load_pipeline(Path(sys.argv[1]))
    scratch = Path(os.environ.get("CRYOFLOW_RUNNER_DIR", Path.cwd()))
    gpus = int(os.environ.get("CRYOFLOW_GPUS_PER_WORKER", "0"))
    worker_options = {"nthreads": int(os.environ.get("SLURM_CPUS_PER_TASK", "1"))}
    if gpus:
        worker_options["resources"] = {"GPU": gpus}
    with SLURMRunner(
        scheduler_file=str(scratch / "scheduler-{job_id}.json"),
        scheduler_options={"dashboard_address": "127.0.0.1:8787"},
        worker_options=worker_options,
    ) as runner:
        # Only the client task gets here; the others serve as scheduler/workers until it exits.
        with Client(runner) as client:
            client.wait_for_workers(runner.n_workers)
            summary = run_pipeline(pipeline, client)
    raise SystemExit(0 if summary.ok else 1)


if __name__ == "__main__":
    main()
