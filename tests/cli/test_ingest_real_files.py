"""``cryoflow ingest`` + ``reconstruct`` end to end on real-shaped MRC files written here.

Through the command line (``cryoflow.cli.main.main``, one shared in-process Dask cluster via
``CRYOFLOW_SCHEDULER``): a tilt axis declared with ``--tilt-axis`` (-85 and 90 degrees, images
rotated independently of cryoflow's geometry), a symbolic link with its own angle file, an old
FEI extended header holding the pixel size, angles and axis, and the default thickness.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryoflow.io import store as S
from cryoflow.simulate.tilts import project_sum
from tests.io._phantoms import BACKGROUND, corr, phantom
from tests.io.test_mrc_real_headers import fei_old_style
from tests.io.test_tilt_axis_reconstruct import ANGLES, rotate_imod
from tests.io_files import write_mdoc, write_mrc, write_tlt


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


@pytest.fixture
def cli(monkeypatch, scheduler, capsys):
    """``cli(*args)`` runs ``cryoflow ARGS`` and returns (exit code, stdout, stderr)."""
    from cryoflow.cli.main import main

    monkeypatch.setenv("CRYOFLOW_SCHEDULER", scheduler)

    def run(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return int(exc.value.code or 0), out, err

    return run


SHAPE = (16, 48, 48)


@pytest.fixture(scope="module")
def series():
    vol = phantom(SHAPE, radius=14)
    return vol, (project_sum(vol, ANGLES) + BACKGROUND).astype(np.float32)


def reconstruct(cli, store: Path, name: str, *more: object) -> np.ndarray:
    code, out, err = cli("reconstruct", store, "--name", name, *more)
    assert code == 0, err
    assert f"reconstructed {name}" in out
    return S.open_volume(store, name, "tomogram").values


@pytest.mark.parametrize("axis", [-85.0, 90.0])
def test_tilt_axis_option_reconstructs_as_well_as_the_unrotated_series(
    tmp_path, cli, series, axis
) -> None:
    vol, images_y = series
    if axis == 90.0:  # exact: 90 degrees counter-clockwise with y up
        images = np.ascontiguousarray(np.rot90(images_y, k=-1, axes=(1, 2)))
    else:
        images = rotate_imod(images_y, axis)
    write_mrc(tmp_path / "rot.mrc", images, voxel_size=4.0)
    write_tlt(tmp_path / "rot.rawtlt", ANGLES)
    write_mrc(tmp_path / "upright.mrc", images_y, voxel_size=4.0)
    write_tlt(tmp_path / "upright.rawtlt", ANGLES)
    store = tmp_path / "data.zarr"
    code, out, err = cli("ingest", tmp_path / "rot.mrc", "--out", store, "--tilt-axis", axis)
    assert code == 0, err
    assert f"tilt axis {axis:g}° (from --tilt-axis)" in out
    assert "31 tilts" in out and "rot.rawtlt" in out and "pixel size 4 Å (from MRC header)" in out
    assert S.read_geometry(store, "rot").tilt_axis_deg == pytest.approx(axis)
    assert cli("ingest", tmp_path / "upright.mrc", "--out", store)[0] == 0
    rotated = reconstruct(cli, store, "rot", "--thickness", SHAPE[0])
    upright = reconstruct(cli, store, "upright", "--thickness", SHAPE[0])
    r_rot, r_up = corr(rotated, vol), corr(upright, vol)
    assert r_up > 0.75
    assert abs(r_rot - r_up) < (0.005 if axis == 90.0 else 0.05), (r_rot, r_up)
    assert corr(rotated, upright) > (0.999 if axis == 90.0 else 0.97)


def test_tilt_axis_option_overrides_the_mdoc_and_bad_values_are_refused(tmp_path, cli) -> None:
    data = np.random.default_rng(3).normal(size=(5, 16, 12)).astype(np.float32)
    write_mrc(tmp_path / "TS_01.mrc", data, voxel_size=1.0)
    write_mdoc(tmp_path / "TS_01.mrc.mdoc", [-40, -20, 0, 20, 40], pixel=2.7, tilt_axis=85.3)
    store = tmp_path / "s.zarr"
    code, out, err = cli("ingest", tmp_path / "TS_01.mrc", "--out", store, "--tilt-axis", "abc")
    assert code == 2 and "--tilt-axis" in err and not store.exists()
    code, out, err = cli("ingest", tmp_path / "TS_01.mrc", "--out", store, "--tilt-axis", 400)
    assert code == 2 and "--tilt-axis" in err and not store.exists()
    code, out, _ = cli("ingest", tmp_path / "TS_01.mrc", "--out", store, "--name", "a")
    assert code == 0 and "tilt axis 85.3° (from TS_01.mrc.mdoc (Tilt axis angle))" in out
    assert "pixel size 2.7 Å (from mdoc)" in out
    code, out, _ = cli(
        "ingest", tmp_path / "TS_01.mrc", "--out", store, "--name", "b", "--tilt-axis", -3.5
    )
    assert code == 0 and "tilt axis -3.5° (from --tilt-axis)" in out
    assert S.read_geometry(store, "a").tilt_axis_deg == pytest.approx(85.3)
    assert S.read_geometry(store, "b").tilt_axis_deg == pytest.approx(-3.5)


def test_symbolic_link_is_ingested_under_its_own_stem_with_its_own_angles(tmp_path, cli) -> None:
    data = np.random.default_rng(4).normal(size=(5, 12, 10)).astype(np.float32)
    write_mrc(tmp_path / "good.mrc", data, voxel_size=3.0)
    write_tlt(tmp_path / "good.rawtlt", [0, 0, 0, 0, 0])
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    (link_dir / "TS_07.mrc").symlink_to(tmp_path / "good.mrc")
    write_tlt(link_dir / "TS_07.rawtlt", [-50, -25, 0, 25, 50])
    store = tmp_path / "s.zarr"
    code, out, err = cli("ingest", link_dir / "TS_07.mrc", "--out", store)
    assert code == 0, err
    assert "ingested TS_07" in out and str(link_dir / "TS_07.rawtlt") in out
    ts = S.open_tilt_series(store, "TS_07")
    np.testing.assert_allclose(ts["angle"], [-50, -25, 0, 25, 50])
    np.testing.assert_array_equal(ts.values, data)
    assert S.list_tomograms(store) == ["TS_07"]
    # a link with no angle file beside it uses the one beside its target, and says so
    (link_dir / "TS_08.mrc").symlink_to(tmp_path / "good.mrc")
    code, out, err = cli("ingest", link_dir / "TS_08.mrc", "--out", store)
    assert code == 0, err
    assert "no angle file beside the link TS_08.mrc" in out and str(tmp_path / "good.rawtlt") in out
    assert S.list_tomograms(store) == ["TS_07", "TS_08"]


def test_fei_old_extended_header_gives_pixel_size_angles_and_axis(tmp_path, cli) -> None:
    path, data = fei_old_style(tmp_path, pixel_m=3.36e-9, axis=-12.5)  # header: 1.0 Å, unset
    store = tmp_path / "s.zarr"
    code, out, err = cli("ingest", path, "--out", store)  # no angle file beside it
    assert code == 0, err
    assert "pixel size 33.6 Å (from FEI extended header)" in out
    assert "angles -60..60° from FEI extended header" in out
    assert "tilt axis -12.5° (from haadf.mrc: FEI extended header)" in out
    ts = S.open_tilt_series(store, "haadf")
    assert ts.attrs["pixel_size_angstrom"] == pytest.approx(33.6)
    np.testing.assert_allclose(ts["angle"], np.arange(-60.0, 61.0, 15.0))
    assert S.read_geometry(store, "haadf").tilt_axis_deg == pytest.approx(-12.5)
    assert cli("reconstruct", store, "--name", "haadf", "--thickness", 8)[0] == 0
    code, _, err = cli(
        "export", store, "--name", "haadf", "--key", "tomogram", "--out", tmp_path / "t.mrc"
    )
    assert code == 0, err
    import mrcfile

    with mrcfile.open(tmp_path / "t.mrc", permissive=True) as m:  # not the header's 1.0 Å
        assert float(m.voxel_size.x) == pytest.approx(33.6, rel=1e-4)


def test_default_thickness_is_estimated_and_the_volume_size_printed(tmp_path, cli) -> None:
    vol = np.zeros((64, 40, 64), np.float32)  # a 14-voxel-thick slab in a 64-wide detector
    slab = phantom((14, 40, 64), radius=18)
    vol[25:39] = slab + 0.3 * (slab == 0)
    images = (project_sum(vol, ANGLES) + BACKGROUND).astype(np.float32)
    write_mrc(tmp_path / "slab.mrc", images, voxel_size=5.0)
    write_tlt(tmp_path / "slab.tlt", ANGLES)
    store = tmp_path / "s.zarr"
    assert cli("ingest", tmp_path / "slab.mrc", "--out", store)[0] == 0
    code, out, err = cli("reconstruct", store, "--name", "slab")
    assert code == 0, err
    z = S.open_volume(store, "slab", "tomogram").shape[0]
    assert 16 <= z <= 40, out  # holds the slab, far from the 64-voxel detector width
    assert f"volume {z} x 40 x 64 float32 voxels" in out and "estimated from the data" in out


def test_axis_order_2_1_3_is_ingested_as_z_y_x(tmp_path, cli) -> None:
    from tests.io_files import patch_bytes

    data = np.random.default_rng(8).normal(size=(5, 12, 10)).astype(np.float32)  # (z, y, x)
    disk = np.ascontiguousarray(data.transpose(0, 2, 1))  # mapc = 2 (y), mapr = 1 (x), maps = 3
    path = write_mrc(tmp_path / "TS_03.mrc", disk, voxel_size=3.0)
    patch_bytes(path, 64, np.array([2, 1, 3], dtype="<i4").tobytes())
    write_tlt(tmp_path / "TS_03.rawtlt", [-40, -20, 0, 20, 40])
    store = tmp_path / "s.zarr"
    code, out, err = cli("ingest", path, "--out", store)
    assert code == 0, err
    assert "axis order mapc, mapr, maps = 2, 1, 3" in err and "5 tilts, 12 x 10 pixels" in out
    np.testing.assert_array_equal(S.open_tilt_series(store, "TS_03").values, data)


def test_mdoc_rotation_angle_alone_is_not_taken_as_the_axis(tmp_path, cli) -> None:
    data = np.random.default_rng(9).normal(size=(5, 12, 10)).astype(np.float32)
    write_mrc(tmp_path / "TS_04.mrc", data, voxel_size=2.0)
    mdoc = write_mdoc(tmp_path / "TS_04.mrc.mdoc", [-40, -20, 0, 20, 40], pixel=2.0, tilt_axis=None)
    mdoc.write_text(mdoc.read_text().replace("TiltAngle =", "RotationAngle = 3.35\nTiltAngle ="))
    store = tmp_path / "s.zarr"
    code, out, err = cli("ingest", tmp_path / "TS_04.mrc", "--out", store)
    assert code == 0, err
    assert "RotationAngle (3.35°) is not the tilt-axis angle" in err and "--tilt-axis" in err
    assert "tilt axis 0° (none recorded: the image y axis; else --tilt-axis DEG)" in out
    assert S.read_geometry(store, "TS_04").tilt_axis_deg == 0.0
