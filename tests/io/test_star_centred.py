"""RELION 5 centred coordinates (Å from the tomogram centre) written with ``starfile``: voxels
worked by hand, and the refusals (a missing axis, tomograms without a shape, non-numbers)
naming the file, the line and what is missing."""

from __future__ import annotations

import pandas as pd
import pytest
import starfile

from cryoflow.errors import InputFileError
from cryoflow.io.particles import TomogramInfo, read_particles

INFO = {"A": TomogramInfo("A", (20, 30, 40), 5.0)}


def _write(path, **columns) -> None:
    starfile.write({"particles": pd.DataFrame(columns)}, path)


def test_centred_angstrom_to_voxels_by_hand(tmp_path) -> None:
    path = tmp_path / "c.star"
    # x: 20 + 50 / 5 = 30; y: 15 - 25 / 5 = 10; z: 10 + 0 = 10
    _write(path, rlnTomoName=["A"], rlnCenteredCoordinateXAngst=[50.0],
           rlnCenteredCoordinateYAngst=[-25.0], rlnCenteredCoordinateZAngst=[0.0])  # fmt: skip
    got = read_particles(path, tomograms=INFO)
    assert got[["x", "y", "z"]].to_numpy().tolist() == [[30.0, 10.0, 10.0]]


def test_a_missing_centred_axis_is_named_with_the_file_and_block(tmp_path) -> None:
    path = tmp_path / "noz.star"
    _write(path, rlnTomoName=["A"], rlnCenteredCoordinateXAngst=[1.0],
           rlnCenteredCoordinateYAngst=[2.0])  # fmt: skip
    with pytest.raises(InputFileError) as info:
        read_particles(path, tomograms=INFO)
    text = str(info.value)
    assert str(path) in text and "data_particles lacks" in text
    assert "rlnCenteredCoordinateZAngst" in text and "rlnCenteredCoordinateXAngst" not in text


def test_tomograms_without_shape_are_listed_first_five(tmp_path) -> None:
    path = tmp_path / "many.star"
    names = ["A", "T1", "T2", "T3", "T4", "T5", "T6"]
    _write(path, rlnTomoName=names, rlnCenteredCoordinateXAngst=[0.0] * 7,
           rlnCenteredCoordinateYAngst=[0.0] * 7, rlnCenteredCoordinateZAngst=[0.0] * 7)  # fmt: skip
    with pytest.raises(InputFileError) as info:
        read_particles(path, tomograms=INFO)
    text = str(info.value)
    assert str(path) in text and "none given for ['T1', 'T2', 'T3', 'T4', 'T5']" in text


def test_a_centred_value_that_is_no_number_names_its_line(tmp_path) -> None:
    path = tmp_path / "bad.star"
    _write(path, rlnTomoName=["A", "A"], rlnCenteredCoordinateXAngst=["1.0", "oops"],
           rlnCenteredCoordinateYAngst=[0.0, 0.0], rlnCenteredCoordinateZAngst=[0.0, 0.0])  # fmt: skip
    lines = path.read_text().splitlines()
    row = next(i for i, line in enumerate(lines, 1) if "oops" in line)
    with pytest.raises(InputFileError) as info:
        read_particles(path, tomograms=INFO)
    text = str(info.value)
    assert f"line {row}: rlnCenteredCoordinateXAngst must be a finite number" in text
    assert "'oops'" in text
