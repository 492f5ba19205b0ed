"""Fault suite: memory. A ``memory_limit`` no worker can live with is refused; ``cryoflow
check`` estimates each step's per-task memory from its chunking and refuses a step that
cannot fit; a worker killed over its limit fails the tomogram with the step, its chunk and
what to change (it was Dask's bare ``KilledWorker``)."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
import yaml

from cryoflow.cli.main import main
from cryoflow.errors import ConfigError
from cryoflow.io.store import write_tilt_series
from cryoflow.pipelines.cluster.connect import ClusterConfig, connect
from cryoflow.pipelines.engine.config import parse_pipeline
from cryoflow.pipelines.engine.memory import parse_memory_limit
from cryoflow.pipelines.engine.run import run_pipeline
from cryoflow.pipelines.stages import STAGES

pytestmark = pytest.mark.fault

ANGLES = np.linspace(-45, 45, 4)


def _check(tmp_path: Path, store: Path, steps: list, memory: str) -> int:
    path = tmp_path / "p.yaml"
    body = {"dataset": {"store": str(store)}, "cluster": {"memory_limit": memory}, "steps": steps}
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(SystemExit) as info:
        main(["check", str(path)])
    return int(info.value.code or 0)


def test_a_memory_limit_no_worker_can_live_with_is_refused(tmp_path: Path, capsys) -> None:
    store = tmp_path / "d.zarr"
    write_tilt_series(store, "a", np.zeros((4, 16, 16), np.float32), ANGLES, 2.0)
    assert _check(tmp_path, store, [{"bin": {}}], "100MB") == 2
    err = capsys.readouterr().err
    assert "memory_limit: '100MB' (95 MiB) cannot work" in err and "256MiB" in err
    assert err.count("100MB") == 1  # the value is quoted once, not repeated as "(got ...)"
    assert _check(tmp_path, store, [{"bin": {}}], "lots") == 2
    assert "memory_limit: must be a size like 2GiB" in capsys.readouterr().err
    assert parse_memory_limit("2GiB") == 2 * 2**30


def test_check_estimates_each_step_and_refuses_one_that_cannot_fit(tmp_path: Path, capsys):
    store = tmp_path / "d.zarr"
    write_tilt_series(store, "a", np.zeros((4, 256, 256), np.float32), ANGLES, 2.0)
    steps = [{"bin": {}}, {"reconstruct": {"thickness": 256, "chunk": 256}}]
    assert _check(tmp_path, store, steps[:1], "256MiB") == 0
    out = capsys.readouterr().out
    assert "memory: bin: ~256 KiB per task (tilt_series chunks of 1 x 128 x 128 float32" in out
    assert _check(tmp_path, store, steps, "256MiB") == 2
    err = capsys.readouterr().err
    assert "reconstruct: ~256 MiB per task" in err and "256 x 256 x 256 float32" in err
    assert "does not fit in 60% of memory_limit '256MiB'" in err
    assert "raise memory_limit to at least 427 MiB" in err
    assert _check(tmp_path, store, steps, "1GiB") == 0  # the same step fits a bigger worker


def test_a_worker_killed_over_its_limit_names_step_chunk_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setitem(STAGES, "hang", "tests.pipelines.engine._hang_stage")
    store = tmp_path / "d.zarr"
    for name in ("TS_00", "TS_01"):
        write_tilt_series(store, name, np.ones((4, 8, 8), np.float32), ANGLES, 2.0)
    config = parse_pipeline(
        {
            "dataset": {"store": str(store)},
            "cluster": {"memory_limit": "300MiB", "max_in_flight": 1, "retries": 0},
            "steps": [{"hang": {"tomogram": "TS_00", "hang_s": 30, "allocate_mib": 600}}],
        }
    )
    # no second attempt on another worker: the first kill is the task's failure
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = ClusterConfig(n_workers=1, memory_limit="300MiB", dashboard=False)
        with connect(cluster, quiet=True) as client:
            summary = run_pipeline(config, client, quiet=True)
    assert set(summary.failures) == {"TS_00"}, summary.failures
    reason = summary.failures["TS_00"]
    assert "a worker died running this step's task" in reason
    assert "memory_limit '300MiB'" in reason and "tilt_series chunks of 1 x 8 x 8" in reason
    assert "make the step's chunks smaller or raise cluster.memory_limit" in reason
    assert "KilledWorker" in reason


def test_pipeline_memory_limit_is_checked_when_parsed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="memory_limit"):
        parse_pipeline(
            {
                "dataset": {"store": str(tmp_path / "d.zarr")},
                "cluster": {"memory_limit": "10MB"},
                "steps": [{"bin": {}}],
            }
        )
