"""``cryoflow embed`` stores the latent coordinates in the particle set's table: the command
line twice on a LocalCluster of worker processes and a real store (a few training steps on a
tiny two-conformation set), read back with ``cryoflow.open_particles``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import cryoflow
from cryoflow.cli.main import main
from cryoflow.models.checkpoint import load_checkpoint
from tests._local_cluster import scheduler  # noqa: F401 (fixture)
from tests.pipelines.stages._embed_phantom import phantom_set

FAST = ["--steps", "5", "--batch-size", "8", "--train-particles", "16"]


def _embed(store, out, latent: int, scheduler: str, *more: str) -> dict:  # noqa: F811
    args = ["embed", str(store), "--set", "hinges", "--out", str(out), "--latent", str(latent)]
    with pytest.raises(SystemExit) as done:
        main([*args, *FAST, *more, "--scheduler", scheduler])
    assert done.value.code in (0, None)
    return json.loads((out / "embed.json").read_text())


def _latent_columns(arr) -> list[str]:
    return [str(c) for c in arr.coords if str(c)[:1] == "z" and str(c)[1:].isdigit()]


@pytest.mark.slow  # about 55 s of CPU: two trainings; the store rules: tests/io/test_particle_latent.py
def test_latent_coordinates_in_the_set_table_with_their_checkpoint(tmp_path, scheduler) -> None:  # noqa: F811
    store, _, _ = phantom_set(tmp_path, n=16)
    before = cryoflow.open_particles(str(store), "hinges")
    assert before.attrs["latent"] is None and not _latent_columns(before)
    record = _embed(store, tmp_path / "d3", 3, scheduler, "--classes", "2")
    arr = cryoflow.open_particles(str(store), "hinges")
    assert _latent_columns(arr) == ["z0", "z1", "z2"]
    # the same points as latent.csv (input order), with the checkpoint's hash
    lat = pd.read_csv(tmp_path / "d3" / "latent.csv")
    order = arr.coords["input_index"].values.astype(int)
    stored = np.stack([arr.coords[f"z{d}"].values for d in range(3)], axis=1)
    np.testing.assert_allclose(stored, lat[["z0", "z1", "z2"]].to_numpy()[order], rtol=1e-6)
    _, _, digest = load_checkpoint(tmp_path / "d3")
    info = arr.attrs["latent"]
    assert info["checkpoint_sha256"] == digest == record["checkpoint_sha256"]
    assert info["columns"] == ["z0", "z1", "z2"] and info["dim"] == 3
    assert info["out"] == str(tmp_path / "d3")
    assert record["stored"]["columns"] == ["z0", "z1", "z2"]
    # a rerun with another latent size replaces the columns: no z2 left beside the new two
    again = _embed(store, tmp_path / "d2", 2, scheduler, "--classes", "auto")
    arr2 = cryoflow.open_particles(str(store), "hinges")
    assert _latent_columns(arr2) == ["z0", "z1"]
    assert arr2.attrs["latent"]["checkpoint_sha256"] == again["checkpoint_sha256"] != digest
    assert arr2.attrs["latent"]["dim"] == 2 and "replaced_columns" not in arr2.attrs["latent"]
    assert again["classes"]["chosen_by"] == "BIC"
    lat2 = pd.read_csv(tmp_path / "d2" / "latent.csv")
    got = np.stack([arr2.coords[c].values for c in ("z0", "z1")], axis=1)
    np.testing.assert_allclose(got, lat2[["z0", "z1"]].to_numpy()[order], rtol=1e-6)
    # every other column as it was, the stack untouched, and the store sound
    keep = [str(c) for c in before.coords if str(c) != "particle"]
    for c in keep:
        np.testing.assert_array_equal(arr2.coords[c].values, before.coords[c].values)
    np.testing.assert_array_equal(arr2.values, before.values)
    with pytest.raises(SystemExit) as done:
        main(["verify", str(store), "--deep", "--scheduler", scheduler])
    assert done.value.code in (0, None)
