"""MRC headers with anisotropic voxels and angle files at their edges, checked against what
mrcfile reads and against values written by hand (public functions only)."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryoflow.errors import AngleFileError
from cryoflow.io.angles import read_angles, read_mdoc, read_tlt
from cryoflow.io.mrc import mrc_dask_array, read_mrc_block, read_mrc_header


# ---------------------------------------------------------------------------- MRC voxel sizes
def _anisotropic(path: Path, data: np.ndarray, cell_xyz, grid_xyz) -> Path:
    """An MRC whose cell (Å) and sampling grid differ on every axis, and differ from nx/ny/nz."""
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)
        m.header.cella.x, m.header.cella.y, m.header.cella.z = cell_xyz
        m.header.mx, m.header.my, m.header.mz = grid_xyz
    return path


def test_voxel_sizes_are_per_axis_in_z_y_x_order(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)  # (nz, ny, nx)
    # x: 50 Å over 10 samples = 5 Å; y: 24 Å over 8 = 3 Å; z: 21 Å over 3 = 7 Å
    path = _anisotropic(tmp_path / "a.mrc", data, (50.0, 24.0, 21.0), (10, 8, 3))
    info = read_mrc_header(path)
    assert info.shape == (3, 4, 5)
    assert info.voxel_size_angstrom == pytest.approx((7.0, 3.0, 5.0))
    with mrcfile.open(path) as m:  # what the library users would use says the same
        vs = m.voxel_size
        assert info.voxel_size_angstrom == pytest.approx((float(vs.z), float(vs.y), float(vs.x)))
        np.testing.assert_array_equal(read_mrc_block(info, (slice(None),) * 3), m.data)
        np.testing.assert_array_equal(mrc_dask_array(info, (1, 4, 5)).compute(), m.data)


def test_grid_not_equal_to_the_shape_is_used_for_the_voxel_size(tmp_path: Path) -> None:
    data = np.zeros((2, 6, 4), dtype=np.int16)
    # cubic cell, but sampled 2, 12 and 8 times: voxel sizes 12/2, 12/12, 12/8 (z, y, x)
    path = _anisotropic(tmp_path / "g.mrc", data, (12.0, 12.0, 12.0), (8, 12, 2))
    assert read_mrc_header(path).voxel_size_angstrom == pytest.approx((6.0, 1.0, 1.5))


def test_unset_axes_give_zero_not_a_neighbours_value(tmp_path: Path) -> None:
    data = np.zeros((2, 3, 4), dtype=np.float32)
    path = _anisotropic(tmp_path / "u.mrc", data, (8.0, 0.0, 6.0), (4, 3, 0))
    # x: 8/4 = 2; y: cell 0 -> unknown (0); z: grid 0 -> unknown (0)
    assert read_mrc_header(path).voxel_size_angstrom == pytest.approx((0.0, 0.0, 2.0))


# ---------------------------------------------------------------------------- tilt angles
@pytest.mark.parametrize("text", ["90", "-90", "90.0", "-90.00", "+90"])
def test_exactly_ninety_degrees_is_a_valid_tilt(tmp_path: Path, text: str) -> None:
    path = tmp_path / "a.tlt"
    path.write_text(f"-30\n{text}\n0\n")
    assert read_tlt(path).angles_deg == (-30.0, float(text), 0.0)


@pytest.mark.parametrize("text", ["90.001", "-90.5", "180"])
def test_beyond_ninety_degrees_is_refused_naming_the_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "a.rawtlt"
    path.write_text(f"-30\n\n{text}\n")
    with pytest.raises(AngleFileError, match=r"a\.rawtlt: line 3: tilt angle .* outside -90\.\.90"):
        read_angles(path)


def _mdoc(path: Path, header_pixel: float | None, section_pixels: list[float], angles) -> Path:
    lines = [] if header_pixel is None else [f"PixelSpacing = {header_pixel}"]
    lines += ["ImageFile = x.mrc", "DataMode = 1", ""]
    lines += ["[T = SerialEM: Digitized on a test microscope   01-Jan-24  10:00:00    ]", ""]
    lines += ["[T =     Tilt axis angle = -84.7, binning = 1  spot = 8  camera = 0]", ""]
    for z, (angle, pixel) in enumerate(zip(angles, section_pixels, strict=True)):
        lines += [f"[ZValue = {z}]", f"TiltAngle = {angle}", f"PixelSpacing = {pixel}", ""]
    path.write_text("\n".join(lines))
    return path


def test_mdoc_pixel_spacing_is_the_first_one(tmp_path: Path) -> None:
    path = _mdoc(tmp_path / "a.mdoc", 2.17, [4.34, 8.68, 1.0], [-60.0, 0.0, 90.0])
    record = read_mdoc(path)
    assert record.pixel_size_angstrom == pytest.approx(2.17)
    assert record.angles_deg == (-60.0, 0.0, 90.0)  # 90 is allowed in an mdoc too
    assert record.tilt_axis_deg == pytest.approx(-84.7)


def test_mdoc_without_a_header_pixel_spacing_takes_the_first_section(tmp_path: Path) -> None:
    path = _mdoc(tmp_path / "b.mdoc", None, [3.5, 7.0], [-10.0, 10.0])
    assert read_mdoc(path).pixel_size_angstrom == pytest.approx(3.5)
