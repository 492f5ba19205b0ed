"""Particle sets written from read tasks of several batches: stored chunks stay one batch."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from cryoflow.errors import GeometryError
from cryoflow.graph.extract import extract_stack
from cryoflow.io.particleset import open_particles, write_particle_set
from cryoflow.io.store import open_volume
from cryoflow.kernels.extract import crop_boxes
from tests._particle_store import stored_tomogram


def test_read_task_blocks_are_stored_as_batch_chunks_and_equal_slicing(tmp_path) -> None:
    store, vol, table = stored_tomogram(tmp_path, 3, (16, 20, 24), -2, [26, 22, 18], 11)
    # 3 batches of 2 per read task: blocks (6, 5), stored chunks of 2
    stack, planned = extract_stack(
        {"a": open_volume(store, "a", "tomogram")},
        table,
        5,
        batch_size=2,
        task_bytes=3 * 2 * 5**3 * 4,
    )
    assert stack.chunks[0] == (6, 5)
    write_particle_set(store, "s", planned, stack, provenance={"step": "test"})
    got = open_particles(store, "s")
    assert got.data.chunks[0] == (2,) * 5 + (1,)
    want = crop_boxes(vol, planned[["x", "y", "z"]].to_numpy(), 5)
    np.testing.assert_array_equal(got.values, want)


def test_blocks_that_split_a_stored_chunk_are_refused(tmp_path) -> None:
    t = pd.DataFrame({"tomogram": ["a"] * 5, "x": 1.0, "y": 1.0, "z": 1.0})
    stack = da.zeros((5, 4, 4, 4), chunks=(3, 4, 4, 4))
    with pytest.raises(GeometryError, match="batch 2"):
        write_particle_set(tmp_path / "d.zarr", "bad", t, stack, provenance=None, chunk_rows=2)
