"""Which storage chunks of an array were stored when it was published, and which are gone since.

Zarr stores no file for a chunk that holds only the fill value, and reads a missing chunk file
back as the fill value, silently. So a chunk file deleted from a published result (a careless
``rm``, a sync tool, a lost object in a bucket) would read back as zeros and no check could
tell it from a chunk that was empty all along. To tell them apart, every array gets, when its
node is published (:func:`cryoflow.io.nodes.publish`), a record of the storage chunks that had
a file then: ``attributes.cryoflow.stored_chunks = {"grid": [...], "bits": "..."}``, where
``grid`` is the storage-chunk grid (shards for a sharded array) and ``bits`` one bit per grid
index in C order (1: stored), packed (``numpy.packbits``), zlib-compressed and base64-encoded.
``cryoflow verify --deep`` (:func:`missing_chunks`) reports every storage chunk recorded as
stored whose file is gone, naming the array and the chunk's (or shard's) grid index and key.

Arrays published before this record existed carry none; for them a missing chunk cannot be
told from an empty one and is not reported.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync

from cryoflow.io.chunks import ChunkProblem, chunk_grid, chunk_indices, chunk_key

__all__ = [
    "RECORD",
    "arrays_below",
    "decode_stored",
    "encode_stored",
    "missing_chunks",
    "record_stored_chunks",
    "stored_mask",
]

RECORD = "stored_chunks"  # key of the record in an array's ``cryoflow`` attribute


def arrays_below(root: zarr.Group, prefix: str, *, skip_hidden: bool = False) -> list[str]:
    """Store paths of every array at or below the store-relative ``prefix`` in ``root``'s store
    (sorted; read from each node's own ``zarr.json``, never from consolidated metadata).
    ``skip_hidden`` leaves out ``.tmp-*``/``.trash-*`` nodes."""
    from cryoflow.io import nodes

    meta = nodes.read_raw_metadata(root, prefix)
    if meta is not None and meta.get("node_type") == "array":
        return [prefix]
    found: list[str] = []
    for child in nodes.list_dir(root, prefix):
        if child == "zarr.json" or (skip_hidden and child.startswith(".")):
            continue
        path = f"{prefix}/{child}" if prefix else child
        sub = nodes.read_raw_metadata(root, path)
        if sub is None:
            continue  # not a node (e.g. a chunk folder)
        if sub.get("node_type") == "group":
            found.extend(arrays_below(root, path, skip_hidden=skip_hidden))
        elif sub.get("node_type") == "array":
            found.append(path)
    return found


def stored_mask(arr: zarr.Array) -> np.ndarray:
    """One bool per storage chunk (grid shape): whether its file (object) exists now."""

    async def keys() -> set[str]:
        prefix = f"{arr.path}/" if arr.path else ""
        return {k async for k in arr.store.list_prefix(prefix)}

    present = sync(keys())
    grid = chunk_grid(arr)
    mask = np.zeros(int(np.prod(grid, dtype=np.int64)), dtype=bool)
    for i, index in enumerate(chunk_indices(arr)):
        mask[i] = chunk_key(arr, index) in present
    return mask.reshape(grid)


def encode_stored(mask: np.ndarray) -> dict[str, Any]:
    """The record of ``mask`` (see the module docstring)."""
    bits = np.packbits(np.asarray(mask, dtype=bool).ravel()).tobytes()
    return {
        "grid": [int(n) for n in mask.shape],
        "bits": base64.b64encode(zlib.compress(bits, 9)).decode("ascii"),
    }


def decode_stored(record: object) -> np.ndarray | None:
    """The mask of a record (``None`` when absent or malformed)."""
    if not isinstance(record, dict):
        return None
    try:
        grid = tuple(int(n) for n in record["grid"])
        raw = zlib.decompress(base64.b64decode(str(record["bits"]), validate=True))
    except (KeyError, TypeError, ValueError, zlib.error):
        return None
    n = int(np.prod(grid, dtype=np.int64))
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n) if n else np.zeros(0)
    if bits.size != n:
        return None
    return bits.astype(bool).reshape(grid)


def record_stored_chunks(parent: zarr.Group, path: str) -> None:
    """Record, in each array at or below the store path ``path``, which storage chunks have a
    file now (called by :func:`cryoflow.io.nodes.publish` just before publishing)."""
    from cryoflow.io import nodes

    for array_path in arrays_below(parent, path):
        arr = zarr.open_array(parent.store, path=array_path, mode="r+", zarr_format=3)
        attrs = nodes.cryoflow_attrs(arr)
        attrs[RECORD] = encode_stored(stored_mask(arr))
        arr.attrs[nodes.ATTR] = attrs


def missing_chunks(arr: zarr.Array, indices: Iterable[tuple[int, ...]]) -> list[ChunkProblem]:
    """The storage chunks among ``indices`` recorded as stored at publication whose file is
    gone (empty when the array has no record: nothing can be told then)."""
    from cryoflow.io import nodes

    recorded = decode_stored(nodes.cryoflow_attrs(arr).get(RECORD))
    wanted = [tuple(int(i) for i in idx) for idx in indices]
    if recorded is None or not wanted:
        return []
    grid = chunk_grid(arr)
    if recorded.shape != grid:
        return [
            ChunkProblem(
                arr.path,
                (),
                f"{arr.path}/zarr.json" if arr.path else "zarr.json",
                f"its chunk grid {grid} differs from the {recorded.shape} recorded when it was "
                "published (the array was resized or its metadata replaced)",
            )
        ]
    what = "shard" if arr.shards is not None else "chunk"
    return [
        ChunkProblem(
            arr.path,
            idx,
            chunk_key(arr, idx),
            f"{what} file missing: it was stored when the result was published and now reads "
            "back as the fill value (deleted?); restore it from a copy or recompute the result",
        )
        for idx in wanted
        if recorded[idx] and not sync(arr.store.exists(chunk_key(arr, idx)))
    ]
