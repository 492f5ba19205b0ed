"""Chunk-aligned writes of Dask arrays into Zarr arrays.

A writer task owns whole storage chunks of the target: whole chunks, or for a sharded array
whole shards (a shard is one object holding many inner chunks, so two tasks writing inner
chunks of one shard would each read, modify and rewrite it, and one would lose the other's
chunks). Two tasks never write into the same storage chunk, so no lock is needed and an
interrupted write leaves only whole chunks. :func:`check_aligned` refuses a region whose
source blocks would straddle storage-chunk boundaries (xarray's ``to_zarr`` accepts a
misaligned region from a NumPy array silently; cryoflow does not); ``store_blocks(...,
regroup=True)`` rechunks such a source to the target's storage chunks instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize
from dask.delayed import Delayed

from cryoflow.errors import ChunkAlignmentError, SourceTypeError
from cryoflow.io.chunks import storage_chunk_shape


def check_aligned(
    source_chunks: Sequence[Sequence[int]],
    target_shape: Sequence[int],
    target_chunks: Sequence[int],
    region_start: Sequence[int],
    *,
    where: str = "target",
    unit: str = "chunk",
) -> None:
    """Refuse a write whose source blocks do not start and end on target chunk boundaries.

    Parameters
    ----------
    source_chunks : tuple of tuple of int, one per axis
        Dask block sizes of the source, e.g. ``((1, 1), (64,), (64,))`` for ``(tilt, y, x)``.
    target_shape, target_chunks : tuple of int
        Shape and storage-chunk shape of the Zarr array written into (the shard shape of a
        sharded array: :func:`cryoflow.io.chunks.storage_chunk_shape`).
    region_start : tuple of int
        Index in the target where the source's first element goes.
    unit : str
        What ``target_chunks`` are, for the message (``"chunk"`` or ``"shard"``).

    Raises
    ------
    ChunkAlignmentError
        Naming the axis, the offending boundary and the target chunk size.
    """
    if not (len(source_chunks) == len(target_shape) == len(target_chunks) == len(region_start)):
        raise ChunkAlignmentError(
            f"{where}: source has {len(source_chunks)} axes, target {len(target_shape)}"
        )
    for axis, (blocks, n, c, start) in enumerate(
        zip(source_chunks, target_shape, target_chunks, region_start, strict=True)
    ):
        end = start + sum(blocks)
        if start < 0 or end > n:
            raise ChunkAlignmentError(
                f"{where}: region [{start}, {end}) on axis {axis} lies outside the shape {n}"
            )
        edges = np.cumsum([start, *blocks])
        bad = [int(e) for e in edges if e % c != 0 and e != n]
        if bad:
            raise ChunkAlignmentError(
                f"{where}: block boundary {bad[0]} on axis {axis} is not a multiple of the target "
                f"{unit} size {c} (region starts at {start}); rechunk the source to the target's "
                f"{unit}s {tuple(target_chunks)} or choose an aligned region"
            )


def surely_not_fill(data: np.ndarray, fill: Any) -> bool:
    """True when a few evenly spread samples of ``data`` already differ from ``fill``.

    Zarr compares every chunk it writes with the fill value (an empty chunk is not stored), a
    full pass that cost almost as much as encoding a dense float32 chunk (31 vs 36% of writing
    a back-projected volume). A dense block is told apart by at most 5 samples per axis; only
    a block whose samples all equal the fill value gets Zarr's full check.
    """
    if fill is None or data.size == 0:
        return False
    probe = data[tuple(slice(None, None, max(1, n // 4)) for n in data.shape)]
    return bool(np.any(probe != fill))


def _write_block(
    block: np.ndarray, target: zarr.Array, start: tuple[int, ...], block_info: Any = None
) -> np.ndarray:
    """Write one block where it lands in ``target``; returns its byte count as a
    ``(1, ..., 1)`` int64 array (one element per block of the write graph)."""
    data = np.asarray(block)
    location = block_info[0]["array-location"]
    region = tuple(slice(s + a, s + b) for s, (a, b) in zip(start, location, strict=True))
    if surely_not_fill(data, target.fill_value):  # not empty: skip Zarr's whole-chunk check
        target = target.with_config({"write_empty_chunks": True})
    target[region] = data
    return np.full((1,) * data.ndim, data.nbytes, dtype=np.int64)


def store_blocks(
    source: da.Array,
    target: zarr.Array,
    *,
    region_start: Sequence[int] | None = None,
    name: str = "write",
    regroup: bool = False,
) -> list[Delayed]:
    """One lazy write task per source block (lazy; compute them to write).

    The writes are a block-wise map over ``source``, so Dask's graph optimisation fuses each
    write with the task that makes its block (a back-projected block is written by the task
    that computed it: no 8 MiB result held between two tasks or moved between workers).

    Parameters
    ----------
    source : dask.array.Array, any shape
        The data; its blocks must be aligned with ``target``'s storage chunks: its chunks,
        or its shards when it is sharded (see :func:`check_aligned`).
    target : zarr.Array
        Destination, opened writable.
    region_start : tuple of int, optional
        Where ``source[0, 0, ...]`` lands in ``target`` (default: the origin).
    name : str
        Task-name prefix, e.g. ``"ingest-TS_01"``.
    regroup : bool
        Rechunk a misaligned ``source`` to the target's storage chunks (one task per chunk or
        shard of the region) instead of refusing it. ``region_start`` itself must still lie
        on a storage-chunk boundary.

    Returns
    -------
    list of dask.delayed.Delayed
        One task per block in C order, each computing to the bytes it wrote (a ``(1, ..., 1)``
        array); deterministic keys ``(f"{name}-{token}", *block index)``.
    """
    if not isinstance(source, da.Array):
        raise SourceTypeError(
            f"store_blocks into zarr array {target.path!r} takes a dask.array.Array, got "
            f"{type(source).__module__}.{type(source).__qualname__}; wrap in-memory data with "
            "cryoflow.io.writer.as_dask(data, chunks)"
        )
    start = tuple(int(s) for s in (region_start or (0,) * source.ndim))
    unit = storage_chunk_shape(target)
    if regroup and len(start) == source.ndim == len(unit):
        source = source.rechunk(aligned_chunks(source.shape, unit, start))
    check_aligned(
        source.chunks,
        target.shape,
        unit,
        start,
        where=f"zarr array {target.path!r}",
        unit="shard" if target.shards is not None else "chunk",
    )
    token = tokenize(source.name, str(target.store), target.path, start)
    written = da.map_blocks(
        _write_block,
        source,
        target=target,
        start=start,
        chunks=tuple((1,) * len(c) for c in source.chunks),
        dtype=np.int64,
        meta=np.empty((0,) * source.ndim, np.int64),
        name=f"{name}-{token}",
    )
    blocks = written.to_delayed(optimize_graph=True)
    return [blocks[idx] for idx in product(*(range(len(c)) for c in source.chunks))]


def aligned_chunks(
    shape: Sequence[int], unit: Sequence[int], start: Sequence[int]
) -> tuple[tuple[int, ...], ...]:
    """Dask chunks of a region of ``shape`` at ``start`` whose blocks end on multiples of
    ``unit`` (the target's chunk or shard shape), e.g. ``(10,), (4,), (0,) -> ((4, 4, 2),)``."""
    out = []
    for n, c, s in zip(shape, unit, start, strict=True):
        cuts = [s, *range((s // c + 1) * c, s + int(n), c), s + int(n)]
        out.append(tuple(b - a for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a))
    return tuple(out)


def as_dask(data: Any, chunks: Sequence[int]) -> da.Array:
    """NumPy, Dask or xarray input as a Dask array with exactly ``chunks`` (regular)."""
    if hasattr(data, "dims") and hasattr(data, "data"):  # xarray.DataArray
        data = data.data
    if isinstance(data, da.Array):
        return data.rechunk(tuple(chunks))
    arr = np.asarray(data)
    return da.from_array(arr, chunks=tuple(chunks), name="from-array-" + tokenize(arr))
