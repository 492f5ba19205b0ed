"""A failed read names exactly the damaged chunks its selection touches (basic selections of
every form), and a damaged shard names its own first bad inner chunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import Crc32cCodec

from cryoflow.errors import CorruptChunkError
from cryoflow.io.chunks import (
    CheckedArray,
    check_chunk,
    chunk_grid,
    chunk_region,
    find_bad_chunks,
    storage_chunk_shape,
)
from cryoflow.io.layout import BLOSC


def _damage(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x20
    path.write_bytes(bytes(raw))


@pytest.fixture
def arr(tmp_path: Path) -> zarr.Array:
    """A (10, 9) array in chunks of (4, 3): a 3 x 3 grid; chunks (0, 1) and (2, 2) damaged."""
    a = zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=(10, 9),
        chunks=(4, 3),
        dtype="f4",
        compressors=(BLOSC, Crc32cCodec()),
        fill_value=0,
    )
    a[...] = np.arange(90, dtype="f4").reshape(10, 9) + 1
    _damage(tmp_path / "a.zarr/c/0/1")
    _damage(tmp_path / "a.zarr/c/2/2")
    return a


def _found(arr, selection) -> list[tuple[int, ...]]:
    return [p.chunk for p in find_bad_chunks(arr, selection)]


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ((slice(0, 4), slice(3, 6)), [(0, 1)]),  # exactly the damaged chunk
        ((slice(0, 4), slice(0, 6)), [(0, 1)]),  # two chunks, one damaged
        ((slice(8, 10), slice(6, 9)), [(2, 2)]),  # the edge chunk
        ((slice(3, 9), slice(5, 7)), [(0, 1), (2, 2)]),  # 2 x 2 chunks
        ((slice(4, 8), slice(None)), []),  # the middle row of chunks is sound
        ((2, slice(None)), [(0, 1)]),  # an integer
        ((-1, -1), [(2, 2)]),  # negative integers
        ((np.int64(9), 7), [(2, 2)]),  # NumPy integers
        (np.s_[..., 4], [(0, 1)]),  # Ellipsis first
        (np.s_[9, ...], [(2, 2)]),  # Ellipsis last
        (slice(0, 4), [(0, 1)]),  # a bare slice (not a tuple)
        (3, [(0, 1)]),  # a bare integer
        ((slice(None, None, 2), slice(6, None)), [(2, 2)]),  # a step
        (Ellipsis, [(0, 1), (2, 2)]),
        (([0, 9], slice(None)), [(0, 1), (2, 2)]),  # fancy: every chunk checked
        ((Ellipsis, Ellipsis), [(0, 1), (2, 2)]),  # not a basic selection
    ],
)
def test_find_bad_chunks_checks_what_the_selection_touches(arr, selection, expected) -> None:
    assert _found(arr, selection) == expected


def test_checked_reads_name_the_chunk_read(arr) -> None:
    checked = CheckedArray(arr)
    np.testing.assert_array_equal(checked[4:8], np.asarray(arr[4:8]))
    with pytest.raises(CorruptChunkError, match=r"chunk \(2, 2\)") as e:
        checked[8:, 6:]
    assert e.value.chunk == (2, 2) and e.value.key == "c/2/2"
    with pytest.raises(CorruptChunkError) as e:
        checked[...]
    assert e.value.chunk == (0, 1) and "(and 1 more chunk(s) of this read)" in str(e.value)
    assert checked.shape == (10, 9) and checked.ndim == 2 and checked.chunks == (4, 3)
    assert checked.dtype == np.float32 and "CheckedArray('', shape=(10, 9)" in repr(checked)


def test_grid_and_regions_clip_at_the_edge(arr) -> None:
    assert storage_chunk_shape(arr) == (4, 3) and chunk_grid(arr) == (3, 3)
    assert chunk_region(arr, (2, 2)) == (slice(8, 10), slice(6, 9))
    assert chunk_region(arr, (1, 0), (2, 2)) == (slice(2, 4), slice(0, 2))
    assert check_chunk(arr, (1, 1)) is None


def test_a_damaged_shard_names_its_own_inner_chunk(tmp_path: Path) -> None:
    """Shards (4, 8) of inner chunks (2, 2); both shards damaged in their second inner row."""
    a = zarr.create_array(
        str(tmp_path / "s.zarr"),
        shape=(8, 8),
        chunks=(2, 2),
        shards=(4, 8),
        dtype="f4",
        compressors=(BLOSC, Crc32cCodec()),
        fill_value=0,
    )
    a[...] = np.arange(64, dtype="f4").reshape(8, 8) + 1
    before = {k: (tmp_path / "s.zarr/c" / k / "0").read_bytes() for k in ("0", "1")}
    a[2:4, 4:6] = -1  # rewrite inner chunk (1, 2) ...
    a[6:8, 4:6] = -1  # ... and (3, 2), so we know which bytes hold them
    for k in ("0", "1"):
        after = bytearray((tmp_path / "s.zarr/c" / k / "0").read_bytes())
        differ = [i for i, (x, y) in enumerate(zip(before[k], after, strict=False)) if x != y]
        after[differ[0]] ^= 0xFF
        (tmp_path / "s.zarr/c" / k / "0").write_bytes(bytes(after))
    shard0, shard1 = check_chunk(a, (0, 0)), check_chunk(a, (1, 0))
    assert shard0 is not None and shard1 is not None
    assert shard1.chunk == (1, 0) and "inner chunk (3, 2)" in shard1.problem, shard1.problem
    assert shard0.chunk == (0, 0) and "inner chunk (1, 2)" in shard0.problem, shard0.problem
    assert "crc32c checksum mismatch" in shard1.problem
