"""Lazy extraction of particle boxes from many tomograms: few read tasks, one block per batch.

Planning (:func:`plan_batches`, no Dask): particles are ordered so that neighbours share
chunks (by tomogram, then by the Morton (z-order) code of the chunk their box centre is in,
then by which neighbouring chunks the box reaches into, then by position) and cut into
batches of ``batch_size``; a batch may span two tomograms where one ends and the next begins.
The stack has one block per batch, ``ceil(n / batch_size)``, whatever the number of
tomograms or chunks.

Stored volumes (a Zarr array, or a plain Dask view of one, as ``open_volume`` returns) are
read inside the tasks: one *read task* fills consecutive batches, as many as fit in
``task_bytes`` (:func:`task_groups`, 64 MiB by default), reading each chunk its boxes overlap
once, only the part the boxes need (memory: the task's boxes plus two chunk pieces: the next
chunk is read on a helper thread while boxes are filled from the current one). Each read task
is one block of the stack (whole batches, so whole stored chunks of the particle set, which
keeps ``batch_size`` rows per chunk: ``planned.attrs["batch_size"]``); no block is a slice of
another task's result, which a second worker would have to fetch. A chunk is decoded whole
whenever any part of it is read, so fewer, larger read tasks decode each chunk fewer times.
Any other Dask volume gives each batch's task the keys of exactly the chunks its boxes overlap
(memory: the batch plus those chunks), one block per batch.

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

__all__ = [
    "BOX_COLUMNS",
    "TASK_BYTES",
    "chunk_bounds",
    "extract_stack",
    "plan_batches",
    "task_groups",
]

BOX_COLUMNS = ["box_z0", "box_y0", "box_x0"]

# Boxes one stored-volume read task fills at most (bytes of float32 boxes): larger tasks read
# each chunk fewer times (a chunk is decoded whole by every task whose boxes reach into it).
TASK_BYTES = 64 << 20


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


def _spill(
    starts: np.ndarray, box: int, bounds: Sequence[np.ndarray], home: np.ndarray
) -> np.ndarray:
    """Which neighbours of its home chunk each box reaches into, as a sort key: the number of
    axes it crosses, then the bits (below, above) of each axis."""
    shape = np.asarray([b[-1] for b in bounds], dtype=np.int64)
    lo = _chunk_index(np.clip(starts, 0, shape - 1), bounds)
    hi = _chunk_index(np.clip(starts + box, 1, shape) - 1, bounds)
    bits = np.zeros(len(starts), np.int64)
    crossed = np.zeros(len(starts), np.int64)
    for k in range(3):
        below, above = lo[:, k] < home[:, k], hi[:, k] > home[:, k]
        bits |= (below.astype(np.int64) << (2 * k)) | (above.astype(np.int64) << (2 * k + 1))
        crossed += below | above
    return (crossed << 6) | bits


def plan_batches(
    table: pd.DataFrame,
    shapes: Mapping[str, Sequence[int]],
    bounds: Mapping[str, Sequence[np.ndarray]],
    box: int,
) -> pd.DataFrame:
    """The particle table in extraction order, with ``input_index``, box starts and
    ``inside_fraction`` added (``bounds``: each tomogram's :func:`chunk_bounds`).

    Order: tomograms in order of first appearance; within one, the Morton code of the chunk
    holding the box centre (its *home* chunk), then which neighbours of the home chunk the box
    reaches into (boxes inside it first, then by the number of axes crossed and which ones),
    then the centre's flat index, then the input row. Boxes that need the same chunks so land
    in the same batches.

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
    spill = np.zeros(len(t), np.int64)
    tomo = t["tomogram"].astype(str).to_numpy()
    for j, name in enumerate(names):
        rows = tomo == name
        shape = np.asarray(shapes[name], dtype=np.int64)
        inside[rows] = inside_fraction(starts[rows], box, tuple(int(v) for v in shape))
        centre = np.clip(starts[rows] + box // 2, 0, shape - 1)
        home = _chunk_index(centre, bounds[name])
        tomo_rank[rows] = j
        morton[rows] = _morton(home)
        spill[rows] = _spill(starts[rows], box, bounds[name], home)
        flat[rows] = np.ravel_multi_index(tuple(centre.T), tuple(int(v) for v in shape))
    t["inside_fraction"] = inside
    order = np.lexsort((t["input_index"].to_numpy(), flat, spill, morton, tomo_rank))
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


def _tomogram_runs(tomo: np.ndarray) -> list[tuple[int, slice]]:
    """``(tomogram, rows)`` of each run of equal values (a planned batch: one run each)."""
    edges = np.flatnonzero(np.diff(tomo)) + 1
    bounds = [0, *edges.tolist(), len(tomo)]
    return [
        (int(tomo[a]), slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a
    ]


def _read_jobs(
    sources: Sequence[Any], tomo: np.ndarray, starts: np.ndarray, box: int
) -> list[tuple[Any, slice, np.ndarray, np.ndarray]]:
    """The reads of one read task, in order: ``(source, rows, lo, hi)`` for each chunk its
    boxes overlap, ``lo:hi`` the part of that chunk they need (one read per chunk)."""
    jobs = []
    for t, rows in _tomogram_runs(np.asarray(tomo)):
        bounds = chunk_bounds(sources[t])
        st = starts[rows]
        for ci in _chunk_ranges(st, box, bounds):
            c0 = np.array([bounds[k][ci[k]] for k in range(3)])
            c1 = np.array([bounds[k][ci[k] + 1] for k in range(3)])
            need = _needed(st, box, c0, c1)
            if need is not None:
                jobs.append((sources[t], rows, need[0], need[1]))
    return jobs


def _read(job: tuple[Any, slice, np.ndarray, np.ndarray]) -> np.ndarray:
    src, _, a, b = job
    return np.asarray(src[a[0] : b[0], a[1] : b[1], a[2] : b[2]])


def _fill_stored(
    sources: Sequence[Any], tomo: np.ndarray, starts: np.ndarray, box: int, pad: Pad
) -> np.ndarray:
    """One read task from stored volumes: read each overlapped chunk's needed part once,
    paste it into every box that needs it.

    The next chunk is read (decoded by Zarr's codecs, which release the GIL) on a helper
    thread while the boxes are filled from the current one, so decoding and copying overlap;
    at most two chunk pieces are held at once.
    """
    from concurrent.futures import ThreadPoolExecutor

    out = np.zeros((len(starts), box, box, box), dtype=np.float32)
    jobs = _read_jobs(sources, tomo, starts, box)
    if jobs:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract-read") as pool:
            ahead = pool.submit(_read, jobs[0])
            for k, job in enumerate(jobs):
                region = ahead.result()
                if k + 1 < len(jobs):
                    ahead = pool.submit(_read, jobs[k + 1])
                rows, a = job[1], job[2]
                paste_region(out[rows], starts[rows], box, region, tuple(int(v) for v in a))
                del region
    for t, rows in _tomogram_runs(np.asarray(tomo)):
        shape = tuple(int(v) for v in sources[t].shape)
        pad_outside(out[rows], starts[rows], box, shape, pad)
    return out


def task_groups(n: int, batch_size: int, box: int, task_bytes: int = TASK_BYTES) -> list[range]:
    """The batches each stored-volume read task fills: consecutive batches, as many as fit
    in ``task_bytes`` of float32 boxes (at least one)."""
    per = max(1, int(task_bytes) // max(1, batch_size * box**3 * 4))
    n_batches = max(1, -(-n // batch_size))
    return [range(g, min(n_batches, g + per)) for g in range(0, n_batches, per)]


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
    task_bytes: int = TASK_BYTES,
) -> tuple[da.Array, pd.DataFrame]:
    """The lazy stack ``(n, B, B, B)`` float32 of every particle's box, and its table.

    Parameters
    ----------
    volumes : tomogram name -> level-0 volume ``(Z, Y, X)``
        A Zarr array, a Dask array or DataArray (a plain view of a stored array is read in the
        batch tasks), or a NumPy array.
    table : particle table (``tomogram, x, y, z``, ...; :mod:`cryoflow.io.particles`)
    box : int, the box side ``B``
    batch_size : particles per stored chunk of the stack (and per task of Dask volumes)
    pad : ``"mean"`` or a number (:mod:`cryoflow.kernels.extract`)
    task_bytes : most bytes of boxes one read task of stored volumes fills
        (:func:`task_groups`: whole batches, at least one); its blocks are slices of it

    Returns
    -------
    stack : dask.array.Array of shape (n, B, B, B)
        Blocks of whole batches: one per read task of stored volumes, one per batch of
        Dask volumes.
    table : pandas.DataFrame
        The particles in stack order (:func:`plan_batches`: ``input_index``, box starts,
        ``inside_fraction`` added; ``attrs["batch_size"]``).
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
        int(task_bytes),
    )
    name = f"{label}-{token}"
    dsk: dict[Any, Any] = {}
    stored = [not isinstance(vols[nm], da.Array) for nm in names]
    deps = [vols[nm] for nm, st in zip(names, stored, strict=True) if not st]
    shapes_list = [shapes[nm] for nm in names]
    sizes: list[int] = []
    for group in task_groups(n, batch_size, box, task_bytes):
        lo, hi = group[0] * batch_size, min(n, (group[-1] + 1) * batch_size)
        gt = tomo[lo:hi]
        if all(stored[int(t)] for t in np.unique(gt)):
            # one block for the whole read task (whole batches: whole stored chunks), so no
            # block is a slice of another task's result that a second worker would fetch;
            # the stored arrays travel inside the task (small: metadata and the store's
            # path), so that no worker holds them as data the read tasks would crowd beside
            used = np.unique(gt)
            sources = [vols[names[int(t)]] for t in used]
            key = (name, len(sizes), 0, 0, 0)
            dsk[key] = (
                _fill_stored,
                sources,
                np.searchsorted(used, gt),
                starts[lo:hi],
                box,
                pad_value,
            )
            sizes.append(hi - lo)
            continue
        for b in group:  # Dask volumes: one task per batch, given exactly its chunks
            sl = slice(b * batch_size, min(n, (b + 1) * batch_size))
            bt, bs = tomo[sl], starts[sl]
            origins, pieces = [], []
            for t in np.unique(bt):
                vol = vols[names[int(t)]]
                vb = bounds[names[int(t)]]
                for ci in _chunk_ranges(bs[bt == t], box, vb):
                    origins.append((int(t), tuple(int(vb[k][ci[k]]) for k in range(3))))
                    pieces.append((vol.name, *ci))
            key = (name, len(sizes), 0, 0, 0)
            dsk[key] = (_fill_pieces, bt, bs, box, pad_value, shapes_list, origins, *pieces)
            sizes.append(sl.stop - sl.start)
    planned.attrs["batch_size"] = batch_size  # rows per stored chunk (write_particle_set)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    stack = da.Array(
        graph,
        name,
        chunks=(tuple(sizes) if n else (0,), (box,), (box,), (box,)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), np.float32),
    )
    return stack, planned
