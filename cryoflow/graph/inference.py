"""Lazy inference graphs: a segmentation network mapped over image batches.

Each task runs the network on one batch of whole images (tilt images of a tilt series
``(tilt, y, x)`` or slices of a tomogram ``(z, y, x)``) and returns uint8 probability maps.
Tasks carry a :class:`cryoflow.models.loader.ModelHandle`, never the network: the worker's
:class:`~cryoflow.models.loader.ModelPlugin` holds it. GPU placement is decided by the
pipeline (``dask.annotate(resources={"GPU": 1})`` around these builders).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cryoflow.graph.sources import read_slices, stored_source
from cryoflow.kernels.combine import combine_features
from cryoflow.models.loader import ModelHandle, get_model
from cryoflow.models.predict import predict_images


def _infer_block(block: np.ndarray, handle: ModelHandle, batch_size: int) -> np.ndarray:
    model, _ = get_model(handle)
    return predict_images(model, block, batch_size=batch_size, device=handle.device)


def _infer_stored(
    source: Any, start: int, stop: int, handle: ModelHandle, batch_size: int
) -> np.ndarray:
    """Read images ``start:stop`` from the store, then run the network on them."""
    return _infer_block(read_slices(source, (start, stop)), handle, batch_size)


def _infer_from_store(
    source: Any, shape: tuple[int, ...], handle: ModelHandle, batch_size: int, name: str
) -> da.Array:
    """One task per batch that reads its images straight from ``source`` (no read tasks)."""
    n = int(shape[0])
    starts = list(range(0, n, batch_size))
    src_key = f"source-{name}"
    dsk: dict = {src_key: source}
    for i, a in enumerate(starts):
        dsk[(name, i, 0, 0)] = (
            _infer_stored,
            src_key,
            a,
            min(a + batch_size, n),
            handle,
            batch_size,
        )
    chunks = (tuple(min(batch_size, n - a) for a in starts), (int(shape[1]),), (int(shape[2]),))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[])
    return da.Array(graph, name, chunks=chunks, dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8))


def infer_images(
    images: da.Array,
    handle: ModelHandle,
    *,
    batch_size: int = 8,
    label: str = "images",
) -> da.Array:
    """Probability maps of the network on every image, one task per batch.

    Parameters
    ----------
    images : dask.array.Array of shape (N, Y, X)
        Tilt images ``(tilt, y, x)`` or tomogram slices ``(z, y, x)``; any chunking (rechunked
        to ``batch_size`` whole images per block). A plain view of a stored (Zarr) stack is
        not rechunked: each batch's task reads its images from the store itself
        (:mod:`cryoflow.graph.sources`).
    handle : ModelHandle
    batch_size : int
        Images per task (and per forward pass, halved inside a task on CUDA out-of-memory).
    label : str
        Names the tasks ``annotate-<label>-<token>``.

    Returns
    -------
    dask.array.Array of shape (N, Y, X), uint8 (0..255), blocks ``(batch_size, Y, X)``.
    """
    if not isinstance(images, da.Array):
        images = da.from_array(np.asarray(images), chunks=(batch_size, -1, -1))
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, Y, X), got {images.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    source = stored_source(images)
    if source is not None:  # a stored stack: each batch task reads its own images
        token = tokenize(images.name, handle.sha256, handle.device, batch_size)
        return _infer_from_store(
            source, images.shape, handle, batch_size, f"annotate-{label}-{token}"
        )
    src = images.rechunk((batch_size, -1, -1))
    token = tokenize(src.name, handle.sha256, handle.device, batch_size)
    return src.map_blocks(
        _infer_block,
        handle,
        batch_size,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), dtype=np.uint8),
        name=f"annotate-{label}-{token}",
    )


def combine_lazy(probabilities: Sequence[da.Array], thresholds: Sequence[float]) -> da.Array:
    """Lazy :func:`cryoflow.kernels.combine.combine_features` over ``F`` maps of shape ``(N, Y, X)``.

    Returns a uint8 label map ``(N, Y, X)``: ``f + 1`` for the winning feature, ``0`` elsewhere.
    """
    if not probabilities:
        raise ValueError("need at least one probability map")
    stacked = da.stack([da.asarray(p) for p in probabilities]).rechunk({0: -1})
    thr = tuple(float(t) for t in thresholds)
    return stacked.map_blocks(
        combine_features,
        thr,
        drop_axis=0,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), dtype=np.uint8),
        name=f"combine-{tokenize(stacked.name, thr)}",
    )
