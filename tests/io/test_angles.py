"""Angle files: IMOD .tlt/.rawtlt, SerialEM .mdoc, companion lookup, bad files naming the line."""

from __future__ import annotations

import pytest

from cryoflow.errors import AngleFileError
from cryoflow.io.angles import find_companion, read_angles
from tests.io_files import write_mdoc, write_tlt


def test_tlt_with_blank_lines(tmp_path) -> None:
    path = tmp_path / "a.tlt"
    path.write_text("\n-60.0\n  -30\n\n0.5\n30\n60\n\n")
    rec = read_angles(path)
    assert rec.angles_deg == (-60.0, -30.0, 0.5, 30.0, 60.0)
    assert rec.pixel_size_angstrom is None and rec.tilt_axis_deg is None


def test_rawtlt(tmp_path) -> None:
    rec = read_angles(write_tlt(tmp_path / "a.rawtlt", [0, 3, -3]))
    assert rec.angles_deg == (0.0, 3.0, -3.0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0\n1\nnan\n", "line 3: tilt angle 'nan' is not finite"),
        ("0\ninf\n", "line 2: tilt angle 'inf' is not finite"),
        ("0\n\nabc\n", "line 3: cannot parse tilt angle 'abc'"),
        ("0\n95\n", "line 2: tilt angle 95.0 is outside -90..90"),
        ("\n\n", "holds no tilt angles"),
    ],
)
def test_bad_tlt_names_file_and_line(tmp_path, text, match) -> None:
    path = tmp_path / "bad.tlt"
    path.write_text(text)
    with pytest.raises(AngleFileError, match=match) as info:
        read_angles(path)
    assert str(info.value).startswith(str(path))


def test_mdoc_sorted_by_zvalue_with_pixel_and_axis(tmp_path) -> None:
    angles = [0.0, 3.0, -3.0, 6.0]
    path = write_mdoc(tmp_path / "TS.mdoc", angles, pixel=2.68, tilt_axis=-94.5, order=[2, 0, 3, 1])
    rec = read_angles(path)
    assert rec.angles_deg == tuple(angles)
    assert rec.pixel_size_angstrom == 2.68
    assert rec.tilt_axis_deg == -94.5


def test_mdoc_without_tilt_axis_line(tmp_path) -> None:
    rec = read_angles(write_mdoc(tmp_path / "TS.mdoc", [1.0, 2.0], tilt_axis=None))
    assert rec.tilt_axis_deg is None


def test_mdoc_non_finite_angle_names_line(tmp_path) -> None:
    path = write_mdoc(tmp_path / "TS.mdoc", [0.0, float("nan"), 3.0], tilt_axis=None)
    line = path.read_text().splitlines().index("TiltAngle = nan") + 1
    with pytest.raises(AngleFileError, match=f"line {line}: tilt angle 'nan' is not finite"):
        read_angles(path)


def test_mdoc_section_without_angle(tmp_path) -> None:
    path = tmp_path / "x.mdoc"
    path.write_text(
        "PixelSpacing = 1.0\n\n[ZValue = 0]\nTiltAngle = 1.0\n\n[ZValue = 1]\nExposureTime = 1\n"
    )
    with pytest.raises(AngleFileError, match="ZValue = 1 has no TiltAngle"):
        read_angles(path)


def test_unknown_suffix_and_binary_file(tmp_path) -> None:
    with pytest.raises(AngleFileError, match="unknown angle file type '.txt'"):
        read_angles(tmp_path / "a.txt")
    path = tmp_path / "b.tlt"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(AngleFileError, match="not a text file"):
        read_angles(path)


def test_companion_order_mdoc_rawtlt_tlt(tmp_path) -> None:
    mrc = tmp_path / "TS_01.mrc"
    assert find_companion(mrc) is None
    write_tlt(tmp_path / "TS_01.tlt", [0])
    assert find_companion(mrc) == tmp_path / "TS_01.tlt"
    write_tlt(tmp_path / "TS_01.rawtlt", [0])
    assert find_companion(mrc) == tmp_path / "TS_01.rawtlt"
    write_mdoc(tmp_path / "TS_01.mrc.mdoc", [0])
    assert find_companion(mrc) == tmp_path / "TS_01.mrc.mdoc"
    write_mdoc(tmp_path / "TS_01.mdoc", [0])
    assert find_companion(mrc) == tmp_path / "TS_01.mdoc"
    assert find_companion(tmp_path / "TS_01.mrc.gz") == tmp_path / "TS_01.mdoc"
