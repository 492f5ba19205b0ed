"""Latent coordinates in a particle set's table (``cryoflow.io.particle_latent``) on a real
store: columns ``z0 .. z{D-1}`` through ``open_particles``, their record, no mixing across
latent sizes, input columns of the same name replaced and named, bad shapes refused."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.io.particle_latent import write_latent
from cryoflow.io.particleset import open_particles, read_particle_table
from cryoflow.io.verify import find_leftovers
from tests.pipelines.stages.heterogeneity_phantoms import two_state_phantom, write_set


def _z(arr) -> list[str]:
    return [str(c) for c in arr.coords if str(c)[:1] == "z" and str(c)[1:].isdigit()]


def test_latent_columns_replace_each_other_and_keep_the_rest(tmp_path) -> None:
    store = str(tmp_path / "s.zarr")
    write_set(tmp_path / "s.zarr", "p", two_state_phantom(8, seed=1))
    before = read_particle_table(store, "p")
    rng = np.random.default_rng(0)
    first = rng.normal(size=(8, 4))
    write_latent(store, "p", first, {"step": "embed", "checkpoint_sha256": "a" * 64})
    arr = open_particles(store, "p")
    assert _z(arr) == ["z0", "z1", "z2", "z3"]
    np.testing.assert_allclose(arr.coords["z3"].values, first[:, 3].astype(np.float32))
    assert arr.attrs["latent"]["checkpoint_sha256"] == "a" * 64
    assert arr.attrs["latent"]["columns"] == ["z0", "z1", "z2", "z3"]
    second = rng.normal(size=(8, 2))
    write_latent(store, "p", second, {"step": "embed", "checkpoint_sha256": "b" * 64})
    table = read_particle_table(store, "p")
    assert [c for c in table.columns if c not in before.columns] == ["z0", "z1"]
    np.testing.assert_allclose(table["z1"], second[:, 1].astype(np.float32))
    assert table[list(before.columns)].equals(before)
    assert open_particles(store, "p").attrs["latent"]["dim"] == 2
    # the replaced arrays are gone and nothing temporary is left
    arrays = sorted((tmp_path / "s.zarr/particles/p/table").glob("c*"))
    assert len(arrays) == len(before.columns) + 2
    assert not find_leftovers(store)
    with pytest.raises(GeometryError, match="latent coordinates"):
        write_latent(store, "p", np.zeros((7, 2)), {})
    with pytest.raises(GeometryError, match="finite"):
        write_latent(store, "p", np.full((8, 2), np.nan), {})


def test_input_columns_named_like_latent_ones_are_replaced_and_named(tmp_path) -> None:
    import dask.array as da

    from cryoflow.io.layout import create_dataset
    from cryoflow.io.particleset import write_particle_set
    from cryoflow.io.provenance import make_provenance

    store = str(tmp_path / "s.zarr")
    sim = two_state_phantom(4, seed=2)
    table = write_set(tmp_path / "other.zarr", "p", sim)
    table["z0"] = 9.0  # e.g. a set extracted from a latent.csv
    create_dataset(store)
    write_particle_set(
        store, "p", table, da.from_array(sim.volumes, chunks=(2, 24, 24, 24)),
        provenance=make_provenance("extract", {}),
    )  # fmt: skip
    record = write_latent(store, "p", np.ones((4, 3)), {"step": "embed"})
    assert record["replaced_columns"] == ["z0"]
    got = read_particle_table(store, "p")
    assert list(got.columns).count("z0") == 1 and set(got["z0"]) == {1.0}
