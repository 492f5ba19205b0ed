"""Inference on a real local cluster: once-per-worker loading, equality, GPU resource routing."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.graph.inference import combine_lazy, infer_images
from cryoflow.kernels.combine import combine_features
from cryoflow.models.arch import ModelSpec
from cryoflow.models.checkpoint import load_checkpoint, save_checkpoint
from cryoflow.models.loader import ModelHandle
from cryoflow.models.predict import predict_images
from cryoflow.models.train import TrainParams, train_model
from cryoflow.models.trainset import training_set_from_masks
from cryoflow.pipelines.stages.annotate import infer_on_cluster, load_models
from tests._models_data import blob_images


@pytest.fixture(scope="module")
def cluster():
    """Two single-thread worker processes; only worker 'gpu' advertises a GPU resource."""
    from distributed import Client, Nanny, Scheduler, SpecCluster

    workers = {
        "gpu": {
            "cls": Nanny,
            "options": {"nthreads": 1, "resources": {"GPU": 1}, "memory_limit": "2GiB"},
        },
        "cpu": {"cls": Nanny, "options": {"nthreads": 1, "memory_limit": "2GiB"}},
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": None, "host": "127.0.0.1"}}
    with (
        SpecCluster(workers=workers, scheduler=scheduler, silence_logs=40) as c,
        Client(c) as client,
    ):
        client.wait_for_workers(2)
        yield client


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    out = []
    for k, spec in enumerate(
        [ModelSpec(arch="unet", base_channels=4), ModelSpec(arch="tomoseg", channels=(4, 4))]
    ):
        rng = np.random.default_rng(k)
        images, masks = blob_images(3, rng, size=32)
        ts = training_set_from_masks(
            images, masks, feature=f"f{k}", n_positive=5, n_negative=2, box_size=16, rng=rng
        )
        model, config = train_model(ts, TrainParams(spec=spec, steps=3, batch_size=4, seed=k))
        d = tmp_path_factory.mktemp("models") / f"m{k}"
        save_checkpoint(d, model, config)
        out.append(d)
    return out


def _images() -> np.ndarray:
    return blob_images(12, np.random.default_rng(5), size=32)[0]


def test_cluster_inference_equals_in_process_and_loads_once_per_worker(cluster, model_dirs) -> None:
    import dask.array as da

    client = cluster
    images = _images()
    ((handle, _),) = load_models(client, model_dirs[:1], "cpu")
    lazy = da.from_array(images, chunks=(5, 16, 16))  # chunking unrelated to the batches
    probs = infer_on_cluster(client, lazy, handle, batch_size=2, label="t", resources=None)
    assert probs.dtype == np.uint8 and probs.chunks[0] == (2,) * 6
    on_cluster = probs.compute()
    model, _, _ = load_checkpoint(model_dirs[0])
    np.testing.assert_array_equal(on_cluster, predict_images(model, images))
    # a second pass over other images reuses the loaded network
    infer_on_cluster(client, lazy[::-1], handle, batch_size=3, label="t2", resources=None).compute()
    loads = client.run(lambda dask_worker: dask_worker.plugins[handle.plugin_name].n_loads)
    assert sorted(loads.values()) == [1, 1]
    # the same graph on the threaded scheduler (no worker: the handle's own cache) agrees
    local = infer_images(lazy, ModelHandle.from_directory(model_dirs[0]), batch_size=4)
    np.testing.assert_array_equal(local.compute(scheduler="threads"), on_cluster)
    assert (
        local.name
        == infer_images(lazy, ModelHandle.from_directory(model_dirs[0]), batch_size=4).name
    )


@pytest.mark.fault  # the fault matrix (docs/design/fault-matrix.md)
def test_gpu_annotated_tasks_run_only_on_gpu_workers(cluster, model_dirs) -> None:
    import dask.array as da

    client = cluster
    ((handle, _),) = load_models(client, model_dirs[1:], "cpu")
    lazy = da.from_array(_images(), chunks=(1, 32, 32)) + 0  # reads + a fusable elementwise op
    probs = infer_on_cluster(client, lazy, handle, batch_size=2, label="gpu", resources={"GPU": 1})
    from distributed import wait

    wait(probs)
    info = client.scheduler_info()["workers"]
    gpu_addr = next(a for a, w in info.items() if w["name"] == "gpu")
    holders = {a for keys in client.who_has(probs).values() for a in keys}
    assert holders == {gpu_addr}


def test_stored_images_are_read_by_the_batch_tasks(cluster, model_dirs, tmp_path) -> None:
    import dask.array as da
    import zarr
    from distributed import wait

    client = cluster
    images = _images()
    stored = zarr.create_array(
        tmp_path / "tilts.zarr", shape=images.shape, chunks=(1, 32, 32), dtype=images.dtype
    )
    stored[...] = images
    lazy = da.from_array(stored, chunks=stored.chunks)
    ((handle, _),) = load_models(client, model_dirs[1:], "cpu")
    probs = infer_images(lazy, handle, batch_size=5)
    graph = dict(probs.__dask_graph__())
    assert len(graph) == 1 + 3  # the source and one task per batch: no read or merge tasks
    assert probs.chunks[0] == (5, 5, 2)
    model, _, _ = load_checkpoint(model_dirs[1])
    np.testing.assert_array_equal(probs.compute(scheduler="threads"), predict_images(model, images))
    # placed by its resources annotation like any other inference graph
    gpu = infer_on_cluster(client, lazy, handle, batch_size=5, label="s", resources={"GPU": 1})
    wait(gpu)
    info = client.scheduler_info()["workers"]
    gpu_addr = next(a for a, w in info.items() if w["name"] == "gpu")
    assert {a for keys in client.who_has(gpu).values() for a in keys} == {gpu_addr}
    np.testing.assert_array_equal(gpu.compute(), predict_images(model, images))


def test_combined_labels_on_cluster_match_the_kernel(cluster, model_dirs) -> None:
    import dask.array as da

    client = cluster
    loaded = load_models(client, model_dirs, "cpu")
    lazy = da.from_array(_images(), chunks=(4, 32, 32))
    maps = [
        infer_on_cluster(client, lazy, h, batch_size=4, label=c.feature, resources=None)
        for h, c in loaded
    ]
    thr = [0.4, 0.6]
    labels = combine_lazy(maps, thr).compute()
    expected = combine_features(np.stack([m.compute() for m in maps]), thr)
    np.testing.assert_array_equal(labels, expected)
