"""The chunks of a stored array: their grid, keys and regions, and checked reads.

Every array cryoflow writes ends its codec chain with ``crc32c`` (``layout.COMPRESSOR``), so a
chunk file changed on disk fails to decode instead of reading back as other, valid-looking
values. Zarr then raises a bare ``ValueError`` ("Stored and computed checksum do not match")
that names neither the array nor the chunk. :class:`CheckedArray` (what every cryoflow reader
hands to Dask) turns such a failure into :class:`~cryoflow.errors.CorruptChunkError` naming the
store, the array, the chunk's grid index and its store key; :func:`check_chunk` is the per-chunk
check of ``cryoflow verify --deep``.

A *storage chunk* is one object in the store: a chunk, or for a sharded array a whole shard
(its grid index is the shard's). Arrays written before the checksum was added (no ``crc32c``
codec) still read; for them only errors of the decompressor itself can be caught.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from cryoflow.errors import CorruptChunkError, CryoflowError

# What zarr and its codecs raise for undecodable bytes: the crc32c codec and the bytes codec
# (a wrong length) raise ValueError, Blosc's decompressor RuntimeError.
DECODE_ERRORS: tuple[type[Exception], ...] = (ValueError, RuntimeError)


def storage_chunk_shape(arr: zarr.Array) -> tuple[int, ...]:
    """Shape of one storage chunk: the shard shape of a sharded array, else the chunk shape."""
    return tuple(int(c) for c in (arr.shards or arr.chunks))


def chunk_grid(arr: zarr.Array) -> tuple[int, ...]:
    """Number of storage chunks along each axis (``()`` for a 0-d array)."""
    return tuple(
        math.ceil(int(n) / c) for n, c in zip(arr.shape, storage_chunk_shape(arr), strict=True)
    )


def chunk_indices(arr: zarr.Array) -> Iterator[tuple[int, ...]]:
    """Grid index of every storage chunk, in C order."""
    return product(*(range(n) for n in chunk_grid(arr)))


def chunk_region(
    arr: zarr.Array, index: tuple[int, ...], shape: tuple[int, ...] | None = None
) -> tuple[slice, ...]:
    """The region of storage chunk ``index`` (or of a chunk of ``shape``), clipped to the array."""
    step = shape or storage_chunk_shape(arr)
    return tuple(
        slice(i * c, min((i + 1) * c, int(n)))
        for i, c, n in zip(index, step, arr.shape, strict=True)
    )


def chunk_key(arr: zarr.Array, index: tuple[int, ...]) -> str:
    """The store key of storage chunk ``index``, e.g. ``tomograms/a/tilt_series/c/3/0/0``."""
    key = arr.metadata.encode_chunk_key(tuple(int(i) for i in index))
    return f"{arr.path}/{key}" if arr.path else key


def store_name(arr: zarr.Array) -> str:
    """A short identity of the store holding ``arr`` (its folder for a local store)."""
    store = arr.store
    return str(store.root) if isinstance(store, LocalStore) else str(store)


@dataclass(frozen=True)
class ChunkProblem:
    """One storage chunk that fails its check.

    Attributes
    ----------
    array : str
        The array's store path, e.g. ``"tomograms/a/volumes/tomogram/0"``.
    chunk : tuple of int
        Grid index of the storage chunk (of the shard in a sharded array); ``()`` when the
        whole array is unusable (unreadable or refused metadata).
    key : str
        Store key of the chunk (or of the array's ``zarr.json``).
    problem : str
        What is wrong, e.g. ``"crc32c checksum mismatch"``.
    """

    array: str
    chunk: tuple[int, ...]
    key: str
    problem: str

    def __str__(self) -> str:
        where = f"chunk {self.chunk} ({self.key})" if self.chunk else self.key
        return f"array {self.array!r} {where}: {self.problem}"


def describe_decode_error(exc: BaseException) -> str:
    """A short reason for a zarr decode failure."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "checksum" in text.lower():
        return "crc32c checksum mismatch (the chunk file was changed or damaged)"
    return f"cannot be decoded ({type(exc).__name__}: {text[:200]})"


def check_chunk(arr: zarr.Array, index: tuple[int, ...]) -> ChunkProblem | None:
    """Read storage chunk ``index`` of ``arr`` and check it; ``None`` when it is sound.

    Checks that the chunk decodes (checksum, decompression, length) and comes back with the
    region's shape and the array's data type. A chunk never written reads as the fill value
    and is sound. For a shard, every inner chunk is read separately, so the problem names
    the first inner chunk (grid index within the whole array) that fails.
    """
    index = tuple(int(i) for i in index)
    region = chunk_region(arr, index)
    try:
        data = np.asarray(arr[region])
    except CryoflowError:
        raise
    except DECODE_ERRORS as exc:
        return ChunkProblem(arr.path, index, chunk_key(arr, index), _inner_reason(arr, region, exc))
    expected = tuple(s.stop - s.start for s in region)
    if data.shape != expected or data.dtype != arr.dtype:
        return ChunkProblem(
            arr.path,
            index,
            chunk_key(arr, index),
            f"decodes to shape {data.shape} {data.dtype}, expected {expected} {arr.dtype}",
        )
    return None


def _inner_reason(arr: zarr.Array, region: tuple[slice, ...], exc: BaseException) -> str:
    reason = describe_decode_error(exc)
    if arr.shards is None:
        return reason
    inner = tuple(int(c) for c in arr.chunks)
    first = tuple(s.start // c for s, c in zip(region, inner, strict=True))
    last = tuple((s.stop - 1) // c for s, c in zip(region, inner, strict=True))
    for idx in product(*(range(a, b + 1) for a, b in zip(first, last, strict=True))):
        try:
            arr[chunk_region(arr, idx, inner)]
        except DECODE_ERRORS as inner_exc:
            return f"inner chunk {idx} {describe_decode_error(inner_exc)}"
    return reason


def find_bad_chunks(arr: zarr.Array, selection: Any) -> list[ChunkProblem]:
    """Every storage chunk touched by a basic ``selection`` of ``arr`` that fails its check.

    A selection other than integers, slices and ``Ellipsis`` checks every chunk of the array.
    """
    lo_hi = _bounds(selection, tuple(int(n) for n in arr.shape))
    unit = storage_chunk_shape(arr)
    if lo_hi is None:
        candidates: Any = chunk_indices(arr)
    else:
        candidates = product(
            *(
                range(lo // c, max(lo, hi - 1) // c + 1)
                for (lo, hi), c in zip(lo_hi, unit, strict=True)
            )
        )
    return [p for idx in candidates if (p := check_chunk(arr, idx)) is not None]


def _bounds(selection: Any, shape: tuple[int, ...]) -> list[tuple[int, int]] | None:
    """Per-axis ``[lo, hi)`` bounds of a basic selection, or ``None`` when it is not basic."""
    sel = selection if isinstance(selection, tuple) else (selection,)
    if sum(s is Ellipsis for s in sel) > 1:
        return None
    if Ellipsis in sel:
        i = sel.index(Ellipsis)
        sel = sel[:i] + (slice(None),) * (len(shape) - len(sel) + 1) + sel[i + 1 :]
    sel = sel + (slice(None),) * (len(shape) - len(sel))
    if len(sel) != len(shape):
        return None
    bounds = []
    for s, n in zip(sel, shape, strict=True):
        if isinstance(s, slice):
            start, stop, _ = s.indices(n)
            bounds.append((start, max(start, stop)) if stop > start else (0, n))
        elif isinstance(s, int | np.integer):
            i = int(s) % n if n else 0
            bounds.append((i, i + 1))
        else:
            return None
    return bounds


class CheckedArray:
    """A read-only view of a stored array whose decode failures name the array and chunk.

    What cryoflow's readers hand to ``dask.array.from_array``: ``shape``, ``dtype``,
    ``ndim``, ``chunks`` and ``__getitem__`` of the Zarr array, with a failed read turned into
    :class:`CorruptChunkError`. Picklable (it travels to workers inside Dask graphs).
    """

    def __init__(self, array: zarr.Array) -> None:
        self.zarr_array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.zarr_array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.zarr_array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.zarr_array.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self.zarr_array.chunks)

    @property
    def path(self) -> str:
        """The array's path inside its store (as ``zarr.Array.path``)."""
        return str(self.zarr_array.path)

    @property
    def store(self) -> Any:
        """The store the array lives in (as ``zarr.Array.store``)."""
        return self.zarr_array.store

    def __repr__(self) -> str:
        return f"CheckedArray({self.zarr_array.path!r}, shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, selection: Any) -> Any:
        try:
            return self.zarr_array[selection]
        except CryoflowError:
            raise
        except DECODE_ERRORS as exc:
            bad = find_bad_chunks(self.zarr_array, selection)
            if not bad:
                raise  # not a damaged chunk: the original error, unchanged
            raise corrupt_chunk_error(self.zarr_array, bad) from exc


def corrupt_chunk_error(arr: zarr.Array, bad: list[ChunkProblem]) -> CorruptChunkError:
    """The error for the damaged chunks ``bad`` of ``arr`` (names the first, counts the rest)."""
    first = bad[0]
    more = f" (and {len(bad) - 1} more chunk(s) of this read)" if len(bad) > 1 else ""
    return CorruptChunkError(
        f"{store_name(arr)}: {first}{more}; restore the store from a copy or recompute this "
        "result (`cryoflow verify --deep` lists every damaged chunk)",
        array=first.array,
        chunk=first.chunk,
        key=first.key,
    )


def read_checked(arr: zarr.Array, selection: Any = Ellipsis) -> np.ndarray:
    """``arr[selection]`` as an ndarray, a damaged chunk raising :class:`CorruptChunkError`."""
    return np.asarray(CheckedArray(arr)[selection])
