"""Lazy, chunkwise forward projection: partial projections per volume block, tree-combined.

Each volume block is projected onto its footprint (``cryoflow.geometry.chunk_footprint``);
for every output row chunk ``(n_tilts, rows, U)`` the partials that overlap it are combined by
``+`` (sum), ``|`` (any) or ``max`` in a tree of fan-in ``split_every``, so no task holds more
than ``split_every`` partials plus one output chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, TypedDict

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cryoflow.errors import GeometryError
from cryoflow.geometry import TiltGeometry
from cryoflow.graph.backproject import footprint_blocks
from cryoflow.kernels.project import fill_value, parse_mode, project_block, project_dtypes

Crop = tuple[int, int, int, int]  # (v0, u0, Vc, Uc)


class KernelOptions(TypedDict, total=False):
    """The options of :func:`project_graph` that a graph built on it passes through."""

    interpolation: str  # {"nearest", "linear"}; default "nearest"
    n_threads: int | None  # torch threads per task; default 1


def combine_partials(
    parts: list[np.ndarray],
    crops: Sequence[Crop],
    region: Crop,
    *,
    n_tilts: int,
    mode: str,
    dtype: np.dtype,
) -> np.ndarray:
    """Combine partial projections (each (n_tilts, Vc, Uc) at ``crops``) on ``region``.

    Returns
    -------
    ndarray of shape (n_tilts, region Vc, region Uc)
    """
    r0, c0, R, C = region
    fill = False if mode == "any" else fill_value(mode)
    out = np.full((n_tilts, R, C), fill, dtype=dtype)
    for part, (v0, u0, Vc, Uc) in zip(parts, crops, strict=True):
        a, b = max(v0, r0), min(v0 + Vc, r0 + R)
        lo, hi = max(u0, c0), min(u0 + Uc, c0 + C)
        if b <= a or hi <= lo:
            continue
        src = part[:, a - v0 : b - v0, lo - u0 : hi - u0]
        dst = out[:, a - r0 : b - r0, lo - c0 : hi - c0]
        if mode == "sum":
            dst += src
        elif mode == "any":
            dst |= src
        else:
            np.maximum(dst, src, out=dst)
    return out


def project_graph(
    volume: da.Array,
    geometry: TiltGeometry,
    detector_shape: Sequence[int],
    *,
    mode: str = "any",
    interpolation: str = "nearest",
    row_chunks: int | None = None,
    split_every: int = 8,
    n_threads: int | None = 1,
    prefix: str = "project",
) -> da.Array:
    """Build the lazy forward projection of a Dask volume.

    Parameters
    ----------
    volume : dask.array.Array of shape (Z, Y, X)
        Its chunks are the blocks projected by one task each.
    geometry : TiltGeometry
    detector_shape : (V, U)
    mode : {"any", "sum", "max"}
    interpolation : {"nearest", "linear"}
    row_chunks : int, optional
        Detector rows per output chunk; default the volume's y chunk.
    split_every : int
        Fan-in of the combining tree.
    n_threads : int or None
        torch threads per task.
    prefix : str
        Task-name prefix.

    Returns
    -------
    dask.array.Array of shape (n_tilts, V, U), chunks (n_tilts, row_chunks, U)
    """
    parse_mode(mode)
    if volume.ndim != 3:
        raise GeometryError(f"volume must be (Z, Y, X), got shape {volume.shape}")
    if split_every < 2:
        raise ValueError(f"split_every must be >= 2, got {split_every}")
    Z, Y, X = (int(s) for s in volume.shape)
    shape = (Z, Y, X)
    V, U = (int(d) for d in detector_shape)
    n = geometry.n_tilts
    _, dtype = project_dtypes(volume.dtype, mode, interpolation)
    rows = int(row_chunks or volume.chunks[1][0])
    out_chunks = ((n,), da.core.normalize_chunks((rows,), (V,))[0], (U,))
    token = tokenize(volume, geometry.to_dict(), (V, U), mode, interpolation, rows, split_every)
    name = f"{prefix}-{token}"
    pname, cname = f"{prefix}-partial-{token}", f"{prefix}-combine-{token}"
    dsk: dict = {}
    partials: list[tuple[tuple, Crop]] = []
    # 1. one partial projection per volume block, on its footprint
    for index, block, window in footprint_blocks(geometry, shape, (V, U), volume.chunks):
        if window is None:  # the block projects off every detector
            continue
        (v0, v1), (u0, u1) = window
        crop = (v0, u0, v1 - v0, u1 - u0)
        kernel = partial(
            project_block,
            geometry=geometry,
            volume_shape=shape,
            detector_shape=(V, U),
            block=block,
            crop=crop,
            mode=mode,
            interpolation=interpolation,
            n_threads=n_threads,
        )
        dsk[(pname, *index)] = (kernel, (volume.name, *index))
        partials.append(((pname, *index), crop))
    # 2. per output row chunk, a tree over the partials that overlap it
    r0 = 0
    for r, R in enumerate(out_chunks[1]):
        region = (r0, 0, R, U)
        level = [(k, c) for k, c in partials if c[0] < r0 + R and c[0] + c[2] > r0]
        depth = 0
        while len(level) > split_every:
            nxt = []
            for g in range(0, len(level), split_every):
                group = level[g : g + split_every]
                key = (cname, r, depth, g)
                dsk[key] = _combine_task(group, region, n, mode, dtype)
                nxt.append((key, region))
            level, depth = nxt, depth + 1
        dsk[(name, 0, r, 0)] = _combine_task(level, region, n, mode, dtype)
        r0 += R
    deps: list[Any] = [volume]
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    return da.Array(graph, name, chunks=out_chunks, dtype=dtype, meta=np.empty((0, 0, 0), dtype))


def _combine_task(
    group: list[tuple[tuple, Crop]], region: Crop, n: int, mode: str, dtype: np.dtype
) -> tuple:
    fn = partial(
        combine_partials,
        crops=[c for _, c in group],
        region=region,
        n_tilts=n,
        mode=mode,
        dtype=dtype,
    )
    return (fn, [k for k, _ in group])
