"""The slab cache returns exactly the planes of the volume, within its memory bound."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from cryoflow.pipelines.picker.cache import SlabCache


def _zarr(vol: np.ndarray, chunks: tuple[int, ...]) -> zarr.Array:
    arr = zarr.create_array(
        zarr.storage.MemoryStore(), shape=vol.shape, chunks=chunks, dtype=vol.dtype
    )
    arr[...] = vol
    return arr


@pytest.mark.parametrize("chunks", [(4, 5, 6), (7, 3, 11), (16, 16, 16), (1, 16, 16)])
def test_planes_equal_the_volume_across_chunkings(chunks: tuple[int, int, int]) -> None:
    vol = np.random.default_rng(1).normal(size=(13, 16, 16)).astype(np.float32)
    data = _zarr(vol, chunks)
    cache = SlabCache(1 << 20)
    for axis in range(3):
        for k in range(vol.shape[axis]):
            np.testing.assert_array_equal(cache.plane("v", data, axis, k), np.take(vol, k, axis))
            cache.wait()  # the slab read in the background after a miss
    # a miss per slab along each axis, every other plane a hit from the slab
    slabs = sum(-(-n // c) for n, c in zip(vol.shape, chunks, strict=True))
    assert cache.misses == slabs and cache.hits == sum(vol.shape) - slabs
    cache.close()


def test_memory_bound_and_lru() -> None:
    vol = np.zeros((32, 8, 8), np.float32)  # slabs of 8 x 8 x 8 float32: 2 KiB each
    data = _zarr(vol, (8, 8, 8))
    cache = SlabCache(2 * 2048)
    for k in (0, 8, 16):
        cache.plane("v", data, 0, k)
        cache.wait()
    assert cache.nbytes <= 2 * 2048 and cache.misses == 3
    cache.plane("v", data, 0, 9)  # slab 1 kept
    cache.plane("v", data, 0, 1)  # slab 0 was evicted first
    assert (cache.hits, cache.misses) == (1, 4)
    none = SlabCache(0)
    none.plane("v", data, 0, 1)
    none.wait()
    assert none.nbytes == 0
    cache.close()
    none.close()
