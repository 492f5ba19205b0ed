"""MRC files shaped like real microscope output: FEI (old style, FEI1, FEI2) and SerialEM
extended headers, a non-standard axis order, and files that are no MRC at all.

Every file is written byte by byte as its format lays it out: the 1024-byte header by mrcfile,
then the fields mrcfile does not write (``nint``/``nreal`` at bytes 128/130, ``exttyp`` at 104,
``mapc/mapr/maps`` at 64..75) patched in, and the extended header built from the format's record
layout.
"""

from __future__ import annotations

import warnings

import mrcfile
import numpy as np
import pytest
from mrcfile.dtypes import get_ext_header_dtype

from cryoflow.errors import InputFileError, NonStandardInputWarning
from cryoflow.io import mrc
from cryoflow.io.mrc_extended import ExtendedHeader, resolve_pixel_size
from tests.io_files import patch_bytes, write_mrc

ANGLES = np.array([-60.0, -45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0, 60.0])


def stack(n: int = ANGLES.size, ny: int = 12, nx: int = 10) -> np.ndarray:
    rng = np.random.default_rng(11)
    return rng.normal(size=(n, ny, nx)).astype(np.float32)


def set_int16(path, offset: int, *values: int) -> None:
    patch_bytes(path, offset, np.array(values, dtype="<i2").tobytes())


def fei_old_style(tmp_path, *, pixel_m: float = 3.36e-9, axis: float = -12.5):
    """An old FEI/Agard file: 1024 records of 32 float32, nint = 0, nreal = 32, no EXTTYP."""
    ext = np.zeros((1024, 32), dtype="<f4")
    ext[: ANGLES.size, 0] = ANGLES  # a_tilt
    ext[: ANGLES.size, 9] = 1234.5  # mean_int
    ext[: ANGLES.size, 10] = axis  # tilt_axis
    ext[: ANGLES.size, 11] = pixel_m  # pixel_size, metres
    ext[: ANGLES.size, 12] = 225000.0  # magnification
    data = stack()
    path = write_mrc(
        tmp_path / "haadf.mrc", data, voxel_size=1.0, extended_header=ext.view(np.uint8).ravel()
    )
    patch_bytes(path, 104, b"\0\0\0\0")  # exttyp unset, as FEI wrote them
    set_int16(path, 128, 0, 32)
    return path, data


def test_fei_old_style_pixel_size_replaces_the_unset_header_value(tmp_path) -> None:
    path, data = fei_old_style(tmp_path)
    info = mrc.read_mrc_header(path)
    assert info.data_offset == 1024 + 1024 * 128
    assert info.voxel_size_angstrom[2] == pytest.approx(1.0)  # the header's own (unset) value
    ext = info.extended
    assert ext.kind == "FEI"
    assert ext.pixel_size_angstrom == pytest.approx(33.6, rel=1e-6)
    np.testing.assert_allclose(ext.tilt_angles_deg, ANGLES)
    assert ext.tilt_axis_deg == pytest.approx(-12.5) and ext.tilt_axis_from == "FEI extended header"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_pixel_size(info.voxel_size_angstrom[2], ext, path=path) == (
            pytest.approx(33.6),
            "FEI extended header",
        )
    np.testing.assert_array_equal(mrc.mrc_dask_array(info, (1, 12, 10)).compute(), data)


@pytest.mark.parametrize("kind", [b"FEI1", b"FEI2"])
def test_fei1_and_fei2_records(tmp_path, kind) -> None:
    dtype = get_ext_header_dtype(kind, "<")
    rec = np.zeros(ANGLES.size, dtype=dtype)
    rec["Metadata size"] = dtype.itemsize
    rec["Metadata version"] = 0 if kind == b"FEI1" else 2
    rec["Bitmask 1"] = (1 << 7) | (1 << 12) | (1 << 14) | (1 << 15)
    rec["Alpha tilt"] = ANGLES
    rec["Tilt axis angle"] = 86.0
    rec["Pixel size X"] = 2.1e-10
    rec["Pixel size Y"] = 2.1e-10
    data = stack()
    path = write_mrc(tmp_path / "epu.mrc", data, voxel_size=0.0, extended_header=rec, exttyp=kind)
    info = mrc.read_mrc_header(path)
    assert info.extended.kind == kind.decode()
    assert info.extended.pixel_size_angstrom == pytest.approx(2.1)
    np.testing.assert_allclose(info.extended.tilt_angles_deg, ANGLES)
    assert info.extended.tilt_axis_deg == pytest.approx(86.0)
    assert resolve_pixel_size(info.voxel_size_angstrom[2], info.extended) == (
        pytest.approx(2.1),
        f"{kind.decode()} extended header",
    )
    # a bitmask without the pixel-size bit: the pixel size is not trusted
    rec["Bitmask 1"] = 1 << 7
    path = write_mrc(tmp_path / "epu2.mrc", data, voxel_size=0.0, extended_header=rec, exttyp=kind)
    assert mrc.read_mrc_header(path).extended.pixel_size_angstrom is None


def test_serial_em_tilt_angles_and_axis_label(tmp_path) -> None:
    flags = 1 | 4 | 8  # tilt angle, stage position, magnification: 2 + 4 + 2 bytes
    ext = np.zeros((ANGLES.size, 4), dtype="<i2")
    ext[:, 0] = np.rint(ANGLES * 100)
    ext[:, 1:3] = [[250, -125]]  # stage x, y * 25
    ext[:, 3] = 330  # magnification / 100
    data = stack()
    path = write_mrc(
        tmp_path / "TS_01.mrc",
        data,
        voxel_size=2.7,
        extended_header=ext.view(np.uint8).ravel(),
        exttyp=b"SERI",
    )
    set_int16(path, 128, 8, flags)
    with mrcfile.open(path, "r+", permissive=True) as m:
        m.header.nlabl = 2
        m.header.label[0] = (
            b"SerialEM: Digitized on EMBL Krios                     15-Mar-24  10:11:12"
        )
        m.header.label[1] = b"    Tilt axis angle = 85.3, binning = 1  spot = 8  camera = 0"
    info = mrc.read_mrc_header(path)
    assert info.extended.kind == "SERI"
    np.testing.assert_allclose(info.extended.tilt_angles_deg, ANGLES)
    assert info.extended.tilt_axis_deg == pytest.approx(85.3)
    assert info.extended.tilt_axis_from == "MRC label"
    assert info.extended.pixel_size_angstrom is None  # SerialEM keeps it in the main header
    assert resolve_pixel_size(info.voxel_size_angstrom[2], info.extended) == (
        pytest.approx(2.7),
        "MRC header",
    )


def test_garbage_in_a_typed_extended_header_is_ignored_with_a_note(tmp_path) -> None:
    ext = np.arange(4096, dtype=np.uint8)
    path = write_mrc(tmp_path / "odd.mrc", stack(), extended_header=ext, exttyp=b"SERI")
    set_int16(path, 128, 7, 3)  # 7 bytes per section, but flags 1 | 2 imply 8
    with pytest.warns(NonStandardInputWarning, match="SerialEM extended header"):
        info = mrc.read_mrc_header(path)
    assert info.extended.tilt_angles_deg is None


def test_pixel_size_still_unset_warns() -> None:
    with pytest.warns(NonStandardInputWarning, match="pixel size is unset"):
        value, source = resolve_pixel_size(1.0, ExtendedHeader(), path="x.mrc")
    assert (value, source) == (1.0, "unset")
    with pytest.warns(NonStandardInputWarning, match="using 1 Å"):
        assert resolve_pixel_size(0.0, ExtendedHeader())[0] == 1.0
    assert resolve_pixel_size(1.0, ExtendedHeader(), mdoc_angstrom=3.1) == (3.1, "mdoc")


PERMUTATIONS = [(1, 2, 3), (2, 1, 3), (3, 2, 1), (1, 3, 2), (2, 3, 1), (3, 1, 2)]


@pytest.mark.parametrize("order", PERMUTATIONS)
def test_axis_order_is_undone(tmp_path, order) -> None:
    data = stack(n=5, ny=12, nx=10)  # (z, y, x)
    mapc, mapr, maps = order
    # the data block is (sections, rows, columns) holding axes (maps, mapr, mapc); 3 z, 2 y, 1 x
    disk = np.ascontiguousarray(data.transpose(3 - maps, 3 - mapr, 3 - mapc))
    path = write_mrc(tmp_path / "perm.mrc", disk)
    patch_bytes(path, 64, np.array(order, dtype="<i4").tobytes())
    if order == (1, 2, 3):
        info = mrc.read_mrc_header(path)
    else:
        with pytest.warns(NonStandardInputWarning, match="axis order mapc, mapr, maps"):
            info = mrc.read_mrc_header(path)
    assert info.shape == data.shape and info.axis_order == order
    np.testing.assert_array_equal(mrc.mrc_dask_array(info, (2, 5, 4)).compute(), data)
    np.testing.assert_array_equal(
        mrc.read_mrc_block(info, (slice(1, 2), slice(3, 9), slice(0, 10))), data[1:2, 3:9]
    )


def test_bad_axis_order_is_refused(tmp_path) -> None:
    path = write_mrc(tmp_path / "bad.mrc", stack())
    patch_bytes(path, 64, np.array([1, 1, 3], dtype="<i4").tobytes())
    with pytest.raises(InputFileError, match="mapc, mapr, maps = 1, 1, 3 is not a permutation"):
        mrc.read_mrc_header(path)


def test_png_renamed_mrc_is_not_an_mrc_file(tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = tmp_path / "TS_01.mrc"
    plt.imsave(path, np.random.default_rng(0).random((64, 64)), format="png")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 1024
    with pytest.raises(InputFileError, match="not an MRC file: it starts like a PNG image") as exc:
        mrc.read_mrc_header(path)
    assert "mode" not in str(exc.value) and str(path) in str(exc.value)


def test_random_bytes_are_not_an_mrc_file(tmp_path) -> None:
    path = tmp_path / "noise.mrc"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputFileError, match="not an MRC file: no 'MAP ' stamp"):
        mrc.read_mrc_header(path)
