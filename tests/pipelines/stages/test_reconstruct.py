"""``cryoflow reconstruct``: weighted back-projection into the store, from the pipeline and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import ConfigError
from cryoflow.geometry import TiltGeometry
from cryoflow.geometry.binning import bin_geometry as binned_geometry
from cryoflow.io import store as S
from cryoflow.kernels.project import project_block
from cryoflow.kernels.ramp import ramp_filter
from cryoflow.pipelines.stages.eager import Target
from cryoflow.pipelines.stages.reconstruct import ReconstructParams, reconstruction
from cryoflow.pipelines.stages.reconstruct import run as reconstruct_dataset

ANGLES = np.linspace(-60, 60, 25)
SHAPE = (16, 12, 32)


def phantom():
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    vol = (((z - 7.5) / 5) ** 2 + ((x - 12) / 6) ** 2 <= 1).astype(np.float32)
    vol += 0.5 * (((z - 8) / 3) ** 2 + ((x - 23) / 3) ** 2 <= 1)
    return np.broadcast_to(vol, SHAPE).copy() * (1 + 0.1 * (y % 3))


def corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture()
def dataset(tmp_path):
    vol = phantom()
    geometry = TiltGeometry.single_axis(ANGLES)
    tilts = project_block(
        vol,
        geometry,
        SHAPE,
        SHAPE[1:],
        tuple(slice(0, s) for s in SHAPE),
        mode="sum",
        interpolation="linear",
    )
    store = tmp_path / "data.zarr"
    S.create_dataset(store)
    for name in ("a", "b"):
        S.write_tilt_series(store, name, tilts, geometry, 2.5)
    return store, vol


def test_ramp_filter_has_no_dc_and_keeps_shape():
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 40)).astype(np.float32)
    out = ramp_filter(images)
    assert out.shape == images.shape and out.dtype == np.float32
    flat = ramp_filter(np.ones((1, 1, 64), np.float32))  # a constant row is (almost) removed
    assert abs(float(flat[0, 0, 32])) < 0.05


def test_weighted_beats_plain_backprojection(dataset, client):
    store, vol = dataset
    reconstruct_dataset(
        client, Target(store, ["a", "b"], quiet=True), ReconstructParams(thickness=SHAPE[0])
    )
    out = S.open_volume(store, "a", "tomogram")
    assert out.shape == SHAPE and out.dtype == np.float32
    assert out.attrs["pixel_size_angstrom"] == pytest.approx(2.5)
    weighted = out.values
    assert S.open_volume(store, "b", "tomogram").shape == SHAPE
    tilts = S.open_tilt_series(store, "a")
    plain, _ = reconstruction(
        tilts.data,
        S.read_geometry(store, "a"),
        ReconstructParams(thickness=SHAPE[0], filter="none"),
    )
    plain = client.compute(plain).result()
    assert corr(weighted, vol) > 0.8
    assert corr(weighted, vol) > corr(plain, vol) + 0.05
    # FBP scaling: the mean density inside the big object is about its true value (1.0..1.2)
    inside = vol >= 1
    assert 0.6 < float(weighted[inside].mean()) < 1.6


def test_binning_keeps_geometry_centred(dataset, client):
    store, vol = dataset
    tilts = S.open_tilt_series(store, "a")
    geometry = S.read_geometry(store, "a")
    out, geo2 = reconstruction(tilts.data, geometry, ReconstructParams(thickness=8, bin=2))
    assert out.shape == (8, 6, 16)
    np.testing.assert_allclose(geo2.shift_array, 0.0)
    binned_vol = vol.reshape(8, 2, 6, 2, 16, 2).mean(axis=(1, 3, 5))
    assert corr(client.compute(out).result(), binned_vol) > 0.75
    odd = binned_geometry(geometry, (13, 33), 2)  # a dropped trailing pixel moves the centre
    np.testing.assert_allclose(odd.shift_array[0], [0.25, 0.25])  # the centre moves forward


def test_cli_reconstruct_and_errors(dataset, client, monkeypatch, capsys):
    from cryoflow.cli.main import main

    store, _ = dataset
    monkeypatch.setenv("CRYOFLOW_SCHEDULER", client.scheduler.address)
    with pytest.raises(SystemExit) as exc:
        main(["reconstruct", str(store), "--all", "--thickness", "16", "--key", "fbp"])
    assert exc.value.code == 0
    assert "reconstructed a: 16 x 12 x 32 -> volumes/fbp" in capsys.readouterr().out
    assert S.open_volume(store, "b", "fbp").shape == SHAPE
    with pytest.raises(SystemExit) as exc:
        main(["reconstruct", str(store), "--name", "a", "--filter", "cubic"])
    assert exc.value.code == 2
    assert "cryoflow: error: --filter must be one of ramp, none" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--bin"):
        ReconstructParams(bin=0)


def test_run_plan_refuses_a_wide_detector_without_a_thickness(tmp_path) -> None:
    """The run step cannot estimate a thickness while building its graph: a detector wider
    than the fall-back width asks for one instead of a volume as deep as the detector."""
    from cryoflow.errors import ConfigError
    from cryoflow.io.store import write_tilt_series
    from cryoflow.pipelines.stages.reconstruct import FALLBACK_WIDTH, plan

    store = tmp_path / "wide.zarr"
    width = FALLBACK_WIDTH + 8
    images = np.zeros((3, 4, width), np.float32)
    write_tilt_series(store, "w", images, np.array([-30.0, 0.0, 30.0]), 2.0)
    with pytest.raises(ConfigError, match=r"'w'.*520 pixels wide.*thickness"):
        plan(store, "w", ReconstructParams())
    assert plan(store, "w", ReconstructParams(bin=2)).outputs  # 260 wide: its width, as before
    assert plan(store, "w", ReconstructParams(thickness=8)).outputs[0].data.shape[0] == 8
