"""Picks from maps, chunk by chunk: local maxima with a halo, and component centroids.

:func:`peaks_lazy` reads each chunk of a score volume with a halo of ``ceil(min_distance)``
voxels (clipped at the volume's border) and keeps the peaks of the chunk's own voxels
(:func:`cryoflow.kernels.peaks.local_maxima`): the rule depends only on voxels within
``min_distance``, so every peak of the whole volume is found by exactly one chunk, once.

:func:`centroids_lazy` labels connected components across chunks
(:func:`cryoflow.graph.labels.label`) and adds per-chunk moments, so a component that spans
chunks is one pick at its centroid.

Both return a ``dask.delayed`` pandas.DataFrame (``z, y, x, score`` plus extras), computed by
the caller.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
from dask.base import tokenize

from cryoflow.graph.extract import chunk_bounds
from cryoflow.graph.labels import label
from cryoflow.graph.sources import stored_source
from cryoflow.kernels.centroids import centroids, component_moments, merge_moments
from cryoflow.kernels.peaks import PEAK_COLUMNS, local_maxima

__all__ = ["centroids_lazy", "peaks_lazy"]


def _peaks_stored(
    source: Any,
    lo: tuple[int, ...],
    hi: tuple[int, ...],
    core: tuple[slice, ...],
    origin: tuple[int, ...],
    **kw: Any,
) -> pd.DataFrame:
    block = np.asarray(source[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))])
    return local_maxima(block, origin=origin, core=core, **kw)


def _concat(tables: list[pd.DataFrame]) -> pd.DataFrame:
    nonempty = [t for t in tables if len(t)]
    if not nonempty:
        return tables[0] if tables else pd.DataFrame({c: [] for c in PEAK_COLUMNS})
    out = pd.concat(nonempty, ignore_index=True)
    return out.sort_values(["z", "y", "x"], kind="stable").reset_index(drop=True)


def peaks_lazy(scores: Any, *, min_distance: float, threshold: float) -> Any:
    """Local maxima of a chunked ``(Z, Y, X)`` score volume (a Dask array or DataArray).

    Returns
    -------
    dask.delayed.Delayed -> pandas.DataFrame with ``z, y, x`` (int64 voxels), ``score``,
    sorted by position. One task per chunk (reading its chunk and halo itself when ``scores``
    is a plain view of a stored array; else depending on the chunks of its region), plus one
    concatenation.
    """
    data = scores.data if hasattr(scores, "dims") else scores
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=128)
    halo = int(np.ceil(float(min_distance)))
    shape = tuple(int(s) for s in data.shape)
    kw = {"min_distance": float(min_distance), "threshold": float(threshold), "volume_shape": shape}
    source = stored_source(data)
    bounds = chunk_bounds(data)
    token = tokenize(data.name, min_distance, threshold)
    parts = []
    for ci in product(*(range(len(b) - 1) for b in bounds)):
        c0 = [int(bounds[k][ci[k]]) for k in range(3)]
        c1 = [int(bounds[k][ci[k] + 1]) for k in range(3)]
        lo = tuple(max(0, a - halo) for a in c0)
        hi = tuple(min(n, b + halo) for b, n in zip(c1, shape, strict=True))
        core = tuple(slice(a - o, b - o) for a, b, o in zip(c0, c1, lo, strict=True))
        if source is not None:
            part = dask.delayed(
                _peaks_stored, pure=True, name=f"peaks-{token}-{'-'.join(map(str, ci))}"
            )(source, lo, hi, core, lo, **kw)
        else:
            region = data[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
            part = dask.delayed(
                local_maxima, pure=True, name=f"peaks-{token}-{'-'.join(map(str, ci))}"
            )(region, origin=lo, core=core, **kw)
        parts.append(part)
    return dask.delayed(_concat, pure=True, name=f"peaks-all-{token}")(parts)


def centroids_lazy(
    mask: Any, *, weights: Any | None = None, connectivity: int = 1, min_voxels: int = 1
) -> Any:
    """One pick per connected component of a chunked boolean ``mask`` (``Z, Y, X``).

    ``weights`` (a map of the same chunks, e.g. a probability map) gives each pick's
    ``score`` (its mean weight over the component); without it the score is 1.

    Returns
    -------
    dask.delayed.Delayed -> pandas.DataFrame with ``z, y, x`` (float, the centroid),
    ``score``, ``n_voxels``, ``label``; components of fewer than ``min_voxels`` dropped.
    """
    m = mask.data if hasattr(mask, "dims") else mask
    if not isinstance(m, da.Array):
        m = da.from_array(np.asarray(m), chunks=128)
    labels, _ = label(
        m.astype(bool),
        connectivity=connectivity,
        name=f"pick-label-{tokenize(m.name, connectivity)}",
    )
    lab_blocks = labels.to_delayed()
    w_blocks = None
    if weights is not None:
        w = weights.data if hasattr(weights, "dims") else weights
        w = da.asarray(w).rechunk(labels.chunks)
        w_blocks = w.to_delayed()
    bounds = chunk_bounds(labels)
    token = tokenize(labels.name, None if weights is None else getattr(w, "name", None), min_voxels)
    parts = []
    for ci in product(*(range(len(b) - 1) for b in bounds)):
        offset = tuple(int(bounds[k][ci[k]]) for k in range(3))
        wb = None if w_blocks is None else w_blocks[ci]
        parts.append(dask.delayed(component_moments, pure=True)(lab_blocks[ci], wb, offset))
    merged = dask.delayed(merge_moments, pure=True, name=f"moments-{token}")(parts)
    return dask.delayed(centroids, pure=True, name=f"centroids-{token}")(
        merged, min_voxels=min_voxels
    )
