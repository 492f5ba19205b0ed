"""Connected components of a chunked 3D mask, labelled chunk by chunk and merged across faces.

The scheme (the one dask-image's ``label`` uses):

1. every chunk is labelled on its own with :func:`scipy.ndimage.label`;
2. each chunk's labels are offset by the label counts of the chunks before it (C order), so
   labels are unique across the volume;
3. for every chunk boundary plane, a task reads the 2-voxel-thick slab across it and lists the
   label pairs that touch under the chosen connectivity (diagonal neighbours included);
4. one small task joins all pairs with a union-find (connected components of the pair graph)
   and returns a lookup table ``global label -> final label``, final labels ``1..N`` ordered
   by their first chunk label;
5. every chunk is relabelled through the table.

No task holds more than one chunk or one boundary slab, except step 4 (one int per label).
"""

from __future__ import annotations

import itertools
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cryoflow.kernels.components import (
    block_stats,
    bounding_boxes,
    face_pairs,
    label_block,
    merge_stats,
    structure,
)

__all__ = ["blocks_to_array", "component_boxes", "label", "relabel_table"]


def blocks_to_array(
    name: str,
    blocks: dict[tuple[int, ...], Any],
    chunks: tuple[tuple[int, ...], ...],
    dtype: Any,
) -> da.Array:
    """A Dask array named ``name`` from Delayed blocks keyed ``(name, *block_index)``.

    The blocks' graphs become one layer named ``name`` (Dask's culling, used by slicing and
    ``to_delayed``, looks the array's layer up by its name).
    """
    merged = HighLevelGraph.merge(*(b.__dask_graph__() for b in blocks.values()))
    graph = HighLevelGraph.from_collections(name, dict(merged), dependencies=())
    return da.Array(
        graph, name, chunks=chunks, dtype=dtype, meta=np.zeros((0,) * len(chunks), dtype=dtype)
    )


def _label(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    return label_block(mask, connectivity)


def _offset(local: np.ndarray, offset: int) -> np.ndarray:
    out = local.astype(np.int64)
    out[local > 0] += offset
    return out


def relabel_table(n_total: int, pairs: list[np.ndarray]) -> np.ndarray:
    """Lookup table merging touching labels.

    Parameters
    ----------
    n_total : int
        Number of chunk-local labels over the whole volume (global ids ``1..n_total``).
    pairs : list of ndarray of shape (k, 2)
        Global label pairs that belong to the same component.

    Returns
    -------
    ndarray of shape (n_total + 1,), int32
        ``table[0] == 0``; equal values mean one component; values are ``1..N``, numbered in
        order of each component's smallest global id.
    """
    p = np.concatenate([np.zeros((0, 2), np.int64), *pairs], axis=0)
    n = n_total + 1
    graph = coo_matrix((np.ones(len(p), np.int8), (p[:, 0], p[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    # renumber components by first appearance (node 0 = background is component comp[0])
    _, first = np.unique(comp, return_index=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    table = rank[comp]  # background (node 0) has the smallest first index -> 0
    if table.max(initial=0) >= np.iinfo(np.int32).max:
        raise OverflowError(f"too many components for int32 labels: {table.max()}")
    return table.astype(np.int32)


def _count(table: np.ndarray) -> int:
    return int(table.max(initial=0))


def _apply(local: np.ndarray, offset: int, table: np.ndarray) -> np.ndarray:
    out = np.zeros(local.shape, np.int32)
    nz = local > 0
    out[nz] = table[local[nz].astype(np.int64) + offset]
    return out


def label(mask: Any, *, connectivity: int = 1, name: str = "label") -> tuple[da.Array, Any]:
    """Label the connected components of a chunked 3D mask, lazily.

    Parameters
    ----------
    mask : dask array of shape (Z, Y, X), bool (any chunking)
    connectivity : int
        1 (faces, SciPy's default), 2 (+ edges) or 3 (+ corners).
    name : str
        Task-name prefix, e.g. ``"label-<tomogram>"``.

    Returns
    -------
    labels : dask array of shape (Z, Y, X), int32, same chunks as ``mask``
        0 = background, ``1..N`` = components; equal to ``scipy.ndimage.label`` with the same
        connectivity up to a renumbering of the labels.
    n : dask.delayed.Delayed
        Computes to ``N``, the number of components.
    """
    structure(connectivity)  # validates
    mask = da.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"label needs a (Z, Y, X) mask, got shape {mask.shape}")
    mask = mask.astype(bool)
    tok = tokenize(mask, connectivity)
    blocks = mask.to_delayed()
    grid = blocks.shape
    # 1. per-chunk labels
    labelled = {}
    for idx in itertools.product(*(range(g) for g in grid)):
        key = f"{name}-chunk-{tok}-{'-'.join(map(str, idx))}"
        labelled[idx] = dask.delayed(_label, pure=True, nout=2)(
            blocks[idx], connectivity, dask_key_name=key
        )
    # 2. offsets (C order)
    offsets: dict[tuple[int, ...], Any] = {}
    running: Any = 0
    for idx in sorted(labelled):
        offsets[idx] = running
        running = running + labelled[idx][1]
    n_total = running
    chunks = mask.chunks
    starts = [np.concatenate([[0], np.cumsum(c)]) for c in chunks]
    glob_blocks = np.empty(grid, dtype=object)
    for idx in labelled:
        shape = tuple(chunks[a][idx[a]] for a in range(3))
        d = dask.delayed(_offset, pure=True)(
            labelled[idx][0],
            offsets[idx],
            dask_key_name=f"{name}-offset-{tok}-{'-'.join(map(str, idx))}",
        )
        glob_blocks[idx] = da.from_delayed(
            d, shape=shape, dtype=np.int64, meta=np.zeros((0, 0, 0), np.int64)
        )
    glob = da.block(glob_blocks.tolist())
    # 3. pairs across every chunk boundary plane
    pairs = []
    for axis in range(3):
        for b in starts[axis][1:-1]:
            sl = [slice(None)] * 3
            sl[axis] = slice(int(b) - 1, int(b) + 1)
            slab = glob[tuple(sl)]
            pairs.append(
                dask.delayed(face_pairs, pure=True)(
                    slab,
                    axis,
                    connectivity,
                    dask_key_name=f"{name}-faces-{tok}-{axis}-{int(b)}",
                )
            )
    # 4. union-find
    table = dask.delayed(relabel_table, pure=True)(
        n_total, pairs, dask_key_name=f"{name}-merge-{tok}"
    )
    n_final = dask.delayed(_count, pure=True)(table, dask_key_name=f"{name}-count-{tok}")
    # 5. relabel
    out_name = f"{name}-{tok}"
    out_blocks = {
        idx: dask.delayed(_apply, pure=True)(
            labelled[idx][0], offsets[idx], table, dask_key_name=(out_name, *idx)
        )
        for idx in labelled
    }
    return blocks_to_array(out_name, out_blocks, mask.chunks, np.int32), n_final


def component_boxes(
    labels: da.Array,
    votes: da.Array | None,
    class_name: str,
    *,
    min_voxels: int = 1,
) -> Any:
    """Lazy 3D boxes of a chunked label volume (per-chunk statistics, merged in one task).

    Parameters
    ----------
    labels : dask array of shape (Z, Y, X), int (global labels, 0 = background)
    votes : dask array of shape (Z, Y, X) or None, rechunked like ``labels``

    Returns
    -------
    dask.delayed.Delayed computing to the DataFrame of
    :func:`cryoflow.kernels.components.bounding_boxes`.
    """
    lab = labels.to_delayed()
    vot = votes.rechunk(labels.chunks).to_delayed() if votes is not None else None
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in labels.chunks]
    parts = []
    for idx in itertools.product(*(range(n) for n in lab.shape)):
        offset = tuple(int(starts[a][i]) for a, i in enumerate(idx))
        block = None if vot is None else vot[idx]
        parts.append(dask.delayed(block_stats, pure=True)(lab[idx], block, offset))
    merged = dask.delayed(merge_stats, pure=True)(parts)
    return dask.delayed(bounding_boxes, pure=True)(merged, class_name, min_voxels=min_voxels)
