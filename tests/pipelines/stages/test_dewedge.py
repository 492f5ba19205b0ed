"""``cryoflow dewedge`` end to end through the command line, on a simulated store.

Two tiny simulated tomograms (32 x 64 x 64, tilts -60..60 every 6 degrees, written by
``cryoflow simulate``); one network trained on both through ``cryoflow dewedge`` on a local
cluster of worker processes; its output checked against the simulator's truth in the missing
wedge, exported, refused when it would be overwritten, and applied again by ``cryoflow run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import yaml

from cryoflow.io import store as S
from cryoflow.kernels.wedge_report import filling_figures

TILT_RANGE = (-60.0, 60.0)


def cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CRYOFLOW_WORKERS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dewedge") / "s.zarr"
    args = ("--preset", "tiny", "--n-tomograms", "2", "--seed", "3", "--workers", "1")
    proc = cli("simulate", "--out", str(path), *args)
    assert proc.returncode == 0, proc.stderr
    return path


TRAIN = ("--steps", "300", "--bin", "2", "--box", "16", "--depth", "2")
TRAIN += ("--boxes-per-tomogram", "32", "--workers", "2")


@pytest.mark.slow  # about a CPU-minute: simulation, 300 training steps, two applications
def test_dewedge_cli_end_to_end(store: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    proc = cli(
        "dewedge", str(store), "--all", "--key", "tomogram", *TRAIN, "--model-out", str(model)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("-> volumes/dewedged") == 2
    record = json.loads((model / "model.json").read_text())
    assert {t["name"] for t in record["training_set"]["tomograms"]} == {"sim_000", "sim_001"}
    assert set(record["training_set"]["halves_used"].values()) == {"even/odd tilts"}
    assert record["params"]["steps"] == 300
    for name in ("sim_000", "sim_001"):
        before = S.open_volume(store, name, "tomogram")
        after = S.open_volume(store, name, "dewedged")
        # 1. a volume like the input: shape, voxel size, provenance naming the checkpoint
        assert after.shape == before.shape and after.dims == ("z", "y", "x")
        assert after.attrs["pixel_size_angstrom"] == before.attrs["pixel_size_angstrom"]
        prov = after.attrs["provenance"]
        assert prov["step"] == "dewedge"
        assert list(prov["checkpoints"].values()) == [record["weights_sha256"]]
        assert prov["parameters"]["steps"] == 300
        # 2. closer to the truth than the input, in the missing wedge and in real space
        truth = S.open_volume(store, name, "truth_density").values
        tomo, filled = before.values, after.values
        fb = filling_figures(tomo, truth, TILT_RANGE, reference=tomo)
        fa = filling_figures(filled, truth, TILT_RANGE, reference=tomo)
        assert fa["wedge_cc_deep"] > fb["wedge_cc_deep"] + 0.1, (fb, fa)
        assert fa["wedge_cc"] > fb["wedge_cc"] + 0.05, (fb, fa)
        assert fa["cc"] > fb["cc"] + 0.15, (fb, fa)
        assert fa["copy_cc"] < 0.25 < fa["wedge_cc_deep"]  # not a copy of measured neighbours
    # 3. exported like any volume
    mrc = tmp_path / "d.mrc"
    proc = cli("export", str(store), "--name", "sim_000", "--key", "dewedged", "--out", str(mrc))
    assert proc.returncode == 0, proc.stderr
    with mrcfile.open(mrc) as f:
        np.testing.assert_array_equal(f.data, S.open_volume(store, "sim_000", "dewedged").values)
        assert float(f.voxel_size.x) == pytest.approx(
            S.open_volume(store, "sim_000", "dewedged").attrs["pixel_size_angstrom"]
        )
    # 4. never overwritten unless asked (refused before any training)
    kept = S.open_volume(store, "sim_001", "dewedged").values
    proc = cli("dewedge", str(store), "--name", "sim_001", *TRAIN)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "sim_001/volumes/dewedged already exists" in proc.stderr and "--overwrite" in proc.stderr
    np.testing.assert_array_equal(S.open_volume(store, "sim_001", "dewedged").values, kept)
    # 5. cryoflow run's dewedge step applies the same checkpoint with the same plan
    pipeline = tmp_path / "pipeline.yaml"
    config = {
        "dataset": {"store": str(store), "tomograms": ["sim_000"]},
        "cluster": {"n_workers": 2},
        "steps": [{"dewedge": {"model": str(model)}}],
    }
    pipeline.write_text(yaml.safe_dump(config))
    proc = cli("run", str(pipeline), "--quiet")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    engine = S.open_result(store, "sim_000", "dewedge", "dewedged").values
    np.testing.assert_allclose(
        engine, S.open_volume(store, "sim_000", "dewedged").values, rtol=0, atol=1e-5
    )


def test_a_tomogram_without_a_tilt_range_is_named(tmp_path: Path) -> None:
    store = tmp_path / "t.zarr"
    S.create_dataset(store)
    vol = np.random.default_rng(0).normal(size=(32, 32, 32)).astype(np.float32)
    S.write_volume(store, "lamella_7", "tomogram", vol, pixel_size_angstrom=10.0, provenance=None)
    proc = cli("dewedge", str(store), "--name", "lamella_7", "--bin", "1", "--box", "16")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'lamella_7' has no tilt range" in proc.stderr and "--tilt-range" in proc.stderr
    assert not (store / "tomograms" / "lamella_7" / "volumes" / "dewedged").exists()


def test_a_missing_volume_key_is_named(tmp_path: Path) -> None:
    store = tmp_path / "t.zarr"
    S.create_dataset(store)
    vol = np.zeros((16, 16, 16), np.float32)
    S.write_volume(store, "t1", "tomogram", vol, pixel_size_angstrom=10.0, provenance=None)
    proc = cli("dewedge", str(store), "--name", "t1", "--key", "denoised")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "denoised" in proc.stderr and "t1" in proc.stderr


def test_recorded_tilt_range_no_halves_and_sizes_checked_before_training(tmp_path: Path) -> None:
    from cryoflow.errors import GeometryError
    from cryoflow.io.tomograms import TiltRange, tilt_range_attrs
    from cryoflow.pipelines.stages.base import ParamsError
    from cryoflow.pipelines.stages.dewedge import DewedgeParams, preflight
    from cryoflow.pipelines.stages.dewedge_training import training_input
    from cryoflow.pipelines.stages.eager import Target

    store = tmp_path / "t.zarr"
    S.create_dataset(store)
    vol = np.random.default_rng(1).normal(size=(32, 40, 48)).astype(np.float32)
    attrs = tilt_range_attrs(TiltRange(-50.0, 45.0, "--tilt-range"))
    S.write_volume(
        store, "ing", "tomogram", vol, pixel_size_angstrom=8.0, provenance=None, attrs=attrs
    )
    ranges = preflight(Target(store, ["ing"]), DewedgeParams(bin=1, box=16))
    assert ranges["ing"].as_tuple == (-50.0, 45.0)
    t = training_input(store, "ing", "tomogram", bin_factor=2, use_halves=True)
    assert t.partner is None and "not reconstructed by cryoflow" in t.halves
    assert t.tilt_range_deg == (-50.0, 45.0) and t.volume.shape == (16, 20, 24)
    binned = t.volume.compute()
    assert abs(float(binned.mean())) < 1e-4  # standardised before binning
    with pytest.raises(GeometryError, match=r"'ing'.*too small for 24-voxel"):
        preflight(Target(store, ["ing"]), DewedgeParams(bin=2, box=24))
    with pytest.raises(ParamsError, match="blend <= margin"):
        DewedgeParams(margin=4, blend=8)
    with pytest.raises(ParamsError, match="--device"):
        DewedgeParams(device="gpu")


def test_a_cuda_device_needs_a_gpu_worker() -> None:
    from distributed import Client, LocalCluster

    from cryoflow.errors import ConfigError
    from cryoflow.pipelines.stages.dewedge import require_gpu

    kw = {"n_workers": 1, "threads_per_worker": 1, "processes": False, "dashboard_address": None}
    with LocalCluster(**kw) as cluster, Client(cluster) as client:
        require_gpu(client, "cpu")
        with pytest.raises(ConfigError, match="GPU=1"):
            require_gpu(client, "cuda")
    with LocalCluster(**kw, resources={"GPU": 1}) as cluster, Client(cluster) as client:
        require_gpu(client, "cuda:0")
