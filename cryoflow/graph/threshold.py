"""Lazy threshold search: one max-projection, then per-row-chunk counts summed on the cluster.

The cost is one forward projection (``mode="max"``) plus a histogram per output chunk; it
does not grow with the number of candidates (see :mod:`cryoflow.kernels.threshold`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Unpack

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cryoflow.errors import GeometryError
from cryoflow.geometry import TiltGeometry
from cryoflow.graph.project import KernelOptions, project_graph
from cryoflow.kernels.threshold import threshold_counts


def _counts_task(maxproj: np.ndarray, masks: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    inter, proj, mask = threshold_counts(maxproj, masks, candidates)
    return np.concatenate([inter, proj, mask[:, None]], axis=1)[None]


def threshold_counts_graph(
    votes: da.Array,
    masks: da.Array,
    geometry: TiltGeometry,
    candidates: np.ndarray,
    *,
    prefix: str = "threshold",
    **kernel: Unpack[KernelOptions],
) -> da.Array:
    """Lazy per-tilt counts of every candidate threshold.

    Parameters
    ----------
    votes : dask.array.Array of shape (Z, Y, X)
    masks : dask.array.Array of shape (n_tilts, V, U)
    geometry : TiltGeometry
    candidates : ndarray of shape (K,), ascending
    prefix : str
    **kernel : KernelOptions
        The max-projection's ``interpolation`` and ``n_threads`` (:func:`project_graph`).

    Returns
    -------
    dask.array.Array of shape (n_tilts, 2K+1), int64
        ``[:, :K]`` = #(mask & maxproj > T), ``[:, K:2K]`` = #(maxproj > T), ``[:, 2K]`` = #mask.
    """
    if masks.ndim != 3 or masks.shape[0] != geometry.n_tilts:
        raise GeometryError(
            f"masks must be (n_tilts={geometry.n_tilts}, V, U), got shape {masks.shape}"
        )
    n, V, U = (int(s) for s in masks.shape)
    k = int(candidates.size)
    maxproj = project_graph(
        votes,
        geometry,
        (V, U),
        mode="max",
        prefix=f"{prefix}-maxproj",
        **kernel,
    )
    masks = masks.rechunk(maxproj.chunks)
    token = tokenize(maxproj, masks, candidates)
    name = f"{prefix}-counts-{token}"
    fn = partial(_counts_task, candidates=candidates)
    dsk: dict[Any, Any] = {
        (name, r, 0, 0): (fn, (maxproj.name, 0, r, 0), (masks.name, 0, r, 0))
        for r in range(len(maxproj.chunks[1]))
    }
    deps: list[Any] = [maxproj, masks]
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    per_chunk = da.Array(
        graph,
        name,
        chunks=((1,) * len(maxproj.chunks[1]), (n,), (2 * k + 1,)),
        dtype=np.int64,
        meta=np.empty((0, 0, 0), np.int64),
    )
    return per_chunk.sum(axis=0, split_every=8)


def counts_split(counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inter (n, K), proj (n, K), mask (n,)) from a computed counts array (n, 2K+1)."""
    return counts[:, :k], counts[:, k : 2 * k], counts[:, 2 * k]


__all__: Sequence[str] = ["threshold_counts_graph", "counts_split"]
