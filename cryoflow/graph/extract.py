"""Lazy extraction of particle boxes from many tomograms: one task per batch of particles.

Planning (:func:`plan_batches`, no Dask): particles are ordered so that neighbours share
chunks (by tomogram, then by the Morton (z-order) code of the chunk their box starts in, then
by position) and cut into batches of ``batch_size``; a batch may span two tomograms where one
ends and the next begins. The number of tasks is ``ceil(n / batch_size)``, whatever the
number of tomograms or chunks.

Each batch task (:func:`extract_stack`) fills its ``(batch, B, B, B)`` boxes from the chunks
the boxes overlap and nothing else, one chunk at a time (memory: the batch plus one chunk):

* a stored volume (a Zarr array, or a plain Dask view of one, as ``open_volume`` returns) is
  read inside the task, only the part of each overlapped chunk that boxes need;
* any other Dask volume gives the task the keys of exactly the chunks its boxes overlap.

Boxes follow :mod:`cryoflow.kernels.extract` (centre voxel ``B // 2`` at ``rint`` of the
position, padding outside the volume), so the stack equals cutting each box from the volume in
memory, for every chunking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cryoflow.errors import GeometryError
from cryoflow.graph.sources import stored_source
from cryoflow.kernels.extract import (
    Pad,
    box_starts,
    inside_fraction,
    pad_outside,
    parse_pad,
    paste_region,
)

__all__ = ["BOX_COLUMNS", "chunk_bounds", "extract_stack", "plan_batches"]

BOX_COLUMNS = ["box_z0", "box_y0", "box_x0"]


def _morton(idx: np.ndarray) -> np.ndarray:
    """Morton (z-order) codes of non-negative ``(n, 3)`` chunk indices (< 2**20 each)."""
    code = np.zeros(len(idx), dtype=np.int64)
    i = np.clip(idx, 0, (1 << 20) - 1).astype(np.int64)
    for bit in range(20):
        for axis in range(3):
            code |= ((i[:, axis] >> bit) & 1) << (3 * bit + (2 - axis))
    return code


def _as_volume(volume: Any) -> Any:
    data = getattr(volume, "data", volume) if hasattr(volume, "dims") else volume
    if isinstance(data, da.Array):
        src = stored_source(data)
        return src if src is not None else data
    if hasattr(data, "chunks") and hasattr(data, "store"):  # a zarr.Array
        return data
    return da.from_array(np.asarray(data), chunks=128)


def _stored_identity(volume: Any) -> tuple[str, str]:
    """Store and path of a Zarr array (or of the one a checked reader wraps)."""
    z = getattr(volume, "zarr_array", volume)
    return str(getattr(z, "store", "")), str(getattr(z, "path", ""))


def chunk_bounds(volume: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunk start offsets per axis, each ending with the axis length (Dask or Zarr)."""
    if isinstance(volume, da.Array):
        sizes = volume.chunks
    else:
        sizes = tuple(
            (int(c),) * (int(n) // int(c)) + ((int(n) % int(c),) if int(n) % int(c) else ())
            for n, c in zip(volume.shape, volume.chunks, strict=True)
        )
    b = [np.concatenate([[0], np.cumsum(np.asarray(c, dtype=np.int64))]) for c in sizes]
    return b[0], b[1], b[2]


def _chunk_index(pos: np.ndarray, bounds: Sequence[np.ndarray]) -> np.ndarray:
    """``(n, 3)`` chunk indices of ``(n, 3)`` voxel positions (clipped to the volume)."""
    return np.stack(
        [
            np.clip(np.searchsorted(bounds[k], pos[:, k], side="right") - 1, 0, len(bounds[k]) - 2)
            for k in range(3)
        ],
        axis=1,
    )


def plan_batches(
    table: pd.DataFrame,
    shapes: Mapping[str, Sequence[int]],
    bounds: Mapping[str, Sequence[np.ndarray]],
    box: int,
) -> pd.DataFrame:
    """The particle table in extraction order, with ``input_index``, box starts and
    ``inside_fraction`` added (``bounds``: each tomogram's :func:`chunk_bounds`).

    Order: tomograms in order of first appearance; within one, the Morton code of the chunk
    holding the box centre, then the centre's flat index, then the input row.

    Raises
    ------
    GeometryError
        A tomogram of the table has no volume.
    """
    names = list(dict.fromkeys(table["tomogram"].astype(str)))
    missing = [n for n in names if n not in shapes]
    if missing:
        raise GeometryError(f"no volume given for tomograms {missing[:5]}")
    t = table.reset_index(drop=True).copy()
    t["input_index"] = np.arange(len(t), dtype=np.int64)
    starts = box_starts(t[["x", "y", "z"]].to_numpy(np.float64), box)
    for k, col in enumerate(BOX_COLUMNS):
        t[col] = starts[:, k]
    inside = np.zeros(len(t))
    tomo_rank = np.zeros(len(t), np.int64)
    morton = np.zeros(len(t), np.int64)
    flat = np.zeros(len(t), np.int64)
    tomo = t["tomogram"].astype(str).to_numpy()
    for j, name in enumerate(names):
        rows = tomo == name
        shape = np.asarray(shapes[name], dtype=np.int64)
        inside[rows] = inside_fraction(starts[rows], box, tuple(int(v) for v in shape))
        centre = np.clip(starts[rows] + box // 2, 0, shape - 1)
        tomo_rank[rows] = j
        morton[rows] = _morton(_chunk_index(centre, bounds[name]))
        flat[rows] = np.ravel_multi_index(tuple(centre.T), tuple(int(v) for v in shape))
    t["inside_fraction"] = inside
    order = np.lexsort((t["input_index"].to_numpy(), flat, morton, tomo_rank))
    return t.iloc[order].reset_index(drop=True)


def _chunk_ranges(
    starts: np.ndarray, box: int, bounds: Sequence[np.ndarray]
) -> list[tuple[int, ...]]:
    """Indices of the chunks that the boxes overlap (inside the volume), sorted."""
    shape = np.asarray([b[-1] for b in bounds], dtype=np.int64)
    inside = np.all(starts + box > 0, axis=1) & np.all(starts < shape, axis=1)
    lo = _chunk_index(np.clip(starts[inside], 0, shape - 1), bounds)
    hi = _chunk_index(np.clip(starts[inside] + box, 1, shape) - 1, bounds)
    found: set[tuple[int, ...]] = set()
    for a, b in zip(lo, hi, strict=True):
        found.update(product(*(range(int(a[k]), int(b[k]) + 1) for k in range(3))))
    return sorted(found)


def _needed(
    starts: np.ndarray, box: int, c0: np.ndarray, c1: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The part of chunk ``[c0, c1)`` that the boxes need (their union's bounding box)."""
    a = np.maximum(starts, c0)
    b = np.minimum(starts + box, c1)
    ok = np.all(b > a, axis=1)
    if not ok.any():
        return None
    return a[ok].min(axis=0), b[ok].max(axis=0)


def _fill_stored(
    sources: Sequence[Any], tomo: np.ndarray, starts: np.ndarray, box: int, pad: Pad
) -> np.ndarray:
    """One batch from stored volumes: read each overlapped chunk's needed part, paste it."""
    out = np.zeros((len(starts), box, box, box), dtype=np.float32)
    for t in np.unique(tomo):
        rows = np.flatnonzero(tomo == t)
        src = sources[int(t)]
        shape = np.asarray(src.shape, dtype=np.int64)
        bounds = chunk_bounds(src)
        sub = out[rows]
        for ci in _chunk_ranges(starts[rows], box, bounds):
            c0 = np.array([bounds[k][ci[k]] for k in range(3)])
            c1 = np.array([bounds[k][ci[k] + 1] for k in range(3)])
            need = _needed(starts[rows], box, c0, c1)
            if need is None:
                continue
            a, b = need
            region = np.asarray(src[a[0] : b[0], a[1] : b[1], a[2] : b[2]])
            paste_region(sub, starts[rows], box, region, tuple(int(v) for v in a))
        pad_outside(sub, starts[rows], box, tuple(int(v) for v in shape), pad)
        out[rows] = sub
    return out


def _fill_pieces(
    tomo: np.ndarray,
    starts: np.ndarray,
    box: int,
    pad: Pad,
    shapes: Sequence[Sequence[int]],
    origins: Sequence[tuple[int, tuple[int, int, int]]],
    *pieces: np.ndarray,
) -> np.ndarray:
    """One batch from Dask chunks given as arguments (``origins``: tomogram, chunk start)."""
    out = np.zeros((len(starts), box, box, box), dtype=np.float32)
    for t in np.unique(tomo):
        rows = np.flatnonzero(tomo == t)
        sub = out[rows]
        for (pt, origin), piece in zip(origins, pieces, strict=True):
            if pt == t:
                paste_region(sub, starts[rows], box, np.asarray(piece), origin)
        pad_outside(sub, starts[rows], box, shapes[int(t)], pad)
        out[rows] = sub
    return out


def extract_stack(
    volumes: Mapping[str, Any],
    table: pd.DataFrame,
    box: int,
    *,
    batch_size: int = 64,
    pad: object = "mean",
    label: str = "extract",
) -> tuple[da.Array, pd.DataFrame]:
    """The lazy stack ``(n, B, B, B)`` float32 of every particle's box, and its table.

    Parameters
    ----------
    volumes : tomogram name -> level-0 volume ``(Z, Y, X)``
        A Zarr array, a Dask array or DataArray (a plain view of a stored array is read in the
        batch tasks), or a NumPy array.
    table : particle table (``tomogram, x, y, z``, ...; :mod:`cryoflow.io.particles`)
    box : int, the box side ``B``
    batch_size : particles per task (and per stored chunk of the stack)
    pad : ``"mean"`` or a number (:mod:`cryoflow.kernels.extract`)

    Returns
    -------
    stack : dask.array.Array of shape (n, B, B, B), blocks ``(batch_size, B, B, B)``
    table : pandas.DataFrame
        The particles in stack order (:func:`plan_batches`: ``input_index``, box starts,
        ``inside_fraction`` added).
    """
    if int(batch_size) < 1:
        raise GeometryError(f"batch_size must be >= 1, got {batch_size}")
    box, batch_size, pad_value = int(box), int(batch_size), parse_pad(pad)
    names = list(dict.fromkeys(table["tomogram"].astype(str)))
    vols = {n: _as_volume(volumes[n]) for n in names if n in volumes}
    shapes = {n: tuple(int(s) for s in v.shape) for n, v in vols.items()}
    for n, s in shapes.items():
        if len(s) != 3:
            raise GeometryError(f"volume of tomogram {n!r} must be (Z, Y, X), got shape {s}")
    bounds = {n: chunk_bounds(v) for n, v in vols.items()}
    planned = plan_batches(table, shapes, bounds, box)
    n = len(planned)
    index = {name: i for i, name in enumerate(names)}
    tomo = planned["tomogram"].map(index).to_numpy(np.int64)
    starts = planned[BOX_COLUMNS].to_numpy(np.int64)
    token = tokenize(
        [(k, getattr(v, "name", None) or _stored_identity(v)) for k, v in vols.items()],
        planned[["tomogram", "x", "y", "z"]].to_numpy(object),
        box,
        batch_size,
        pad_value,
    )
    name = f"{label}-{token}"
    dsk: dict[Any, Any] = {}
    deps: list[Any] = []
    stored = [not isinstance(vols[nm], da.Array) for nm in names]
    src_keys: list[str | None] = []
    for i, nm in enumerate(names):
        if stored[i]:
            key = f"source-{name}-{i}"
            dsk[key] = vols[nm]
            src_keys.append(key)
        else:
            deps.append(vols[nm])
            src_keys.append(None)
    n_batches = max(1, -(-n // batch_size))
    for b in range(n_batches):
        sl = slice(b * batch_size, min(n, (b + 1) * batch_size))
        bt, bs = tomo[sl], starts[sl]
        if all(stored[int(t)] for t in np.unique(bt)):
            dsk[(name, b, 0, 0, 0)] = (_fill_stored, list(src_keys), bt, bs, box, pad_value)
            continue
        origins, pieces = [], []
        for t in np.unique(bt):
            vol = vols[names[int(t)]]
            vb = bounds[names[int(t)]]
            for ci in _chunk_ranges(bs[bt == t], box, vb):
                origins.append((int(t), tuple(int(vb[k][ci[k]]) for k in range(3))))
                pieces.append((vol.name, *ci))
        shapes_list = [shapes[nm] for nm in names]
        dsk[(name, b, 0, 0, 0)] = (
            _fill_pieces,
            bt,
            bs,
            box,
            pad_value,
            shapes_list,
            origins,
            *pieces,
        )
    sizes = tuple(min(batch_size, n - b * batch_size) for b in range(n_batches)) if n else (0,)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    stack = da.Array(
        graph,
        name,
        chunks=(sizes, (box,), (box,), (box,)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), np.float32),
    )
    return stack, planned
