"""Fault suite: a task that never returns fails its tomogram with a clear reason, the others
finish (issue: a hung task hung ``cryoflow run`` for ever); the time limit derived from the
work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryoflow.io.store import open_result, write_tilt_series
from cryoflow.pipelines.cluster.connect import ClusterConfig, connect
from cryoflow.pipelines.engine.config import parse_pipeline
from cryoflow.pipelines.engine.run import run_pipeline
from cryoflow.pipelines.engine.watch import StallWatch
from cryoflow.pipelines.stages import STAGES

pytestmark = pytest.mark.fault

ANGLES = np.linspace(-45, 45, 4)


def test_a_hung_task_fails_its_tomogram_and_the_others_finish(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(STAGES, "hang", "tests.pipelines.engine._hang_stage")
    store = tmp_path / "d.zarr"
    rng = np.random.default_rng(1)
    data = {}
    for name in ("TS_00", "TS_01", "TS_02"):
        data[name] = rng.normal(size=(4, 8, 8)).astype(np.float32)
        write_tilt_series(store, name, data[name], ANGLES, 2.0)
    config = parse_pipeline(
        {
            "dataset": {"store": str(store)},
            "cluster": {"max_in_flight": 3, "stall_timeout_s": 3, "retries": 0},
            "steps": [{"hang": {"tomogram": "TS_01"}}],
        }
    )
    messages: list[str] = []
    # one worker with one thread: the hung task holds the only thread, the other tomograms'
    # chunks wait behind it (queued, not hung: they must not be blamed)
    with connect(ClusterConfig(n_workers=1, dashboard=False), quiet=True) as client:
        summary = run_pipeline(config, client, quiet=True, log=messages.append)
    assert set(summary.failures) == {"TS_01"}, summary.failures
    reason = summary.failures["TS_01"]
    assert "stalled" in reason and "'hang'" in reason and "stall_timeout_s = 3 s" in reason
    assert any("ended stalled worker" in m for m in messages), messages
    for name in ("TS_00", "TS_02"):
        np.testing.assert_array_equal(
            open_result(store, name, "hang", "tilt_series").values, data[name] * 2
        )
    with pytest.raises(FileNotFoundError):
        open_result(store, "TS_01", "hang", "tilt_series")


def test_the_derived_limit_follows_the_work() -> None:
    watch = StallWatch(floor_s=60.0, factor=20.0)
    assert watch.limit("bin") == 60.0  # nothing seen yet: the floor
    watch.progressed("bin", 1.0)
    watch.progressed("bin", 5.0)
    watch.progressed("bin", 2.0)
    assert watch.limit("bin") == 100.0  # 20 x the longest wait, 5 s
    assert watch.limit("reconstruct") == 60.0  # per step
    assert "derived" in watch.describe("bin") and "stall_timeout_s" in watch.describe("bin")
    fixed = StallWatch(7.5)
    fixed.progressed("bin", 100.0)
    assert fixed.limit("bin") == 7.5 and "7.5 s" in fixed.describe("bin")


def test_stall_timeout_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stall_timeout_s"):
        parse_pipeline(
            {
                "dataset": {"store": str(tmp_path / "d.zarr")},
                "cluster": {"stall_timeout_s": 0},
                "steps": [{"bin": {}}],
            }
        )
