"""The contract's commands on users' own files, written here with mrcfile/starfile/json.

Each test runs the real CLI (``cryoflow.cli.main.main`` on one shared in-process Dask cluster)
on hand-made files, not the simulator's: a tomogram MRC with voxel size 8.5 Å and its ``.tlt``,
copick picks made on a binned tomogram, a single-image MRC offered as a tomogram.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import cryoflow
from tests.cli.test_ingest_real_files import cli, scheduler  # noqa: F401  (fixtures)
from tests.io_files import write_mrc, write_tlt

PIXEL = 8.5
SHAPE = (32, 40, 48)  # (z, y, x)
POSITIONS = np.array([[20.0, 12.0, 16.0], [31.0, 25.5, 14.0], [10.0, 30.0, 18.0]])  # x, y, z


def tomogram(tmp_path: Path, cli) -> Path:  # noqa: F811
    vol = np.random.default_rng(3).normal(size=SHAPE).astype(np.float32)
    write_mrc(tmp_path / "tomoA.mrc", vol, voxel_size=PIXEL)
    write_tlt(tmp_path / "tomoA.tlt", np.arange(-60.0, 61.0, 6.0))
    store = tmp_path / "s.zarr"
    code, _, err = cli("ingest", tmp_path / "tomoA.mrc", "--out", store, "--tomogram")
    assert code == 0, err
    return store


def test_copick_angstrom_locations_become_voxels_of_the_stored_tomogram(tmp_path, cli) -> None:  # noqa: F811
    """copick locations are physical Å: a file recording the (binned) voxel spacing it was
    picked at must still land on the stored tomogram's voxels (Å / its voxel size)."""
    store = tomogram(tmp_path, cli)
    picks = {
        "pickable_object_name": "ribosome",
        "user_id": "alice",
        "session_id": "0",
        "run_name": "tomoA",
        "voxel_spacing": 2 * PIXEL,  # picked on a 2x binned copy
        "unit": "angstrom",
        "trust_orientation": False,
        "points": [
            {"location": dict(zip("xyz", (p * PIXEL).tolist(), strict=True)), "instance_id": i}
            for i, p in enumerate(POSITIONS)
        ],
    }
    path = tmp_path / "picks.json"
    path.write_text(json.dumps(picks))
    code, _, err = cli("extract", store, "--particles", path, "--box", 8, "--set", "P")
    assert code == 0, err
    parts = cryoflow.open_particles(store, "P")
    got = np.stack([parts.coords[a].values for a in "xyz"], axis=1)
    order = parts.coords["input_index"].values
    assert np.allclose(got, POSITIONS[order])


def test_single_image_mrc_is_refused_as_a_tomogram(tmp_path, cli) -> None:  # noqa: F811
    image = np.zeros(SHAPE[1:], np.float32)
    path = write_mrc(tmp_path / "flat.mrc", image, voxel_size=PIXEL)
    write_tlt(tmp_path / "flat.tlt", [-60.0, 60.0])
    store = tmp_path / "s.zarr"
    code, _, err = cli("ingest", path, "--out", store, "--tomogram")
    assert code != 0
    assert str(path) in err and "single 40 x 48 image, not a volume" in err
    assert not (store / "tomograms" / "flat").exists()


def test_help_lists_the_values_of_a_choice_option() -> None:
    """``--help`` names the allowed values of a fixed-choice option, not the Python type."""
    from typer.testing import CliRunner

    from cryoflow.cli.main import app

    result = CliRunner().invoke(app, ["classify", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "multiref|pca|autoencoder" in result.output and "pca|random" in result.output
    assert "LITERAL" not in result.output.upper()


def test_particle_outside_its_tomogram_is_refused_naming_file_and_particle(tmp_path, cli) -> None:  # noqa: F811
    """A position beyond the tomogram (e.g. in unbinned tilt-series pixels) is an input error,
    not a box of padding; nothing is written."""
    store = tomogram(tmp_path, cli)
    path = tmp_path / "far.csv"
    path.write_text("tomogram,x,y,z\ntomoA,20,12,16\ntomoA,480,12,16\n")
    code, _, err = cli("extract", store, "--particles", path, "--box", 8, "--set", "F")
    assert code != 0
    assert str(path) in err and "particle 2 of 2 (tomoA x=480, y=12, z=16)" in err
    assert "outside its tomogram of 48 x 40 x 32 voxels" in err
    assert not (store / "particles" / "F").exists()


def test_relion5_star_naming_an_unknown_tomogram_lists_the_known_ones(tmp_path, cli) -> None:  # noqa: F811
    import pandas as pd
    import starfile

    store = tomogram(tmp_path, cli)
    rows = pd.DataFrame(
        {
            "rlnTomoName": ["tomoB"],
            "rlnCenteredCoordinateXAngst": [0.0],
            "rlnCenteredCoordinateYAngst": [0.0],
            "rlnCenteredCoordinateZAngst": [0.0],
        }
    )
    path = tmp_path / "r5.star"
    starfile.write({"particles": rows}, path)
    code, _, err = cli("extract", store, "--particles", path, "--box", 8, "--set", "R")
    assert code != 0
    assert str(path) in err and "none given for ['tomoB'] (known tomograms: tomoA)" in err
    rows["rlnTomoName"] = "tomoA"  # the same file naming the stored tomogram is read
    starfile.write({"particles": rows}, path, overwrite=True)
    code, _, err = cli("extract", store, "--particles", path, "--box", 8, "--set", "R")
    assert code == 0, err
    centre = [cryoflow.open_particles(store, "R").coords[a].values[0] for a in "xyz"]
    assert np.allclose(centre, [SHAPE[2] / 2, SHAPE[1] / 2, SHAPE[0] / 2])
