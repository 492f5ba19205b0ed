"""Stored sources of Dask arrays: read a stored array's pieces in the task that needs them.

``da.from_array(zarr_array)`` makes one read task per stored chunk; a graph that needs other
pieces (row slabs of a tilt series, batches of images) then adds split and merge tasks, each
with its scheduling cost and its intermediate data in worker memory. When a Dask array is a
plain view of a Zarr array, graph builders read the pieces they need straight from it instead:
:func:`stored_source` recognises such a view and :func:`read_slices` is the reading task.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np


def stored_source(images: da.Array) -> Any | None:
    """The stored array (Zarr or a checked reader of one) that ``images`` views, else None.

    A plain view is what ``da.from_array(source, ...)`` builds (two graph layers: the source
    under ``original-<name>`` and one getter per chunk) with the source's shape and dtype, so
    reading the source gives exactly the array's values. Anything computed from it (a
    threshold, a filter, a rechunk) is not a plain view.
    """
    import zarr

    name = images.name
    layers = getattr(images.dask, "layers", {})
    if set(layers) != {name, f"original-{name}"}:
        return None
    source = images.dask[f"original-{name}"]
    source = getattr(source, "value", source)  # a DataNode in newer task specs
    # a Zarr array, or a reader wrapping one (cryoflow.io.chunks.CheckedArray, whose reads
    # name the damaged chunk); reading through the wrapper keeps that check
    if not isinstance(getattr(source, "zarr_array", source), zarr.Array):
        return None
    if tuple(source.shape) != tuple(images.shape) or np.dtype(source.dtype) != images.dtype:
        return None
    return source


def read_slices(source: Any, *bounds: tuple[int, int]) -> np.ndarray:
    """``source[b0[0]:b0[1], b1[0]:b1[1], ...]`` as an ndarray (leading axes; the rest whole)."""
    return np.asarray(source[tuple(slice(a, b) for a, b in bounds)])
