"""The read-ahead of stored read tasks: exact with several chunks per task, errors surface."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import CorruptChunkError
from cryoflow.graph.extract import extract_stack
from cryoflow.io.store import open_volume
from cryoflow.kernels.extract import crop_boxes
from tests._particle_store import stored_tomogram


def _store(tmp_path):
    return stored_tomogram(tmp_path, 5, (16, 16, 24), 0, [24, 16, 16], 9)


def test_one_read_task_over_many_chunks_equals_slicing(tmp_path) -> None:
    store, vol, table = _store(tmp_path)
    stack, planned = extract_stack({"a": open_volume(store, "a", "tomogram")}, table, 6)
    assert stack.numblocks[0] == 1  # one read task reads all 12 chunks, one ahead
    want = crop_boxes(vol, planned[["x", "y", "z"]].to_numpy(), 6)
    np.testing.assert_array_equal(stack.compute(scheduler="sync"), want)


def test_a_damaged_chunk_read_ahead_names_the_chunk(tmp_path) -> None:
    store, _, table = _store(tmp_path)
    chunk = next(p for p in sorted(store.rglob("c/*/*/*")) if p.is_file())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    stack, _ = extract_stack({"a": open_volume(store, "a", "tomogram")}, table, 16)
    with pytest.raises(CorruptChunkError, match="chunk"):
        stack.compute(scheduler="sync")
