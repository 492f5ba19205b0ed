"""``cryoflow run`` with the stage steps: simulate, reconstruct, lift, edges, annotate, localize.

Every step runs through the run engine on a tiny simulated dataset (preset ``tiny``, two
tomograms of 16 x 32 x 32 voxels, 13 tilts); results are compared with the stage pipelines'
own graph builders, reruns must skip, and a changed parameter (or checkpoint) must recompute
exactly that step and the steps that read its results.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from cryoflow.io.store import open_result, open_tilt_series, read_geometry
from cryoflow.pipelines.engine.config import parse_pipeline
from cryoflow.pipelines.engine.run import read_summary, run_pipeline

ROOT = Path(__file__).resolve().parents[3]
NAMES = ["sim_000", "sim_001"]
SIMULATE = {
    "simulate": {"preset": "tiny", "n_tomograms": 2, "shape": [16, 32, 32], "tilt_step_deg": 10.0}
}
# the example's reconstruct step: the contract's plain back-projection
RECONSTRUCT = {"reconstruct": {"thickness": 16, "chunk": 16, "filter": "none",
                               "interpolation": "nearest"}}
LIFT = {"lift": {"masks": "truth/masks2d", "classes": ["membrane", "mito_membrane"],
                 "thickness": 16, "chunk": 16}}


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit="2GiB", silence_logs=50) as cluster:
        with Client(cluster, set_as_default=False) as c:
            yield c


def pipeline(store, steps, **dataset):
    return parse_pipeline({"dataset": {"store": str(store), **dataset},
                           "cluster": {"max_in_flight": 2, "retries": 1}, "steps": steps})


def counts(summary, step):
    s = summary.steps[step] if hasattr(summary, "steps") else summary["steps"][step]
    s = vars(s) if not isinstance(s, dict) else s
    return s["computed"], s["skipped"], s["failed"]


@pytest.fixture(scope="module")
def example(client, tmp_path_factory):
    """examples/pipeline.yaml (simulate -> reconstruct -> lift) run once through ``cryoflow run``
    in a scratch folder, on the test cluster; returns the pipeline file and its store."""
    from cryoflow.cli.main import main

    body = yaml.safe_load((ROOT / "examples" / "pipeline.yaml").read_text())
    body["cluster"] = {**body["cluster"], "scheduler": client.scheduler.address}
    path = tmp_path_factory.mktemp("example") / "pipeline.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(SystemExit) as info:
        main(["run", str(path), "--quiet"])
    assert info.value.code in (0, None)
    return path, path.parent / body["dataset"]["store"]


@pytest.fixture
def store(example, tmp_path):
    """A copy of the example's store (simulated, reconstructed, lifted)."""
    copy = tmp_path / "d.zarr"
    shutil.copytree(example[1], copy)
    return copy


def tokens(store, step, keys):
    return {(n, k): open_result(store, n, step, k).attrs["provenance"]["run_token"]
            for n in NAMES for k in keys}


# ---------------------------------------------------------------------------- simulate
def test_simulate_step_skips_when_current_and_replaces_on_new_settings(store, client):
    from cryoflow.simulate.dataset import SimulationConfig, simulate_phantom, simulate_tilts

    ts = open_tilt_series(store, "sim_001").load()
    assert ts.shape == (13, 32, 32) and ts.attrs["pixel_size_angstrom"] == 20.0
    config = SimulationConfig.preset("tiny", n_tomograms=2, shape=(16, 32, 32), tilt_step_deg=10.0)
    images, masks = simulate_tilts(config, 1, simulate_phantom(config, 1))
    np.testing.assert_array_equal(ts.values, images)  # the simulator's own tomogram 1
    np.testing.assert_array_equal(
        open_result(store, "sim_001", "truth", "masks2d_membrane").values, masks["membrane"])
    again = run_pipeline(pipeline(store, [SIMULATE]), client, quiet=True)
    assert counts(again, "simulate") == (0, 2, 0)
    # new settings replace every simulated tomogram
    reseeded = {"simulate": {**SIMULATE["simulate"], "seed": 7}}
    summary = run_pipeline(pipeline(store, [reseeded]), client, quiet=True)
    assert counts(summary, "simulate") == (2, 0, 0)
    assert not np.array_equal(open_tilt_series(store, "sim_001").values, ts.values)
    assert open_tilt_series(store, "sim_001").attrs["provenance"]["parameters"]["seed"] == 7


# ---------------------------------------------------------------------------- lift, edges
def test_lift_and_edges_match_stage_graphs_rerun_skips_and_changes_stay_local(store, client):
    import dask

    from cryoflow.graph import edges as G
    from cryoflow.kernels.lift import assign_classes
    from cryoflow.pipelines.stages.lift import lift_masks

    edges = {"edges": {"thickness": 16, "chunk": 16, "iterations": 1, "threshold": 1}}
    steps = [SIMULATE, RECONSTRUCT, LIFT, edges]
    summary = run_pipeline(pipeline(store, steps), client, quiet=True)
    assert summary.ok, summary.failures
    # the example computed simulate, reconstruct and lift with these parameters
    assert [counts(summary, s)[:2] for s in ("simulate", "reconstruct", "lift", "edges")] == [
        (0, 2), (0, 2), (0, 2), (2, 0)]
    # 1. lift: the same votes, curve and T as cryoflow lift's lift_masks, labels by the rule
    name = "sim_000"
    geometry = read_geometry(store, name)
    votes, chosen = [], []
    for c in ("membrane", "mito_membrane"):
        maps = open_result(store, name, "truth", f"masks2d_{c}")
        ref = lift_masks(client, maps, geometry, (16, 32, 32), name=c, chunks=16)
        got = open_result(store, name, "lift", f"votes_{c}")
        assert got.dims == ("z", "y", "x")
        np.testing.assert_array_equal(got.values, client.compute(ref.votes, sync=True))
        np.testing.assert_allclose(open_result(store, name, "lift", f"scores_{c}").values,
                                   ref.scores)
        assert open_result(store, name, "lift", f"threshold_{c}").values.tolist() == [ref.threshold]
        votes.append(got.values)
        chosen.append(ref.threshold)
    labels = open_result(store, name, "lift", "labels")
    assert labels.attrs["class_ids"] == {"membrane": 1, "mito_membrane": 2}
    np.testing.assert_array_equal(labels.values,
                                  assign_classes(np.stack(votes), chosen, 13, [1, 2]))
    assert set(labels.values.flat) == {0, 1, 2}
    prov = labels.attrs["provenance"]
    assert set(prov["inputs"]) == {f"tomograms/{name}/tilt_series",
                                   f"tomograms/{name}/results/truth/masks2d_membrane",
                                   f"tomograms/{name}/results/truth/masks2d_mito_membrane"}
    # 2. edges: the graph builders of cryoflow edges, computed whole
    ts = open_tilt_series(store, name)
    with dask.config.set(scheduler="sync"):
        e2d = G.edge_maps(ts.data).compute()
        sums = G.edge_sums(e2d, geometry, (16, 32, 32), chunks=16, iterations=1).compute()
    np.testing.assert_array_equal(open_result(store, name, "edges", "edges2d").values, e2d)
    np.testing.assert_array_equal(open_result(store, name, "edges", "sums").values, sums)
    np.testing.assert_array_equal(open_result(store, name, "edges", "labels").values, sums > 1)
    # 3. a rerun skips every step; nothing is left in progress
    again = run_pipeline(pipeline(store, steps), client, quiet=True)
    assert all(counts(again, s) == (0, 2, 0) for s in ("simulate", "reconstruct", "lift", "edges"))
    assert again.steps["lift"].chunks == 0
    assert not [p for p in (store / "runs" / "progress").glob("*/*") if p.is_dir()]
    # 4. a new lift threshold recomputes lift only
    before = {**tokens(store, "reconstruct", ["volume"]), **tokens(store, "edges", ["labels"])}
    steps[2] = {"lift": {**LIFT["lift"], "threshold": 3}}
    changed = run_pipeline(pipeline(store, steps), client, quiet=True)
    assert [counts(changed, s)[:2] for s in ("simulate", "reconstruct", "lift", "edges")] == [
        (0, 2), (0, 2), (2, 0), (0, 2)]
    assert open_result(store, name, "lift", "threshold_membrane").values.tolist() == [3.0]
    np.testing.assert_array_equal(open_result(store, name, "lift", "labels").values,
                                  assign_classes(np.stack(votes), [3, 3], 13, [1, 2]))
    assert {**tokens(store, "reconstruct", ["volume"]), **tokens(store, "edges", ["labels"])} == before


def test_interrupted_lift_resumes_from_recorded_chunks_of_every_result(store, client):
    from cryoflow.kernels.lift import assign_classes

    steps = [{"lift": {**LIFT["lift"], "threshold": 2}}]

    class Crash(Exception):
        pass

    def crash(tomogram, step, n_recorded):
        if n_recorded == 5:
            raise Crash

    with pytest.raises(Crash):
        run_pipeline(pipeline(store, steps), client, quiet=True, on_chunk=crash)
    recorded = sum(int(np.asarray(zarr.open_array(p)[...]).sum())
                   for p in (store / "runs" / "progress").glob("*/lift.labels.*"))
    assert recorded == 5
    # per tomogram: labels 4 chunks; per class votes 4, threshold, thresholds, scores 1 each
    summary = run_pipeline(pipeline(store, steps), client, quiet=True)
    assert summary.ok and summary.steps["lift"].computed == 2
    assert summary.steps["lift"].chunks == 2 * (4 + 2 * 7) - recorded
    for name in NAMES:
        votes = [open_result(store, name, "lift", f"votes_{c}").values
                 for c in ("membrane", "mito_membrane")]
        np.testing.assert_array_equal(open_result(store, name, "lift", "labels").values,
                                      assign_classes(np.stack(votes), [2, 2], 13, [1, 2]))


# ---------------------------------------------------------------------------- annotate
def _checkpoint(directory, seed):
    import torch

    from cryoflow.models.arch import ModelSpec, build_model
    from cryoflow.models.checkpoint import ModelConfig, save_checkpoint

    torch.manual_seed(seed)
    spec = ModelSpec(arch="tomoseg", channels=(2, 2), kernel_size=3)
    return save_checkpoint(directory, build_model(spec), ModelConfig("membrane", spec, 0.5))


def test_annotate_then_lift_follow_the_checkpoint_hash(store, client, tmp_path):
    import dask

    from cryoflow.graph.inference import infer_images
    from cryoflow.models.loader import ModelHandle

    model = tmp_path / "model"
    sha = _checkpoint(model, seed=0)
    steps = [
        RECONSTRUCT,
        {"annotate": {"checkpoint": str(model), "batch_size": 4}},
        {"lift": {"masks": "annotate/membrane", "thickness": 16, "chunk": 16}},
    ]
    summary = run_pipeline(pipeline(store, steps), client, quiet=True)
    assert summary.ok, summary.failures
    assert [counts(summary, s) for s in ("reconstruct", "annotate", "lift")] == [
        (0, 2, 0), (2, 0, 0), (2, 0, 0)]
    probs = open_result(store, "sim_000", "annotate", "membrane")
    assert probs.dims == ("tilt", "y", "x") and probs.dtype == np.uint8
    handle = ModelHandle.from_directory(model)
    with dask.config.set(scheduler="sync"):
        ref = infer_images(open_tilt_series(store, "sim_000").data, handle, batch_size=4).compute()
    np.testing.assert_array_equal(probs.values, ref)
    prov = probs.attrs["provenance"]
    assert prov["checkpoints"] == {str(model.resolve()): sha}
    assert probs.attrs["model_sha256"] == sha and probs.attrs["threshold"] == 0.5
    lifted = open_result(store, "sim_000", "lift", "votes_membrane")
    assert "tomograms/sim_000/results/annotate/membrane" in lifted.attrs["provenance"]["inputs"]
    # the maps were binarised at the model's threshold (128 of 255)
    geometry = read_geometry(store, "sim_000")
    import cryoflow

    expected = cryoflow.backproject(ref >= 127.5, geometry, (16, 32, 32))
    np.testing.assert_array_equal(lifted.values, np.asarray(expected))
    again = run_pipeline(pipeline(store, steps), client, quiet=True)
    assert all(counts(again, s) == (0, 2, 0) for s in ("reconstruct", "annotate", "lift"))
    # retrained weights (a new hash): annotate and lift recompute, reconstruct does not
    new_sha = _checkpoint(model, seed=1)
    assert new_sha != sha
    retrained = run_pipeline(pipeline(store, steps), client, quiet=True)
    assert [counts(retrained, s)[:2] for s in ("reconstruct", "annotate", "lift")] == [
        (0, 2), (2, 0), (2, 0)]
    probs = open_result(store, "sim_000", "annotate", "membrane")
    assert probs.attrs["provenance"]["checkpoints"] == {str(model.resolve()): new_sha}


def test_annotate_on_cuda_without_gpu_workers_fails_per_tomogram(store, client, tmp_path):
    model = tmp_path / "model"
    _checkpoint(model, seed=0)
    steps = [{"annotate": {"checkpoint": str(model), "device": "cuda"}}]
    summary = run_pipeline(pipeline(store, steps, tomograms=["sim_000"]), client, quiet=True)
    assert list(summary.failures) == ["sim_000"]
    assert "resource GPU=1" in summary.failures["sim_000"]


# ---------------------------------------------------------------------------- example, CLI
def test_example_pipeline_checks_and_runs_through_the_cli(example, capsys):
    from cryoflow.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["check", str(ROOT / "examples" / "pipeline.yaml")])
    assert info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "simulate: 2 tomogram(s), 13 tilts of 32 x 32" in out and "is valid" in out
    assert not (ROOT / "examples" / example[1].name).exists()  # check computed nothing
    path, store = example
    first = read_summary(store)  # the fixture's run
    assert first["ok"]
    assert all(counts(first, s) == (2, 0, 0) for s in ("simulate", "reconstruct", "lift"))
    assert open_result(store, "sim_001", "lift", "labels").shape == (16, 32, 32)
    import cryoflow

    ts = open_tilt_series(store, "sim_001")
    np.testing.assert_allclose(
        open_result(store, "sim_001", "reconstruct", "volume").values,
        np.asarray(cryoflow.backproject(ts.values, ts.coords["angle"].values, (16, 32, 32))),
        rtol=1e-5, atol=1e-4)
    assert list((store.parent / f"{store.name}.reports").glob("run-*.html"))
    with pytest.raises(SystemExit) as info:  # a rerun skips everything
        main(["run", str(path), "--quiet"])
    assert info.value.code in (0, None)
    again = read_summary(store)
    assert again["run_id"] != first["run_id"]
    assert all(counts(again, s) == (0, 2, 0) for s in ("simulate", "reconstruct", "lift"))


def test_check_rejects_bad_stage_steps(tmp_path, capsys):
    from cryoflow.cli.main import main

    bad = [
        ([SIMULATE, {"lift": {"masks": "annotate/membrane"}}, {"annotate": {"checkpoint": "m"}}],
         "the annotate step must come before it"),
        ([SIMULATE, {"lift": {"masks": "truth"}}], "masks: must be STEP/KEY"),
        ([{"simulate": {"shape": [4, 32, 32]}}], "every size >= 8"),
        ([{"reconstruct": {}}, SIMULATE], "simulate makes the tomograms"),
        ([SIMULATE, {"edges": {"sigma1": 3, "sigma2": 2}}], "need sigma1 < sigma2"),
        ([SIMULATE, {"annotate": {"checkpoint": "missing"}}], "not a cryoflow model directory"),
    ]
    for steps, message in bad:
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump({"dataset": {"store": "d.zarr"}, "steps": steps}))
        with pytest.raises(SystemExit) as info:
            main(["check", str(path)])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("cryoflow: error: "), err


def test_localize_step_matches_cryoflow_localize_and_reruns_skip(store, client):
    """Algorithm 3 through the run engine: the same 3D boxes as ``cryoflow localize`` (truth
    boxes, 4 chunks so components merge across borders), from truth or from a stored 2D box
    table; a rerun skips; the table records the run token."""
    import pandas as pd

    from cryoflow.io.boxes import BOX3D_COLUMNS, write_boxes
    from cryoflow.io.layout import open_dataset
    from cryoflow.io.nodes import ATTR
    from cryoflow.io.results import read_table, write_table
    from cryoflow.pipelines.stages import localize
    from cryoflow.pipelines.stages.eager import Target
    from cryoflow.pipelines.stages.localize import LocalizeParams, truth_boxes2d

    c = "mito_membrane"
    loc = {"boxes": "truth", "classes": [c], "thickness": 16, "chunk": 16}
    summary = run_pipeline(pipeline(store, [{"localize": loc}]), client, quiet=True)
    assert summary.ok, summary.failures
    assert counts(summary, "localize") == (2, 0, 0)
    cols = [*BOX3D_COLUMNS, "n_voxels", "threshold"]

    def rows(table):
        return table[cols].sort_values(cols[1:7]).reset_index(drop=True)

    for name in NAMES:
        boxes2d = write_boxes(store.parent / f"{name}-boxes.csv",
                              truth_boxes2d(client, store, name, [c]), ndim=2)
        ref = localize.run(client, Target(store, [name], out="localize_ref", quiet=True),
                           LocalizeParams(boxes=str(boxes2d), classes=(c,), thickness=16, chunk=16))
        got = read_table(store, name, "localize", "boxes3d")
        assert len(got) > 0
        pd.testing.assert_frame_equal(rows(got), rows(ref), check_dtype=False)
        np.testing.assert_array_equal(
            open_result(store, name, "localize", f"labels_{c}").values > 0,
            open_result(store, name, "localize_ref", f"labels_{c}").values > 0)
    # a rerun skips; the table carries the run token of the arrays
    again = run_pipeline(pipeline(store, [{"localize": loc}]), client, quiet=True)
    assert counts(again, "localize") == (0, 2, 0)
    # the same boxes from a stored 2D box table (as `cryoflow detect` writes) give the same 3D boxes
    first = read_table(store, NAMES[0], "localize", "boxes3d")
    for name in NAMES:
        write_table(store, name, "detect", c, truth_boxes2d(client, store, name, [c]),
                    provenance={"step": "detect"})
    stored = {**loc, "boxes": f"detect/{c}"}
    summary = run_pipeline(pipeline(store, [{"localize": stored}]), client, quiet=True)
    assert counts(summary, "localize") == (2, 0, 0), summary.failures
    pd.testing.assert_frame_equal(rows(read_table(store, NAMES[0], "localize", "boxes3d")),
                                  rows(first), check_dtype=False)
    prov = open_result(store, NAMES[0], "localize", f"labels_{c}").attrs["provenance"]
    assert f"tomograms/{NAMES[0]}/results/detect/{c}" in prov["inputs"]
    table = open_dataset(store)[f"tomograms/{NAMES[0]}/results/localize/boxes3d"].attrs[ATTR]
    assert table["complete"] and table["provenance"]["run_token"] == prov["run_token"]


def test_annotate_detect_localize_chain(store, client, tmp_path):
    """2D annotation -> light detector -> Algorithm 3 in one run: the detect table equals
    ``boxes_from_probabilities`` on the stored maps, counts per tilt agree, and localize reads
    the table it wrote."""
    import pandas as pd

    from cryoflow.io.results import read_table
    from cryoflow.models.detector import boxes_from_probabilities

    model = tmp_path / "model"
    _checkpoint(model, seed=0)
    steps = [
        {"annotate": {"checkpoint": str(model), "batch_size": 4}},
        {"detect": {"feature": "membrane", "threshold": 0.4, "batch_size": 5}},
        {"localize": {"boxes": "detect/membrane", "classes": ["membrane"], "thickness": 16,
                      "chunk": 16}},
    ]
    summary = run_pipeline(pipeline(store, steps), client, quiet=True)
    assert summary.ok, summary.failures
    assert [counts(summary, s) for s in ("annotate", "detect", "localize")] == [(2, 0, 0)] * 3
    for name in NAMES:
        probs = open_result(store, name, "annotate", "membrane").values
        ref = boxes_from_probabilities(probs, class_name="membrane", threshold=0.4)
        got = read_table(store, name, "detect", "membrane")
        assert len(got) > 0
        pd.testing.assert_frame_equal(got, ref.reset_index(drop=True), check_dtype=False)
        per_tilt = open_result(store, name, "detect", "membrane_counts")
        assert per_tilt.dims == ("tilt",)
        np.testing.assert_array_equal(per_tilt.values,
                                      np.bincount(ref["tilt"], minlength=len(probs)))
        assert len(read_table(store, name, "localize", "boxes3d")) > 0
    again = run_pipeline(pipeline(store, steps), client, quiet=True)
    assert [counts(again, s) for s in ("annotate", "detect", "localize")] == [(0, 2, 0)] * 3
