"""Tilt-axis angle (mdoc, MRC, user) with its source; links keep their own name and angle file."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from cryoflow.io import angles as A
from cryoflow.io import mrc
from tests.io_files import write_mdoc, write_mrc, write_tlt

ANGLES = [-30.0, -15.0, 0.0, 15.0, 30.0]


def test_mdoc_title_gives_the_axis_and_wins_over_the_mrc(tmp_path) -> None:
    record = A.read_mdoc(write_mdoc(tmp_path / "TS_01.mrc.mdoc", ANGLES, tilt_axis=85.3))
    assert record.tilt_axis_deg == pytest.approx(85.3) and record.tilt_axis_key == "Tilt axis angle"
    axis = A.resolve_tilt_axis(
        record=record, mrc_axis_deg=-12.0, mrc_axis_from="FEI extended header"
    )
    assert axis == A.TiltAxis(85.3, "TS_01.mrc.mdoc (Tilt axis angle)")
    assert axis.describe() == "tilt axis 85.3° (from TS_01.mrc.mdoc (Tilt axis angle))"
    assert A.resolve_tilt_axis(user_deg=-94.7, record=record) == A.TiltAxis(-94.7, "--tilt-axis")


def test_rotation_angle_sections_are_recorded_but_are_not_the_axis(tmp_path) -> None:
    path = write_mdoc(tmp_path / "TS_02.mdoc", ANGLES, tilt_axis=None)
    text = path.read_text().replace("TiltAngle =", "RotationAngle = 174.6\nTiltAngle =")
    path.write_text(text)
    record = A.read_mdoc(path)
    assert record.rotation_angle_deg == pytest.approx(174.6)
    assert record.tilt_axis_deg is None and record.tilt_axis_key == ""
    assert A.resolve_tilt_axis(record=record) == A.TiltAxis(0.0, "none recorded (0)")


def test_mrc_extended_header_then_zero(tmp_path) -> None:
    tlt = A.read_tlt(write_tlt(tmp_path / "a.tlt", ANGLES))
    got = A.resolve_tilt_axis(
        record=tlt,
        mrc_axis_deg=-12.5,
        mrc_axis_from="FEI extended header",
        mrc_path=tmp_path / "a.mrc",
    )
    assert got == A.TiltAxis(-12.5, "a.mrc: FEI extended header")
    assert A.resolve_tilt_axis(record=tlt) == A.TiltAxis(0.0, "none recorded (0)")


def test_serial_em_label_reaches_the_resolver(tmp_path) -> None:
    import mrcfile

    path = write_mrc(tmp_path / "TS_03.mrc", np.zeros((5, 8, 8), np.float32))
    with mrcfile.open(path, "r+") as m:
        m.header.nlabl = 1
        m.header.label[0] = b"Tilt axis angle = -94.70, binning = 2  spot = 7  camera = 1"
    info = mrc.read_mrc_header(path)
    axis = A.resolve_tilt_axis(
        mrc_axis_deg=info.extended.tilt_axis_deg,
        mrc_axis_from=info.extended.tilt_axis_from,
        mrc_path=path,
    )
    assert axis == A.TiltAxis(-94.7, "TS_03.mrc: MRC label")


@pytest.mark.parametrize("bad", ["abc", "nan", 400.0, None])
def test_user_tilt_axis_is_checked(bad) -> None:
    if bad is None:
        with pytest.raises(ValueError, match="a number of degrees"):
            A.parse_tilt_axis(bad)
        return
    with pytest.raises(ValueError, match="--tilt-axis must be"):
        A.parse_tilt_axis(bad)


def test_a_symbolic_link_keeps_its_own_stem_and_angle_file(tmp_path) -> None:
    data_dir = tmp_path / "raw"
    data_dir.mkdir()
    target = write_mrc(data_dir / "good.mrc", np.zeros((5, 8, 8), np.float32))
    write_tlt(data_dir / "good.rawtlt", [0.0, 1.0, 2.0, 3.0, 4.0])
    link = tmp_path / "TS_07.mrc"
    os.symlink(target, link)
    own = write_tlt(tmp_path / "TS_07.rawtlt", ANGLES)
    assert A.input_path(link) == link and A.input_path(link).is_symlink()
    assert A.input_stem(link) == "TS_07"
    assert A.find_companion(link) == own
    assert A.read_angles(A.find_companion(link)).angles_deg == tuple(ANGLES)
    # relative links too, named from another working directory
    rel = tmp_path / "TS_08.mrc"
    os.symlink(os.path.relpath(target, tmp_path), rel)
    write_tlt(tmp_path / "TS_08.tlt", ANGLES)
    assert A.find_companion(rel) == tmp_path / "TS_08.tlt"


def test_mdocfile_log_line_is_silenced(tmp_path, capfd) -> None:
    path = write_mdoc(tmp_path / "TS_04.mdoc", ANGLES)
    path.write_text(path.read_text().replace("TiltAngle =", "SomeNewSerialEMKey = 3\nTiltAngle ="))
    level = logging.getLogger("mdocfile").level
    A.read_mdoc(path)
    assert "Unknown fields" not in capfd.readouterr().err
    assert logging.getLogger("mdocfile").level == level
