# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
"""Commands refused on a particle set they cannot work on: the error names the set and the
option to change, and a refused run leaves no staging behind in the store."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_contract_audit import tomogram
from tests.cli.test_ingest_real_files import cli, scheduler  # noqa: F401  (fixtures)


def _small_set(tmp_path: Path, cli) -> Path:
    store = tomogram(tmp_path, cli)
    rows = "".join(
        f"tomoA,{x},{y},{z}\n"
        for x, y, z in [(20, 12, 16), (30, 25, 14), (12, 28, 18), (25, 20, 10)]
    )
    path = tmp_path / "few.csv"
    path.write_text("tomogram,x,y,z,rot,tilt,psi\n" + rows.replace("\n", ",0,0,0\n"))
    code, _, err = cli("extract", store, "--particles", path, "--box", 16, "--set", "S")
    assert code == 0, err
    return store


def test_classify_too_few_particles_for_n_eigen_names_the_option_and_cleans_up(
    tmp_path, cli
) -> None:
    store = _small_set(tmp_path, cli)
    code, _, err = cli(
        "classify", store, "--set", "S", "--classes", 2, "--method", "pca", "--out", tmp_path / "c"
    )
    assert code != 0
    assert "'S'" in err and "--n-eigen 6" in err and "or fewer" in err
    results = store / "results"
    left = [p.name for p in results.rglob(".tmp-*")] if results.exists() else []
    assert left == []
    code, out, err = cli("verify", store)
    assert code == 0, out + err


def test_multibody_on_a_set_without_poses_does_not_offer_a_reference_option(tmp_path, cli) -> None:
    store = tomogram(tmp_path, cli)
    path = tmp_path / "plain.csv"
    path.write_text("tomogram,x,y,z\ntomoA,20,12,16\ntomoA,30,25,14\n")
    code, _, err = cli("extract", store, "--particles", path, "--box", 16, "--set", "U")
    assert code == 0, err
    import mrcfile
    import numpy as np

    for k in (1, 2):
        with mrcfile.new(tmp_path / f"b{k}.mrc") as m:
            m.set_data(np.ones((16, 16, 16), np.float32))
            m.voxel_size = 8.5
    code, _, err = cli(
        "multibody",
        store,
        "--set",
        "U",
        "--bodies",
        tmp_path / "b1.mrc",
        tmp_path / "b2.mrc",
        "--out",
        tmp_path / "m",
    )
    assert code != 0
    assert "has no orientations" in err and "--reference" not in err and "cryoflow average" in err
