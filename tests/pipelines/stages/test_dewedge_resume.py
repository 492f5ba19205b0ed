"""A dewedge training killed between its rounds resumes after the last recorded one and ends
with exactly the network an uninterrupted training gives (weights and losses, bit for bit).

Two tiny tomograms with their tilt range (no tilt series: no halves), six steps in three
rounds of two, on a local cluster of two worker processes; the training is the stage's own
plan (:func:`cryoflow.pipelines.stages.dewedge_training.training_rounds`), run by the engine
(:func:`cryoflow.pipelines.engine.rounds.run_rounds`) as ``cryoflow run`` and ``cryoflow
dewedge`` run it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from cryoflow.io import store as S
from cryoflow.io.results import open_dataset_result
from cryoflow.io.tomograms import TiltRange, tilt_range_attrs
from cryoflow.pipelines.engine.rounds import run_rounds
from cryoflow.pipelines.stages.dewedge import DewedgeParams
from cryoflow.pipelines.stages.dewedge_training import trained_checkpoint, training_rounds
from tests.pipelines.stages.test_dewedge_run import blobs

PARAMS = DewedgeParams(
    steps=6, round_steps=2, box=16, depth=2, bin=2, boxes_per_tomogram=4, batch_size=2,
    channels=2,
)  # fmt: skip


class _Killed(RuntimeError):
    pass


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    from distributed import LocalCluster

    kw = {"threads_per_worker": 1, "dashboard_address": None, "silence_logs": 50}
    with LocalCluster(n_workers=2, processes=True, host="127.0.0.1", **kw) as cluster:
        yield cluster.scheduler_address


def _store(path: Path) -> Path:
    S.create_dataset(path)
    attrs = tilt_range_attrs(TiltRange(-55.0, 55.0, "--tilt-range"))
    for name, seed in (("lam_a", 0), ("lam_b", 1)):
        S.write_volume(
            path, name, "tomogram", blobs(seed), pixel_size_angstrom=10.0, provenance=None,
            attrs=attrs,
        )  # fmt: skip
    return path


def _weights(store: Path) -> dict[str, torch.Tensor]:
    blob = bytes(np.asarray(open_dataset_result(store, "dewedge", "weights").values))
    return torch.load(io.BytesIO(blob), weights_only=True)


def test_a_training_killed_between_rounds_resumes_there_and_equals_an_uninterrupted_one(
    tmp_path: Path, scheduler: str
) -> None:
    from distributed import Client

    names = ["lam_a", "lam_b"]
    whole, broken = _store(tmp_path / "whole.zarr"), _store(tmp_path / "broken.zarr")
    plan = training_rounds(broken, names, PARAMS)
    assert plan.rounds == 3

    def kill(k: int) -> None:
        raise _Killed(f"killed after round {k}")

    with Client(scheduler, set_as_default=False) as client:
        ref = run_rounds(client, whole, training_rounds(whole, names, PARAMS), {})
        with pytest.raises(_Killed):
            run_rounds(client, broken, plan, {}, on_round=kill)
        # the round is recorded in the store: the network so far and the rest of its state
        staging = next((broken / "results" / "dewedge").glob(".tmp-rounds-*"))
        assert (staging / "round-0001" / "resume").is_dir()
        done = run_rounds(client, broken, plan, {})
        again = run_rounds(client, broken, plan, {})
    assert ref.computed == 3 and done.resumed_after == 1 and done.computed == 2 and again.skipped
    assert not staging.exists()  # the records go once the result is published
    np.testing.assert_array_equal(done.state["losses"], ref.state["losses"])
    assert done.state["losses"].shape == (6,) and done.state["resume"].size == 0
    a, b = _weights(whole), _weights(broken)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the published network is the checkpoint the plans apply
    directory, _ = trained_checkpoint(broken)
    assert (directory / "weights.pt").is_file()
