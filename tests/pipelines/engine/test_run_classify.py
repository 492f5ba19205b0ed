"""``cryoflow run`` with ``classify`` after ``average``: a pipeline file run through the command
line on a LocalCluster of worker processes, over a real store holding a particle set without
orientations (two hinge conformations, 24 particles, 24^3 boxes, SNR 0.5, +-60 degree wedge).
The average finds the orientations; classify starts from them (no re-extraction); a rerun
skips both steps."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import yaml

from cryoflow.cli.main import main
from cryoflow.io.results import open_dataset_result
from cryoflow.kernels.heterogeneity.metrics import class_accuracy
from tests._local_cluster import scheduler  # noqa: F401 (fixture)
from tests.pipelines.stages.heterogeneity_phantoms import PX, two_state_phantom, write_set

N = 24


@pytest.mark.slow  # about 60 s of CPU: a global orientation search, then the PCA rounds
def test_average_then_classify_through_cryoflow_run(tmp_path, scheduler) -> None:  # noqa: F811
    sim = two_state_phantom(N, seed=5)
    write_set(tmp_path / "data.zarr", "parts", sim, poses=False)
    with mrcfile.new(tmp_path / "ref.mrc") as mrc:  # the start map: both states' mean
        mrc.set_data(sim.truth.mean(axis=0).astype(np.float32))
        mrc.voxel_size = PX
    steps = [
        {"average": {"set": "parts", "reference": "ref.mrc", "iterations": 2, "batch_size": 12}},
        {"classify": {"set": "parts", "method": "pca", "classes": 2, "batch_size": 12}},
    ]
    body = {"dataset": {"store": "data.zarr"}, "cluster": {"retries": 0}, "steps": steps}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    with pytest.raises(SystemExit) as done:
        main(["run", str(path), "--scheduler", scheduler, "--quiet"])
    assert done.value.code in (0, None)
    store = str(tmp_path / "data.zarr")
    assign = np.asarray(open_dataset_result(store, "classify-parts", "assign").values)
    assert class_accuracy(assign.astype(int), sim.labels) >= 0.8
    # classify started from the average's orientations and half sets (the set had none)
    found = np.asarray(open_dataset_result(store, "average-parts", "euler_deg").values)
    used = np.asarray(open_dataset_result(store, "classify-parts", "cons_euler").values)
    np.testing.assert_allclose(used, found)
    prov = open_dataset_result(store, "classify-parts", "assign").attrs["provenance"]
    assert "poses" in prov["inputs"] and "particles/parts" in prov["inputs"]
    maps = np.asarray(open_dataset_result(store, "classify-parts", "class_maps").values)
    assert maps.shape == (2, 24, 24, 24) and np.abs(maps).max() > 0
    # a rerun: both results are current, nothing is computed
    from distributed import Client

    from cryoflow.pipelines.engine.config import load_pipeline
    from cryoflow.pipelines.engine.run import run_pipeline

    with Client(scheduler) as client:
        summary = run_pipeline(load_pipeline(path), client, quiet=True)
    assert summary.ok
    assert summary.steps["average"].skipped == 1 and summary.steps["classify"].skipped == 1
