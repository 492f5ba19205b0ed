"""``cryoflow extract``: particle sets from a real store through the CLI on a real cluster."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import cryoflow
from cryoflow.errors import InputFileError, MissingTiltRangeError
from cryoflow.io.particles import write_particles
from cryoflow.io.provenance import make_provenance
from cryoflow.io.store import write_tilt_series, write_volume
from cryoflow.io.tomograms import TiltRange, tilt_range_attrs
from cryoflow.kernels.extract import crop_boxes
from cryoflow.pipelines.stages.extract import ExtractParams, plan


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture()
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.zarr"
    vols = {
        "a": rng.normal(size=(18, 26, 22)).astype(np.float32),
        "b": rng.normal(size=(14, 20, 30)).astype(np.float32),
        "c": rng.normal(size=(10, 10, 10)).astype(np.float32),
    }
    write_volume(
        path,
        "a",
        "tomogram",
        vols["a"],
        pixel_size_angstrom=10.0,
        chunk=8,
        provenance=make_provenance("ingest"),
        attrs=tilt_range_attrs(TiltRange(-54, 48, "a.tlt")),
    )
    # reconstructed by cryoflow: the range comes from its tilt series
    write_tilt_series(
        path, "b", rng.normal(size=(3, 20, 30)).astype(np.float32), [-60, 0, 57], 10.0
    )
    write_volume(
        path,
        "b",
        "tomogram",
        vols["b"],
        pixel_size_angstrom=10.0,
        chunk=8,
        provenance=make_provenance("reconstruct"),
    )
    write_volume(
        path,
        "c",
        "tomogram",
        vols["c"],
        pixel_size_angstrom=10.0,
        provenance=make_provenance("ingest"),
    )  # no tilt range
    rows = []
    for name in ("a", "b"):
        Z, Y, X = vols[name].shape
        for _ in range(9):  # some boxes over the border
            rows.append(
                (name, rng.uniform(-2, X + 1), rng.uniform(-2, Y + 1), rng.uniform(-2, Z + 1))
            )
    table = pd.DataFrame(rows, columns=["tomogram", "x", "y", "z"])
    table["score"] = rng.uniform(size=len(table))
    star = write_particles(tmp_path / "picks.star", table)
    return path, vols, table, star


def test_extract_cli_end_to_end(dataset, tmp_path) -> None:
    path, vols, table, star = dataset
    done = _cli(
        "extract",
        str(path),
        "--particles",
        str(star),
        "--box",
        "8",
        "--set",
        "s8",
        "--batch-size",
        "5",
        "--workers",
        "1",
    )
    assert done.returncode == 0, done.stderr
    assert "extracted 18 particles" in done.stdout
    p = cryoflow.open_particles(str(path), "s8")
    assert p.dims == ("particle", "z", "y", "x") and p.shape == (18, 8, 8, 8)
    assert p.data.chunks[0] == (5, 5, 5, 3)
    stack = p.values
    for name, vol in vols.items():
        rows = np.flatnonzero(p["tomogram"].values == name)
        if name == "c":
            assert not len(rows)
            continue
        xyz = np.stack([p["x"].values[rows], p["y"].values[rows], p["z"].values[rows]], axis=1)
        assert np.array_equal(stack[rows], crop_boxes(vol, xyz, 8, pad="mean"))
    # input coordinates unchanged, each particle with its tomogram's wedge
    back = p.coords.to_dataset().to_dataframe().set_index("input_index").sort_index()
    assert np.allclose(back[["x", "y", "z"]].to_numpy(), table[["x", "y", "z"]].to_numpy())
    wedge = {"a": (-54.0, 48.0), "b": (-60.0, 57.0)}
    for t, lo, hi in zip(back["tomogram"], back["tilt_min_deg"], back["tilt_max_deg"], strict=True):
        assert (lo, hi) == wedge[t]
    assert p.attrs["box_size"] == 8 and p.attrs["tilt_range_deg"]["b"] == [-60.0, 57.0]
    assert p.attrs["provenance"]["step"] == "extract"
    # an existing set is refused (before any cluster), kept; --overwrite replaces it
    again = _cli("extract", str(path), "--particles", str(star), "--box", "6", "--set", "s8")
    assert (
        again.returncode != 0 and "already exists" in again.stderr and "--overwrite" in again.stderr
    )
    assert "Traceback" not in again.stderr
    assert cryoflow.open_particles(str(path), "s8").shape == (18, 8, 8, 8)


def test_extract_refusals_name_the_tomogram_or_file(dataset, tmp_path) -> None:
    path, _, table, _ = dataset
    with_c = write_particles(
        tmp_path / "c.csv",
        pd.DataFrame({"tomogram": ["a", "c"], "x": [3.0, 4.0], "y": [3.0, 4.0], "z": [3.0, 4.0]}),
    )
    with pytest.raises(MissingTiltRangeError, match="'c'.*--angles FILE.*--tilt-range MIN MAX"):
        plan(str(path), ExtractParams(particles=str(with_c), box=4, set="x"))
    unknown = write_particles(
        tmp_path / "u.csv", pd.DataFrame({"tomogram": ["zz"], "x": [3.0], "y": [3.0], "z": [3.0]})
    )
    with pytest.raises(InputFileError, match=r"u\.csv.*'zz'.*a, b, c"):
        plan(str(path), ExtractParams(particles=str(unknown), box=4, set="x"))
    bad = tmp_path / "bad.star"
    bad.write_text(
        "data_particles\n\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n"
        "_rlnCoordinateY #3\n_rlnCoordinateZ #4\na 1 2 3\na 1 two 3\n"
    )
    with pytest.raises(InputFileError, match=r"bad\.star: line 9: y"):
        plan(str(path), ExtractParams(particles=str(bad), box=4, set="x"))
    done = _cli("extract", str(path), "--particles", str(with_c), "--box", "4", "--set", "x")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "'c'" in done.stderr and "--tilt-range MIN MAX" in done.stderr
