"""Lazy, chunkwise back-projection: one task per output block, reading only its footprint.

Every output block ``(z, y, x)`` of the volume depends on the tilt-series crop
``images[:, v0:v1, u0:u1]`` that its voxels project to (``cryoflow.geometry.chunk_footprint``,
rows shared, columns the union over tilts), never on the whole stack, so the memory of a task
is bounded by the block size (times the number of tilts) and does not grow with the volume.
Task names are ``<prefix>-<token>`` with a token from ``dask.base.tokenize`` of the inputs
and parameters.
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
from cryoflow.geometry import TiltGeometry, chunk_footprint
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


def assemble(parts: list) -> np.ndarray:
    """Concatenate a nested (tilt, y, x) list of Dask chunks into one ndarray."""
    return np.block(parts) if isinstance(parts, list) else parts


def _backproject_task(parts: list, **kwargs: object) -> np.ndarray:
    return backproject_block(assemble(parts), **kwargs)  # type: ignore[arg-type]


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
    shape = tuple(int(s) for s in shape)
    detector = (int(images.shape[1]), int(images.shape[2]))
    out_chunks = da.core.normalize_chunks(chunks or DEFAULT_CHUNKS, shape)
    _, dtype = backproject_dtypes(images.dtype, geometry.n_tilts, interpolation)
    # 1. tilt series as row slabs (every tilt and column, rows of one output chunk at most), so
    #    each stored tile is read once and a block reads only the slabs its footprint touches
    rows = max(
        1,
        min(
            out_chunks[1][0], SLAB_BYTES // (images.shape[0] * detector[1] * images.dtype.itemsize)
        ),
    )
    images = images.rechunk({0: -1, 1: rows, 2: -1})
    token = tokenize(images, geometry.to_dict(), shape, out_chunks, interpolation, n_threads)
    name = f"{prefix}-{token}"
    dsk: dict = {}
    deps: list[Any] = []
    # 2. one task per output block, on the crop of its footprint
    for index, block in iter_blocks(out_chunks):
        fp = chunk_footprint(geometry, shape, detector, block)  # type: ignore[arg-type]
        (v0, v1), (u0, u1) = fp.v, fp.u_union
        bshape = tuple(s.stop - s.start for s in block)
        if v1 <= v0 or u1 <= u0:  # the block projects off every detector
            dsk[(name, *index)] = (np.zeros, bshape, dtype)
            continue
        crop = images[:, v0:v1, u0:u1]
        deps.append(crop)
        kernel = partial(
            _backproject_task,
            geometry=geometry,
            volume_shape=shape,
            detector_shape=detector,
            block=block,
            crop_origin=(v0, u0),
            interpolation=interpolation,
            n_threads=n_threads,
        )
        dsk[(name, *index)] = (kernel, crop.__dask_keys__())
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    return da.Array(graph, name, chunks=out_chunks, dtype=dtype, meta=np.empty((0, 0, 0), dtype))
