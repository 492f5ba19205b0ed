"""Lazy, chunkwise back-projection: one task per output block, reading only its footprint.

The tilt series is read as row slabs (every tilt and column, at most one output block's rows
and ``SLAB_BYTES``). Every output block ``(z, y, x)`` of the volume depends only on the slabs
holding the rows its voxels project to and back-projects the crop
``images[:, v0:v1, u0:u1]`` of its footprint (``cryoflow.geometry.chunk_footprint``, rows
shared, columns the union over tilts), never the whole stack, so the memory of a task is
bounded by the block and slab sizes and does not grow with the volume. The crop is taken
inside the block's task, so no crops wait in worker memory between tasks.

When the tilt series is a plain view of a stored array (:mod:`cryoflow.graph.sources`; what
:func:`cryoflow.open_tilt_series` gives), each slab is one task that reads its rows straight
from the store; otherwise the series is rechunked into slabs by Dask. Task names are
``<prefix>-<token>`` (blocks) and ``<prefix>-rows-<token>`` (direct slab reads), with a token
from ``dask.base.tokenize`` of the inputs and parameters.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cryoflow.errors import GeometryError
from cryoflow.geometry import BlockFrame, TiltGeometry, chunk_footprint
from cryoflow.graph.sources import read_slices, stored_source
from cryoflow.kernels.backproject import backproject_block, backproject_dtypes, parse_interpolation

DEFAULT_CHUNKS = (128, 128, 128)  # the store's volume chunks: results write without rechunking
SLAB_BYTES = 64 * 2**20  # most bytes of one row slab of the tilt series (all tilts, all columns)


def iter_blocks(
    chunks: tuple[tuple[int, ...], ...],
) -> Iterator[tuple[tuple[int, ...], Any]]:
    """Yield ``(block index, block slices)`` for every block of a Dask ``chunks`` tuple."""
    bounds = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in chunks]
    for index in itertools.product(*(range(len(c)) for c in chunks)):
        yield (
            index,
            tuple(slice(int(b[i]), int(b[i + 1])) for b, i in zip(bounds, index, strict=True)),
        )


Crop = tuple[tuple[int, int], tuple[int, int]]  # detector rows (v0, v1) and columns (u0, u1)


def footprint_blocks(
    geometry: TiltGeometry,
    volume_shape: tuple[int, int, int],
    detector_shape: tuple[int, int],
    chunks: tuple[tuple[int, ...], ...],
) -> Iterator[tuple[tuple[int, ...], tuple[slice, slice, slice], Crop | None]]:
    """Yield ``(block index, block slices, crop)`` for every volume block of ``chunks``.

    ``crop`` is the detector window that covers the block's footprint on every tilt
    (:func:`cryoflow.geometry.chunk_footprint`: rows shared, columns the union over tilts), or
    ``None`` when the block projects off every detector. The graph builders' one loop over
    output blocks and what each reads or writes on the detector.
    """
    for index, block in iter_blocks(chunks):
        fp = chunk_footprint(geometry, volume_shape, detector_shape, block)
        (v0, v1), (u0, u1) = fp.v, fp.u_union
        yield index, block, ((v0, v1), (u0, u1)) if v1 > v0 and u1 > u0 else None


def _backproject_task(
    slabs: list[np.ndarray],
    *,
    slab_start: int,
    crop: Crop,
    frame: BlockFrame,
    interpolation: str,
    n_threads: int | None,
) -> np.ndarray:
    """Cut the footprint ``[:, v0:v1, u0:u1]`` out of consecutive row slabs, then back-project."""
    (v0, v1), (u0, u1) = crop
    parts, start = [], slab_start
    for slab in slabs:
        a, b = max(v0, start), min(v1, start + slab.shape[1])
        if b > a:
            parts.append(slab[:, a - start : b - start, u0:u1])
        start += slab.shape[1]
    images = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    return backproject_block(images, *frame, interpolation=interpolation, n_threads=n_threads)


def row_slabs(
    images: da.Array, rows: int, name: str
) -> tuple[dict, list[Any], list[Any], np.ndarray]:
    """Tasks giving the tilt series as slabs of ``rows`` rows.

    Returns ``(graph, dependencies, slab keys, slab row bounds)``: direct reads from the store
    when ``images`` is a plain view of a stored array, else a Dask rechunk.
    """
    n_rows = int(images.shape[1])
    bounds = np.append(np.arange(0, n_rows, rows), n_rows).astype(int)
    source = stored_source(images)
    if source is None:
        slabs = images.rechunk({0: -1, 1: rows, 2: -1})
        return {}, [slabs], [(slabs.name, 0, i, 0) for i in range(len(bounds) - 1)], bounds
    src_key = f"source-{name}"
    dsk: dict = {src_key: source}
    keys: list[Any] = []
    for i in range(len(bounds) - 1):
        dsk[(name, i)] = (
            read_slices,
            src_key,
            (0, images.shape[0]),
            (int(bounds[i]), int(bounds[i + 1])),
        )
        keys.append((name, i))
    return dsk, [], keys, bounds


def backproject_graph(
    images: da.Array,
    geometry: TiltGeometry,
    shape: Sequence[int],
    *,
    chunks: Sequence[int] | tuple[tuple[int, ...], ...] | None = None,
    interpolation: str = "nearest",
    n_threads: int | None = 1,
    prefix: str = "backproject",
) -> da.Array:
    """Build the lazy back-projection of a Dask tilt series.

    Parameters
    ----------
    images : dask.array.Array of shape (n_tilts, V, U)
        Any chunking; it is rechunked into row slabs (all tilts, all columns, at most
        ``SLAB_BYTES``), and each block reads the slabs its footprint touches.
    geometry : TiltGeometry
        n_tilts projections.
    shape : (Z, Y, X)
        Output volume shape.
    chunks : (cz, cy, cx) or Dask chunks, optional
        Output blocks; default ``DEFAULT_CHUNKS`` (clipped to the shape).
    interpolation : {"nearest", "linear"}
    n_threads : int or None
        torch threads per task (1 = one Dask thread, one core).
    prefix : str
        Task-name prefix, e.g. ``backproject-<tomogram>``.

    Returns
    -------
    dask.array.Array of shape (Z, Y, X)
        dtype per :func:`cryoflow.kernels.backproject.backproject_dtypes`.
    """
    parse_interpolation(interpolation)
    if images.ndim != 3 or images.shape[0] != geometry.n_tilts:
        raise GeometryError(
            f"images must be (n_tilts={geometry.n_tilts}, V, U), got shape {images.shape}"
        )
    Z, Y, X = (int(s) for s in shape)
    volume = (Z, Y, X)
    detector = (int(images.shape[1]), int(images.shape[2]))
    out_chunks = da.core.normalize_chunks(chunks or DEFAULT_CHUNKS, volume)
    _, dtype = backproject_dtypes(images.dtype, geometry.n_tilts, interpolation)
    # 1. tilt series as row slabs (every tilt and column, rows of one output chunk at most), so
    #    each stored tile is decoded once per slab and a block reads only the slabs it touches
    rows = max(
        1,
        min(
            out_chunks[1][0], SLAB_BYTES // (images.shape[0] * detector[1] * images.dtype.itemsize)
        ),
    )
    token = tokenize(images, geometry.to_dict(), volume, out_chunks, interpolation, n_threads)
    name = f"{prefix}-{token}"
    dsk, deps, slab_keys, bounds = row_slabs(images, rows, f"{prefix}-rows-{token}")
    # 2. one task per output block: crops its footprint out of the slabs, back-projects
    for index, block, crop in footprint_blocks(geometry, volume, detector, out_chunks):
        if crop is None:  # the block projects off every detector
            dsk[(name, *index)] = (np.zeros, tuple(s.stop - s.start for s in block), dtype)
            continue
        (v0, v1), (u0, u1) = crop
        first = int(np.searchsorted(bounds, v0, side="right")) - 1
        last = int(np.searchsorted(bounds, v1, side="left"))
        kernel = partial(
            _backproject_task,
            slab_start=int(bounds[first]),
            crop=crop,
            frame=BlockFrame(geometry, volume, detector, block, (v0, u0)),
            interpolation=interpolation,
            n_threads=n_threads,
        )
        dsk[(name, *index)] = (kernel, slab_keys[first:last])
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    return da.Array(graph, name, chunks=out_chunks, dtype=dtype, meta=np.empty((0, 0, 0), dtype))
