"""``dewedge`` as a step of ``cryoflow run``: the network trained once over every tomogram (a
dataset-level step), applied to each, reused by a rerun and by ``cryoflow dewedge``.

Two tiny tomograms (blobs limited to a +-55 degree wedge, their tilt range recorded), written
with the store API; every run goes through the command line (in this process) on one local
cluster of worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import ndimage

from cryoflow.io import store as S
from cryoflow.io.results import open_dataset_result
from cryoflow.io.tomograms import TiltRange, tilt_range_attrs
from cryoflow.kernels.wedge import wedge_mask
from cryoflow.pipelines.engine.config import load_pipeline
from cryoflow.pipelines.engine.run import read_summary
from cryoflow.pipelines.stages.base import CheckContext
from cryoflow.pipelines.stages.dewedge import STAGE

SHAPE = (32, 48, 48)
TRAIN = {"steps": 12, "box": 16, "depth": 2, "bin": 2, "boxes_per_tomogram": 6}
TILES = {"block": 32, "margin": 8, "blend": 4}


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    from distributed import LocalCluster

    kw = {"threads_per_worker": 1, "dashboard_address": None, "silence_logs": 50}
    with LocalCluster(n_workers=2, processes=True, host="127.0.0.1", **kw) as cluster:
        yield cluster.scheduler_address


def cli(*args: str) -> None:
    """``cryoflow ARGS`` in this process (exit status 0)."""
    from cryoflow.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    assert info.value.code in (0, None)


def blobs(seed: int) -> np.ndarray:
    """Gaussian blobs on noise, their Fourier transform zeroed outside the tilt range."""
    rng = np.random.default_rng(seed)
    vol = np.zeros(SHAPE, np.float32)
    idx = tuple(rng.integers(4, n - 4, size=12) for n in SHAPE)
    vol[idx] = 1.0
    vol = ndimage.gaussian_filter(vol, 2.0) + rng.normal(0, 0.01, SHAPE).astype(np.float32)
    measured = wedge_mask(SHAPE, (-55.0, 55.0))
    return np.fft.ifftn(np.fft.fftn(vol) * measured).real.astype(np.float32)


def _dataset_and_pipeline(
    tmp_path: Path, scheduler: str, volumes: list[np.ndarray]
) -> tuple[Path, Path, dict]:
    """A store with tomograms ``lam_a``, ``lam_b`` (the given volumes, tilt range +-55 deg)
    and a pipeline file with one dewedge step; returns the store, the file and its config."""
    store = tmp_path / "d.zarr"
    S.create_dataset(store)
    attrs = tilt_range_attrs(TiltRange(-55.0, 55.0, "--tilt-range"))
    for name, volume in zip(("lam_a", "lam_b"), volumes, strict=True):
        S.write_volume(
            store, name, "tomogram", volume, pixel_size_angstrom=10.0, provenance=None,
            attrs=attrs,
        )  # fmt: skip
    pipeline = tmp_path / "pipeline.yaml"
    config = {
        "dataset": {"store": "d.zarr"},
        "cluster": {"scheduler": scheduler, "retries": 0},
        "steps": [{"dewedge": {**TRAIN, **TILES}}],
    }
    pipeline.write_text(yaml.safe_dump(config))
    return store, pipeline, config


def test_dewedge_step_trains_once_applies_to_each_and_reruns_reuse(
    tmp_path: Path, scheduler: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store, pipeline, config = _dataset_and_pipeline(tmp_path, scheduler, [blobs(0), blobs(1)])
    step = load_pipeline(pipeline).steps[0]
    assert "trains one network" in STAGE.check(step.params, CheckContext())[0]
    # 1. one training over both tomograms, then each one filled
    cli("run", str(pipeline), "--quiet")
    first = read_summary(store)
    assert first["failures"] == {}
    stats = first["steps"]["dewedge"]
    assert (stats["computed"], stats["skipped"], stats["failed"]) == (3, 0, 0)  # train + 2
    weights = open_dataset_result(store, "dewedge", "weights")
    prov = weights.attrs["provenance"]
    assert set(prov["inputs"]) == {f"tomograms/{n}/volumes/tomogram" for n in ("lam_a", "lam_b")}
    assert prov["parameters"]["config"]["steps"] == 12 and "block" not in str(prov["parameters"])
    losses = open_dataset_result(store, "dewedge", "losses").values
    assert losses.shape == (12,) and np.isfinite(losses).all()
    token = prov["run_token"]
    model_dir = store / "models" / f"dewedge-{token[:16]}"
    assert (model_dir / "model.json").is_file()
    outs = {}
    for name in ("lam_a", "lam_b"):
        out = S.open_result(store, name, "dewedge", "dewedged")
        before = S.open_volume(store, name, "tomogram").values
        assert out.shape == SHAPE and np.isfinite(out.values).all()
        assert not np.array_equal(out.values, before)  # the trained correction was applied
        assert out.attrs["provenance"]["inputs"]["results/dewedge/weights"] == token
        outs[name] = out.values
    # 2. a rerun: nothing trained, nothing applied again
    cli("run", str(pipeline), "--quiet")
    again = read_summary(store)
    assert again["run_id"] != first["run_id"]
    stats = again["steps"]["dewedge"]
    assert (stats["computed"], stats["skipped"], stats["chunks"]) == (0, 3, 0)
    prov = open_dataset_result(store, "dewedge", "weights").attrs["provenance"]
    assert prov["run_id"] == first["run_id"]
    # 3. other tiles apply the same network again, without training it again
    config["steps"] = [{"dewedge": {**TRAIN, "block": 48, "margin": 16, "blend": 4}}]
    pipeline.write_text(yaml.safe_dump(config))
    cli("run", str(pipeline), "--quiet")
    stats = read_summary(store)["steps"]["dewedge"]
    assert (stats["computed"], stats["skipped"]) == (2, 1)
    # 4. cryoflow dewedge with the same settings runs the same plans on the same network
    args = [f"--{k.replace('_', '-')}={v}" for k, v in {**TRAIN, **TILES}.items()]
    capsys.readouterr()
    cli("dewedge", str(store), "--all", *args, "--scheduler", scheduler)
    out = capsys.readouterr().out
    assert "network reused" in out and out.count("-> volumes/dewedged") == 2
    for name in ("lam_a", "lam_b"):
        np.testing.assert_array_equal(S.open_volume(store, name, "dewedged").values, outs[name])


def test_a_failed_training_fails_every_tomogram_and_applies_nothing(
    tmp_path: Path, scheduler: str
) -> None:
    small = blobs(3)[:16, :24, :24]  # 8 x 12 x 12 binned: no 16-voxel box fits
    store, pipeline, _ = _dataset_and_pipeline(tmp_path, scheduler, [small, small])
    from cryoflow.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["run", str(pipeline), "--quiet"])
    assert info.value.code not in (0, None)
    failures = read_summary(store)["failures"]
    assert "too small for 16-voxel training boxes" in failures["(dataset) dewedge"]
    for name in ("lam_a", "lam_b"):
        assert "training over the dataset failed" in failures[name]
        assert not (store / "tomograms" / name / "results" / "dewedge" / "dewedged").exists()
    assert not (store / "results" / "dewedge" / "weights").exists()
