"""The blocked missing-wedge graph on a real cluster: one load per worker, GPU routing."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch

from cryoflow.geometry.tiles import TileGrid
from cryoflow.graph.dewedge import dewedge_lazy
from cryoflow.models.arch import ModelSpec, build_model
from cryoflow.models.checkpoint import ModelConfig, load_checkpoint, save_checkpoint
from cryoflow.models.dewedge_checkpoint import read_dewedge
from cryoflow.models.dewedge_predict import apply_tiled
from cryoflow.models.loader import ModelHandle, ModelPlugin


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
def handle(tmp_path_factory):
    torch.manual_seed(1)
    spec = ModelSpec(arch="unet3d", base_channels=2, depth=2)
    model = build_model(spec)
    torch.nn.init.normal_(model.head.weight, std=0.3)
    config = ModelConfig(
        feature="dewedge",
        spec=spec,
        params={"bin_factor": 2},
        training_set={
            "tomograms": [{"name": "t", "tilt_range_deg": [-60, 60], "normalisation": [0, 1]}]
        },
    )
    d = tmp_path_factory.mktemp("dewedge-cluster") / "m"
    save_checkpoint(d, model, config)
    return ModelHandle.from_directory(d)


def test_cluster_equals_in_memory_loads_once_and_routes_to_the_gpu_worker(cluster, handle) -> None:
    from distributed import get_task_stream

    client = cluster
    client.register_plugin(ModelPlugin(handle))
    settings = read_dewedge(handle.directory)
    vol = np.random.default_rng(0).normal(size=(24, 32, 40)).astype(np.float32)
    lazy = dewedge_lazy(
        da.from_array(vol, chunks=(8, 16, 16)),
        handle,
        loc=0.0,
        scale=1.0,
        settings=settings,
        block=16,
        margin=8,
        blend=4,
        resources={"GPU": 1},
    )
    with get_task_stream(client) as stream:
        out = client.compute(lazy, optimize_graph=False).result()
    model, _, _ = load_checkpoint(handle.directory)
    torch.set_num_threads(1)
    expected = apply_tiled(
        model, vol, TileGrid(vol.shape, 16, 8, 4), loc=0.0, scale=1.0, bin_factor=2
    )
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
    gpu_address = next(
        a for a, w in client.scheduler_info()["workers"].items() if w["resources"].get("GPU")
    )
    tiles = [t for t in stream.data if "dewedge-tile-" in str(t["key"])]
    assert tiles and {t["worker"] for t in tiles} == {gpu_address}
    loads = client.run(lambda dask_worker: dask_worker.plugins[handle.plugin_name].n_loads)
    assert sorted(loads.values()) == [1, 1]
