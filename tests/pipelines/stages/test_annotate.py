"""Train / annotate / detect / compare on a small simulated dataset, through the CLI and API."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.io import store as S
from cryoflow.models.arch import ModelSpec
from cryoflow.models.checkpoint import read_config
from cryoflow.models.train import TrainParams
from tests._models_store import write_simulated


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    store = tmp_path_factory.mktemp("ds") / "ds.zarr"
    write_simulated(store, "train", seed=1)
    write_simulated(store, "test", seed=2)
    return store


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=40,
        ) as c,
        Client(c) as cl,
    ):
        yield cl


def test_cli_train_then_annotate_and_detect(dataset, client, tmp_path, monkeypatch, capsys) -> None:
    from cryoflow.cli.main import main
    from cryoflow.pipelines.stages.annotate import AnnotateParams
    from cryoflow.pipelines.stages.annotate import run as annotate_dataset
    from cryoflow.pipelines.stages.detect import DetectParams
    from cryoflow.pipelines.stages.detect import run as detect_dataset
    from cryoflow.pipelines.stages.eager import Target
    from cryoflow.pipelines.stages.train import TrainingParams, train

    # 1. the CLI trains a network from the simulator's truth (its own local cluster)
    monkeypatch.setenv("CRYOFLOW_SCHEDULER", client.scheduler.address)  # reuse the test cluster
    m1 = tmp_path / "granule"
    with pytest.raises(SystemExit) as done:
        main(
            [
                "train",
                str(dataset),
                "--name",
                "train",
                "--feature",
                "granule",
                "--from-truth",
                "--n-boxes",
                "6",
                "--box-size",
                "24",
                "--arch",
                "unet",
                "--steps",
                "15",
                "--out",
                str(m1),
            ]
        )
    assert done.value.code in (0, None)
    cfg = read_config(m1)
    assert cfg.feature == "granule" and cfg.training_set["n_positive"] == 6
    assert cfg.training_set["source"]["tomogram"] == "train"
    # 2. a second feature through the Python API on the shared cluster
    m2 = tmp_path / "mito"
    train(
        client,
        dataset,
        "train",
        TrainingParams(
            feature="mito_membrane",
            n_boxes=6,
            box_size=24,
            network=TrainParams(spec=ModelSpec(arch="unet", base_channels=4), steps=10),
        ),
        out=m2,
    )
    # 3. annotate the test tomogram with both; maps are uint8 with the model's threshold recorded
    out = annotate_dataset(
        client, Target(dataset, ["test"]), AnnotateParams(checkpoint=(m1, m2), batch_size=4)
    )
    assert out["test"]["keys"] == {
        "granule": "granule",
        "mito_membrane": "mito_membrane",
        "combined": "combined",
    }
    g = S.open_result(dataset, "test", "annotate", "granule")
    tilts = S.open_tilt_series(dataset, "test")
    assert g.dtype == np.uint8 and g.shape == tilts.shape and g.dims == ("tilt", "y", "x")
    assert g.attrs["threshold"] == pytest.approx(cfg.threshold)
    comb = S.open_result(dataset, "test", "annotate", "combined")
    assert set(np.unique(comb.values)) <= {0, 1, 2} and comb.attrs["labels"] == {
        "1": "granule",
        "2": "mito_membrane",
    }
    # 4. slices of the reconstruction
    annotate_dataset(client, Target(dataset, ["test"]), AnnotateParams(checkpoint=(m1,), slices=True))
    sl = S.open_result(dataset, "test", "annotate", "granule_slices")
    assert (
        sl.dims == ("z", "y", "x") and sl.shape == S.open_volume(dataset, "test", "tomogram").shape
    )
    # 5. light detector from the maps: a box table per tomogram for Algorithm 3
    tables = detect_dataset(
        client, Target(dataset, ["test"]), DetectParams(feature="granule", threshold=0.5)
    )
    table = S.read_table(dataset, "test", "detect", "granule")
    assert list(table.columns) == ["tilt", "class", "score", "y0", "x0", "y1", "x1"]
    assert len(table) == len(tables["test"])
    # 6. a missing model fails in one line before any cluster starts
    capsys.readouterr()
    with pytest.raises(SystemExit) as bad:
        main(["annotate", str(dataset), "--model", str(tmp_path / "nope"), "--name", "test"])
    assert bad.value.code == 2
    assert "not a cryoflow model directory" in capsys.readouterr().err


def test_compare_reports_every_figure(dataset, client) -> None:
    from cryoflow.pipelines.demo.compare import CompareConfig, compare_metrics_names, compare_routes

    cfg = CompareConfig(
        features=("granule", "mito_membrane"),
        n_boxes=6,
        box_size=24,
        spec=ModelSpec(arch="unet", base_channels=4),
        steps=10,
        time_budget_s=60,
    )
    metrics = compare_routes(client, dataset, "train", "test", cfg)
    for key in compare_metrics_names(cfg.features):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["train_steps_slices"] == 10
