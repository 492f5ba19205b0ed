"""Particle files: STAR (RELION 4 voxels, RELION 5 centred Å), CSV, copick JSON; bad files refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import starfile

from cryoflow.errors import InputFileError
from cryoflow.io.copick import write_copick_tree
from cryoflow.io.particles import TomogramInfo, read_particles, write_particles

INFO = {"TS_01": TomogramInfo("TS_01", (40, 64, 80), 10.0), "TS_02": TomogramInfo("TS_02", (31, 65, 65), 7.5)}


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 6
    return pd.DataFrame(
        {
            "tomogram": ["TS_01"] * 3 + ["TS_02"] * 3,
            "x": rng.uniform(0, 60, n).round(4),
            "y": rng.uniform(0, 60, n),
            "z": rng.uniform(0, 30, n),
            "rot": rng.uniform(-180, 180, n),
            "tilt": rng.uniform(1, 179, n),
            "psi": rng.uniform(-180, 180, n),
            "class": [1, 2, 1, 3, 1, 2],
            "half": [1, 2, 1, 2, 1, 2],
            "score": rng.uniform(size=n),
            "origin_x_angstrom": rng.normal(size=n),
            "my_note": list("abcdef"),
        }
    )


@pytest.mark.parametrize("suffix", [".star", ".csv", ".json"])
def test_round_trip_keeps_input_coordinates(tmp_path, suffix: str) -> None:
    t = _table()
    path = write_particles(tmp_path / f"p{suffix}", t, tomograms=INFO)
    back = read_particles(path, tomograms=INFO)
    assert back["tomogram"].tolist() == t["tomogram"].tolist()
    assert np.allclose(back[["x", "y", "z"]], t[["x", "y", "z"]], rtol=0, atol=1e-6)
    if suffix == ".json":  # angles travel as the transformation matrix
        from cryoflow.geometry.rotation import matrix_xyz_from_euler

        m0 = matrix_xyz_from_euler(t[["rot", "tilt", "psi"]].to_numpy())
        m1 = matrix_xyz_from_euler(back[["rot", "tilt", "psi"]].to_numpy())
        assert np.allclose(m0, m1, atol=1e-9)
    else:
        for c in ("rot", "tilt", "psi", "score", "origin_x_angstrom"):
            assert np.allclose(back[c], t[c], atol=1e-6), c
        assert back["class"].tolist() == t["class"].tolist() and back["half"].tolist() == t["half"].tolist()
        assert back["my_note"].tolist() == t["my_note"].tolist()


def test_star_labels_and_relion5_centred_coordinates(tmp_path) -> None:
    t = _table()
    path = write_particles(tmp_path / "p.star", t, tomograms=INFO)
    df = starfile.read(path, always_dict=True)["particles"]
    for label in ("rlnTomoName", "rlnCoordinateX", "rlnAngleRot", "rlnClassNumber", "rlnRandomSubset", "rlnOriginXAngst"):
        assert label in df.columns
    # RELION 5: Å from the tomogram centre (size / 2)
    assert np.allclose(df["rlnCenteredCoordinateXAngst"], (t["x"] - np.where(t["tomogram"] == "TS_01", 40, 32.5)) * np.where(t["tomogram"] == "TS_01", 10.0, 7.5), atol=1e-5)
    # a RELION 5 file with centred coordinates only reads back to the same voxels
    only5 = df.drop(columns=["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"])
    starfile.write({"general": {"rlnTomoSubTomosAre2DStacks": 0}, "particles": only5}, tmp_path / "r5.star")
    back = read_particles(tmp_path / "r5.star", tomograms=INFO)
    assert np.allclose(back[["x", "y", "z"]], t[["x", "y", "z"]], atol=1e-5)
    with pytest.raises(InputFileError, match="centred coordinates"):
        read_particles(tmp_path / "r5.star")


def test_relion4_file_without_tomogram_name(tmp_path) -> None:
    f = tmp_path / "coords.star"
    f.write_text("\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n1 2 3\n4 5 6\n")
    with pytest.raises(InputFileError, match="rlnTomoName"):
        read_particles(f)
    t = read_particles(f, default_tomogram="TS_01")
    assert t["tomogram"].tolist() == ["TS_01", "TS_01"] and t["z"].tolist() == [3.0, 6.0]


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("data_particles\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n_rlnCoordinateZ #4\na 1 2 3\nb 1 2\n", 8, "3 fields"),
        ("data_particles\nloop_\n_rlnTomoName\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\na 1 2 3\na 1 x 3\n", 8, "rlnCoordinateY|y must be"),
        ("data_particles\nloop_\n_rlnTomoName\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\na 1 2 3\n_rlnAngleRot\n", 8, "after the loop"),
        ("a 1 2 3\n", 1, "before any data_"),
        ("data_particles\nloop_\n_rlnTomoName\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\na 1 2 3\n\nfoo bar\n", 9, "outside a loop"),
        ("data_particles\nloop_\n_rlnTomoName\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n_rlnRandomSubset\na 1 2 3 3\n", 8, "half must be 1 or 2"),
    ],
)
def test_malformed_star_names_file_and_line(tmp_path, text: str, line: int, what: str) -> None:
    f = tmp_path / "bad.star"
    f.write_text(text)
    with pytest.raises(InputFileError, match=f"line {line}: .*({what})") as info:
        read_particles(f)
    assert str(f) in str(info.value)


def test_bad_csv_names_line_and_missing_columns(tmp_path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("tomogram,x,y,z\nTS_01,1,2,3\n\nTS_01,1,nan,3\n")
    with pytest.raises(InputFileError, match=r"p.csv: line 4: y must be a finite number"):
        read_particles(f)
    f.write_text("tomogram,x,y\nTS_01,1,2\n")
    with pytest.raises(InputFileError, match=r"missing particle columns \['z'\]"):
        read_particles(f)
    with pytest.raises(InputFileError, match="particle files end in"):
        read_particles(tmp_path / "p.txt")


def test_copick_file_format_and_tree(tmp_path) -> None:
    t = _table()[["tomogram", "x", "y", "z", "score"]]
    path = write_particles(tmp_path / "picks.json", t, tomograms=INFO, object_name="ribosome")
    data = json.loads(path.read_text())
    assert isinstance(data, list) and data[0]["run_name"] == "TS_01" and data[0]["unit"] == "angstrom"
    p0 = data[0]["points"][0]
    assert p0["location"]["x"] == pytest.approx(t["x"][0] * 10.0) and np.array(p0["transformation_"]).shape == (4, 4)
    files = write_copick_tree(tmp_path / "copick", t, tomograms=INFO, object_name="ribosome")
    assert [f.relative_to(tmp_path / "copick").as_posix() for f in files] == [
        "ExperimentRuns/TS_01/Picks/cryoflow_0_ribosome.json",
        "ExperimentRuns/TS_02/Picks/cryoflow_0_ribosome.json",
    ]
    one = read_particles(files[1])  # voxel_spacing in the file gives the pixel size
    assert np.allclose(one[["x", "y", "z"]], t[t.tomogram == "TS_02"][["x", "y", "z"]])
