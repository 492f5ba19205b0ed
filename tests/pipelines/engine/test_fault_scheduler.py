"""Fault suite: the scheduler dies mid run. ``cryoflow run`` ends with one line, "scheduler
lost; rerun to resume", blames no tomogram and shows no traceback (it used to fail every
remaining tomogram as "cancelled" and crash in the performance report); a rerun on a new
scheduler resumes and its results equal an uninterrupted computation's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cryoflow.pipelines.engine.run import read_summary, run_pipeline
from tests.pipelines.engine.test_fault import (
    _cli,
    _config,
    _kill,
    _pipeline_file,
    _spawn,
    _wait_for,
    assert_identical,
    make_dataset,
    mid_tomogram,
    published,
)

pytestmark = pytest.mark.fault


def _scheduler(folder: Path) -> tuple[object, str]:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "scheduler.json"
    proc = _spawn(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(file),
        ],
        folder / "scheduler.log",
    )
    _wait_for(file.exists, what="the scheduler")
    return proc, json.loads(file.read_text())["address"]


def _worker(address: str, folder: Path) -> object:
    return _spawn(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            address,
            "--nthreads",
            "1",
            "--no-nanny",
            "--memory-limit",
            "1GiB",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
            "--local-directory",
            str(folder / "workers"),
        ],
        folder / "worker.log",
    )


def test_scheduler_lost_says_rerun_to_resume_and_the_rerun_resumes(tmp_path: Path) -> None:
    from distributed import Client

    store = tmp_path / "d.zarr"
    data = make_dataset(store, 6)
    procs = []
    try:
        sched, address = _scheduler(tmp_path / "s1")
        procs += [sched, _worker(address, tmp_path / "s1")]
        log = tmp_path / "client.log"
        client = _cli("run", str(_pipeline_file(tmp_path, store, address)), log=log)
        procs.append(client)
        _wait_for(lambda: mid_tomogram(store, data, 1), timeout=120, what="a run under way")
        _kill(sched)  # SIGKILL: the scheduler is gone mid run
        assert client.wait(timeout=120) != 0
        text = log.read_text()
        assert "scheduler lost" in text and "rerun to resume" in text, text[-2000:]
        assert "Traceback" not in text and "FAILED" not in text, text[-2000:]
        done = published(store, data)
        assert 1 <= len(done) < len(data)
        for p in procs:
            _kill(p)
        # a new scheduler and worker: the rerun skips what was published, resumes the rest
        sched2, address2 = _scheduler(tmp_path / "s2")
        procs += [sched2, _worker(address2, tmp_path / "s2")]
        with Client(address2, set_as_default=False, timeout="30s") as c:
            c.wait_for_workers(1, timeout=60)
            summary = run_pipeline(_config(store), c, quiet=True)
        assert summary.ok, summary.failures
        assert read_summary(store)["steps"]["bin"]["skipped"] == len(done)
        assert_identical(store, data)
    finally:
        for p in procs:
            _kill(p)
