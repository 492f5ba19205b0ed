"""Every way an angle file can be unusable gives one AngleFileError naming the file (and the
line), with the whole message checked; companion files for every MRC suffix."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryoflow.errors import AngleFileError
from cryoflow.io.angles import find_companion, read_angles, read_mdoc, read_tlt

HEAD = [
    "PixelSpacing = 2.5",
    "ImageFile = x.mrc",
    "",
    "[T = SerialEM: Digitized on a test microscope   01-Jan-24  10:00:00    ]",
    "",
]


def _mdoc(tmp_path: Path, body: list[str], head: list[str] = HEAD) -> Path:
    path = tmp_path / "bad.mdoc"
    path.write_text("\n".join(head + body) + "\n")
    return path


def _message(path: Path) -> str:
    with pytest.raises(AngleFileError) as info:
        read_angles(path)
    assert info.value.path == str(path)
    return str(info.value)


SECTION = ["[ZValue = 0]", "TiltAngle = 1.0", ""]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (["[ZValue = x]", "TiltAngle = 0", ""], "line 6: cannot parse ZValue 'x'"),
        (SECTION + ["[ZValue = 0]", "TiltAngle = 2", ""], "line 9: ZValue 0 appears twice"),
        (["TiltAngle = 3"], "line 6: TiltAngle outside a [ZValue = n] section"),
        ([], "holds no [ZValue = n] sections"),
        (SECTION + ["[ZValue = 1]", "ExposureTime = 1", ""], "section ZValue = 1 has no TiltAngle"),
        (
            ["[ZValue = 0]", "TiltAngle = 91", ""],
            "line 7: tilt angle 91.0 is outside -90..90 degrees",
        ),
    ],
    ids=["bad-zvalue", "twice", "outside", "no-sections", "no-angle", "beyond-90"],
)
def test_bad_mdoc_sections(tmp_path, body, problem) -> None:
    path = _mdoc(tmp_path, body)
    assert _message(path) == f"{path}: {problem}"


@pytest.mark.parametrize(
    ("pixel", "problem"),
    [
        ("0", "line 1: PixelSpacing must be > 0, got '0'"),
        ("-1.5", "line 1: PixelSpacing must be > 0, got '-1.5'"),
        ("abc", "line 1: cannot parse PixelSpacing 'abc'"),
        ("inf", "line 1: PixelSpacing 'inf' is not finite"),
    ],
)
def test_bad_pixel_spacing(tmp_path, pixel, problem) -> None:
    path = _mdoc(tmp_path, SECTION, [f"PixelSpacing = {pixel}", *HEAD[1:]])
    assert _message(path) == f"{path}: {problem}"


def test_bad_tilt_axis_line(tmp_path) -> None:
    head = [*HEAD, "[T =     Tilt axis angle = 1e999, binning = 1]", ""]
    path = _mdoc(tmp_path, SECTION, head)
    assert _message(path) == f"{path}: line 6: tilt axis angle '1e999' is not finite"


def test_records_name_their_file(tmp_path) -> None:
    tlt = tmp_path / "a.tlt"
    tlt.write_text("1\n2\n")
    assert read_tlt(tlt).path == str(tlt)
    path = _mdoc(tmp_path, SECTION)
    assert read_mdoc(path).path == str(path) and read_mdoc(path).angles_deg == (1.0,)


def test_missing_empty_and_binary_files(tmp_path) -> None:
    assert _message(tmp_path / "none.tlt") == f"{tmp_path / 'none.tlt'}: no such file"
    empty = tmp_path / "e.rawtlt"
    empty.write_text("\n \n")
    assert _message(empty) == f"{empty}: holds no tilt angles"
    binary = tmp_path / "b.tlt"
    binary.write_bytes(b"12\n\xff\xfe3\n")
    assert _message(binary) == f"{binary}: not a text file (invalid start byte at byte 3)"
    other = tmp_path / "a.txt"
    other.write_text("1\n")
    assert _message(other) == (
        f"{other}: unknown angle file type '.txt'; expected one of .mdoc, .rawtlt, .tlt"
    )


@pytest.mark.parametrize(
    "name",
    [
        "TS_7.mrc",
        "TS_7.mrcs",
        "TS_7.st",
        "TS_7.ali",
        "TS_7.rec",
        "TS_7.map",
        "TS_7.MRC",
        "TS_7.st.gz",
        "TS_7.mrc.bz2",
        "TS_7.ALI.BZ2",
    ],
)
def test_companion_of_every_mrc_suffix(tmp_path, name) -> None:
    (tmp_path / "TS_7.tlt").write_text("0\n")
    assert find_companion(tmp_path / name) == tmp_path / "TS_7.tlt"


def test_companion_of_an_unknown_suffix_uses_the_stem(tmp_path) -> None:
    (tmp_path / "TS_8.rawtlt").write_text("0\n")
    assert find_companion(tmp_path / "TS_8.tif") == tmp_path / "TS_8.rawtlt"
    assert find_companion(tmp_path / "TS_9.tif") is None
