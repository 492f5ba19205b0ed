"""Fault matrix rows on the real ``dask scheduler`` + ``dask worker`` cluster of
:mod:`tests.pipelines.engine.test_fault`: a poison tomogram (its task keys carry their
tomogram, so the failure is blamed on it alone), determinism across cluster shapes, and a worker
SIGKILLed in the middle of an averaging round."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from distributed.diagnostics.plugin import WorkerPlugin

from cryoflow.errors import NodeNotFoundError
from cryoflow.io.store import open_result, write_tilt_series
from cryoflow.io.verify import find_leftovers
from cryoflow.pipelines.engine.config import parse_pipeline
from cryoflow.pipelines.engine.run import run_pipeline
from tests.pipelines.engine.test_fault import (  # noqa: F401 (fixtures)
    ANGLES,
    N_TILTS,
    _kill,
    assert_identical,
    cluster,
    make_dataset,
    scheduler,
)

pytestmark = pytest.mark.fault


def _bin(store, **cluster_options):
    return parse_pipeline(
        {
            "dataset": {"store": str(store)},
            "cluster": {"max_in_flight": 2, **cluster_options},
            "steps": [{"bin": {"factor": 2}}],
        }
    )


def test_a_poison_tomogram_fails_alone_and_the_others_are_identical(tmp_path, cluster):  # noqa: F811
    """All three tomograms have the same tilt count (the audit's shared ``plan_bin`` key)."""
    cluster.add_worker("w0")
    cluster.add_worker("w1")
    store = tmp_path / "d.zarr"
    data = make_dataset(store, 3)
    poison = data.pop("TS_01").copy()
    poison[5, 3, 7] = np.nan  # every attempt of its bin task fails
    write_tilt_series(store, "TS_01", poison, ANGLES, 2.0, overwrite=True)
    summary = run_pipeline(_bin(store, retries=1), cluster.client, quiet=True)
    assert not summary.ok
    assert set(summary.failures) == {"TS_01"}, summary.failures
    assert "bin" in str(summary.failures["TS_01"])
    assert_identical(store, data)  # TS_00 and TS_02, bit for bit
    with pytest.raises(NodeNotFoundError):
        open_result(store, "TS_01", "bin", "tilt_series")
    # nothing half-done is readable: the failed tomogram's only trace is its staging node
    # (kept, with its recorded chunks, so that a rerun resumes it)
    leftovers = [x.path for x in find_leftovers(store)]
    assert all(p.startswith("tomograms/TS_01/results/bin/.tmp-") for p in leftovers), leftovers
    # a rerun skips the finished ones and fails the poison tomogram again, alone
    again = run_pipeline(_bin(store, retries=0), cluster.client, quiet=True)
    assert set(again.failures) == {"TS_01"} and again.steps["bin"].skipped == 2


def _chunk_bytes(store, names) -> dict[str, bytes]:
    out = {}
    for name in names:
        folder = store / "tomograms" / name / "results" / "bin" / "tilt_series" / "c"
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            out[f"{name}/{path.relative_to(folder).as_posix()}"] = path.read_bytes()
    return out


def test_the_same_run_on_one_or_two_workers_writes_identical_chunk_files(tmp_path, cluster):  # noqa: F811
    cluster.add_worker("w0")
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    data = make_dataset(one, 3, seed=4)
    make_dataset(two, 3, seed=4)
    assert run_pipeline(_bin(one, max_in_flight=1), cluster.client, quiet=True).ok
    cluster.add_worker("w1")
    assert run_pipeline(_bin(two, max_in_flight=3), cluster.client, quiet=True).ok
    a, b = _chunk_bytes(one, data), _chunk_bytes(two, data)
    assert len(a) == 3 * N_TILTS and a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)  # the stored bytes, not only the values
    assert_identical(two, data)


class _DieOnceWhileExecuting(WorkerPlugin):
    """A worker plugin that SIGKILLs worker ``name``'s own process (``""``: whichever worker
    it is) the first time one of its tasks starts executing (the scheduler then holds that task
    as in flight there). A flag file makes it fire once: polling the scheduler from the client
    could miss short tasks."""

    def __init__(self, name: str, flag: str) -> None:
        self.name, self.flag = name, flag
        self.worker_name: str | None = None

    def setup(self, worker) -> None:  # noqa: ANN001
        self.worker_name = worker.name

    def transition(self, key, start, finish, **kwargs) -> None:  # noqa: ANN001
        if finish != "executing" or (self.name and self.worker_name != self.name):
            return
        try:
            with open(self.flag, "x"):
                pass
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_during_an_averaging_round_changes_nothing(tmp_path, cluster):  # noqa: F811
    """Round 2 of a refinement from a reference loses a worker with tasks in flight: the
    scheduler recomputes them on the other worker and the result equals an uninterrupted
    run's, array for array."""
    from cryoflow.io.maps import write_map
    from cryoflow.pipelines.engine.rounds import run_rounds
    from cryoflow.pipelines.stages import average as stage
    from tests.pipelines.stages._average_phantoms import PIXEL, start_map, write_phantom_set

    cluster.add_worker("w0")
    cluster.add_worker("w1")
    (tmp_path / "ref").mkdir()
    (tmp_path / "hit").mkdir()
    ref = write_phantom_set(tmp_path / "ref", n=6, box=16, seed=5)
    hit = write_phantom_set(tmp_path / "hit", n=6, box=16, seed=5)
    start = write_map(tmp_path / "start.mrc", start_map(ref.sim), PIXEL)
    params = stage.AverageParams(
        set="ribo", reference=str(start), iterations=3, batch_size=2, symmetry="C1"
    )
    client = cluster.client
    expected = run_rounds(client, ref.store, stage.plan(ref.store, [], params), params.to_dict())
    flag = tmp_path / "w1-killed"

    def arm(k: int) -> None:
        if k == 1:  # round 1 recorded: the first worker to start a task of round 2 dies (the
            # scheduler may place a short round's tasks all on one worker, so not a named one)
            client.register_plugin(_DieOnceWhileExecuting("", str(flag)), name="die-once")

    plan = stage.plan(hit.store, [], params)
    try:
        done = run_rounds(client, hit.store, plan, params.to_dict(), on_round=arm)
    finally:
        client.unregister_worker_plugin("die-once")
    assert flag.exists(), "no worker started a task of the later rounds"
    assert done.computed == plan.rounds and not done.skipped
    assert set(done.state) == set(expected.state)
    for key, value in expected.state.items():
        np.testing.assert_array_equal(done.state[key], value, err_msg=key)
