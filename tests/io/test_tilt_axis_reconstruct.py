"""Real-shaped files with a rotated tilt axis, through ``cryoflow ingest`` and ``reconstruct``.

The tilt series are made by the simulator's own projector about the image y axis, then rotated
in the image plane *independently of cryoflow's geometry* (``numpy.rot90``, and
``scipy.ndimage.affine_transform``) in IMOD's sense: counter-clockwise with x to the right and
the row index y pointing up, as 3dmod displays an MRC file. Each reconstruction is compared with
the same series reconstructed on the axis = y path, and with the phantom (it must come out
upright, i.e. with the sign of the axis angle as IMOD and SerialEM record it).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoflow.geometry import TiltGeometry
from cryoflow.io import store as S
from cryoflow.pipelines.stages.reconstruct import ReconstructParams, reconstruction
from cryoflow.simulate.tilts import project_sum
from tests.io._phantoms import BACKGROUND, corr, phantom
from tests.io_files import write_mdoc, write_mrc

ANGLES = np.arange(-60.0, 61.0, 4.0)


def rotate_imod(images: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate every image counter-clockwise by ``angle_deg`` in the (x right, y up) frame."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    # output (y, x) <- input R^-1 (y, x), R = [[c, s], [-s, c]] acting on (y, x) vectors
    inv = np.array([[c, -s], [s, c]])
    centre = (np.array(images.shape[1:]) - 1) / 2
    offset = centre - inv @ centre
    return np.stack(
        [
            ndimage.affine_transform(
                im, inv, offset=offset, order=3, mode="constant", cval=BACKGROUND
            )
            for im in images
        ]
    ).astype(np.float32)


def axis_y_reference(images_y: np.ndarray, thickness: int) -> np.ndarray:
    """The axis = y path (rows filtered), computed eagerly."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        vol, _ = reconstruction(
            dask.array.from_array(images_y, chunks=(1, -1, -1)),
            TiltGeometry.single_axis(ANGLES),
            ReconstructParams(thickness=thickness),
        )
        return np.asarray(vol.compute())


@pytest.fixture(scope="module")
def scheduler():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client.scheduler.address


def ingest_and_reconstruct(tmp_path, monkeypatch, images, tilt_axis, thickness, name="TS_01"):
    from cryoflow.cli.main import main

    write_mrc(tmp_path / f"{name}.mrc", images, voxel_size=4.0)
    write_mdoc(tmp_path / f"{name}.mrc.mdoc", list(ANGLES), pixel=4.0, tilt_axis=tilt_axis)
    store = tmp_path / "data.zarr"
    for args in (
        ["ingest", str(tmp_path / f"{name}.mrc"), "--out", str(store)],
        ["reconstruct", str(store), "--name", name, "--thickness", str(thickness)],
    ):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 0
    assert S.read_geometry(store, name).tilt_axis_deg == pytest.approx(tilt_axis)
    return S.open_volume(store, name, "tomogram").values


def test_axis_90_in_an_mdoc_matches_the_axis_y_reconstruction(tmp_path, monkeypatch, scheduler):
    monkeypatch.setenv("CRYOFLOW_SCHEDULER", scheduler)
    shape = (16, 32, 32)
    vol = phantom(shape, radius=12)
    images_y = project_sum(vol, ANGLES) + BACKGROUND
    images_90 = np.ascontiguousarray(
        np.rot90(images_y, k=-1, axes=(1, 2))
    )  # exact, 90 deg CCW (y up)
    # sanity of the rotation's sense: the image's y axis now points along -x
    probe = np.zeros((1, 32, 32), np.float32)
    probe[0, 20:, 15:17] = 1  # a bar along +y above the centre
    assert np.rot90(probe, k=-1, axes=(1, 2))[0, 15:17, :12].sum() == probe.sum()
    out = ingest_and_reconstruct(tmp_path, monkeypatch, images_90, 90.0, shape[0])
    reference = axis_y_reference(
        np.ascontiguousarray(np.rot90(images_90, k=1, axes=(1, 2))), shape[0]
    )
    assert corr(out, reference) > 0.999  # was 0.66 while the filter ran along rows
    assert corr(out, vol) > 0.7  # as good as the axis = y path (limited tilt range)
    assert abs(corr(out, vol) - corr(reference, vol)) < 0.005


def test_axis_sign_is_imods_the_phantom_reconstructs_upright(tmp_path, monkeypatch, scheduler):
    monkeypatch.setenv("CRYOFLOW_SCHEDULER", scheduler)
    shape = (16, 48, 48)
    vol = phantom(shape, radius=14)
    images_y = project_sum(vol, ANGLES) + BACKGROUND
    images = rotate_imod(images_y, 85.3)  # a Krios-like axis angle, as SerialEM records it
    out = ingest_and_reconstruct(tmp_path, monkeypatch, images, 85.3, shape[0])
    reference = axis_y_reference(images_y, shape[0])
    assert corr(out, reference) > 0.97
    assert corr(out, vol) > 0.75
    # the opposite sign (or no axis) gives no useful volume
    import dask

    with dask.config.set(scheduler="synchronous"):
        for wrong in (-85.3, 0.0):
            bad, _ = reconstruction(
                dask.array.from_array(images, chunks=(1, -1, -1)),
                TiltGeometry.single_axis(ANGLES, tilt_axis_deg=wrong),
                ReconstructParams(thickness=shape[0]),
            )
            assert corr(np.asarray(bad.compute()), vol) < 0.4
