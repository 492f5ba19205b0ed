"""Lazy graphs over 2D boxes: box masks per tilt, boxes from truth masks, box tables per batch.

- :func:`box_masks_graph`: a box table painted into per-tilt masks
  (:func:`cryoflow.kernels.boxes.box_masks`), one task per tilt holding only its tilt's boxes;
- :func:`truth_box_masks_graph`: the boxes around the components of a stack of 2D masks (one
  task over the whole stack, so the jitter's random stream is the one of
  :func:`cryoflow.kernels.boxes.boxes_from_masks` on the stack), painted per tilt;
- :func:`box_tables_graph`: a per-batch function returning a box table, one task per batch of
  images; :func:`box_counts_graph`: the number of boxes on each image, as an array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
from dask.base import tokenize

from cryoflow.errors import ConfigError
from cryoflow.kernels.boxes import box_masks, boxes_from_masks

__all__ = ["box_counts_graph", "box_masks_graph", "box_tables_graph", "truth_box_masks_graph"]


def _tilt_mask(
    boxes: pd.DataFrame, tilt: int, shape: tuple[int, int], class_name: str, min_score: float
) -> np.ndarray:
    """The boxes of ``tilt`` as a ``(1, Y, U)`` mask."""
    rows = boxes[boxes["tilt"] == tilt]
    return box_masks(rows.assign(tilt=0), 1, shape, class_name=class_name, min_score=min_score)


def _per_tilt(
    table: Any, n_tilts: int, shape: tuple[int, int], class_name: str, min_score: float, name: str
) -> da.Array:
    parts = []
    for t in range(n_tilts):
        task = dask.delayed(_tilt_mask, pure=True)(
            table, t, shape, class_name, min_score, dask_key_name=f"{name}-{t}"
        )
        parts.append(
            da.from_delayed(task, shape=(1, *shape), dtype=bool, meta=np.zeros((0, 0, 0), bool))
        )
    return da.concatenate(parts, axis=0)


def box_masks_graph(
    boxes: pd.DataFrame,
    n_tilts: int,
    image_shape: tuple[int, int],
    *,
    class_name: str,
    min_score: float = 0.0,
    name: str = "boxmasks",
) -> da.Array:
    """:func:`cryoflow.kernels.boxes.box_masks` as a lazy ``(n_tilts, Y, U)`` bool array, one
    task per tilt (each holds only its tilt's boxes)."""
    bad = boxes[(boxes["tilt"] < 0) | (boxes["tilt"] >= n_tilts)]
    if len(bad):
        raise ConfigError(
            f"box on tilt {int(bad['tilt'].iloc[0])} but the series has tilts 0..{n_tilts - 1}"
        )
    parts = []
    for t in range(n_tilts):
        rows = boxes[boxes["tilt"] == t]
        key = f"{name}-{tokenize(rows, image_shape, class_name, min_score)}-{t}"
        task = dask.delayed(_tilt_mask, pure=True)(
            rows, t, image_shape, class_name, min_score, dask_key_name=key
        )
        parts.append(
            da.from_delayed(
                task, shape=(1, *image_shape), dtype=bool, meta=np.zeros((0, 0, 0), bool)
            )
        )
    return da.concatenate(parts, axis=0)


def _truth_boxes(masks: np.ndarray, class_name: str, jitter_px: float, seed: int) -> pd.DataFrame:
    return boxes_from_masks(np.asarray(masks) != 0, class_name, jitter_px=jitter_px, seed=seed)


def truth_box_masks_graph(
    masks: da.Array,
    class_name: str,
    *,
    jitter_px: float = 0.0,
    seed: int = 0,
    name: str = "truthboxes",
) -> da.Array:
    """Masks ``(n, Y, U)`` -> the masks of the (jittered) boxes around their per-tilt
    components, ``(n, Y, U)`` bool, lazily (one boxing task over the stack, one painting task
    per tilt)."""
    n, Y, U = (int(s) for s in masks.shape)
    tok = tokenize(masks.name, class_name, jitter_px, seed)
    table = dask.delayed(_truth_boxes, pure=True)(
        masks, class_name, jitter_px, seed, dask_key_name=f"{name}-table-{tok}"
    )
    return _per_tilt(table, n, (Y, U), class_name, 0.0, f"{name}-{tok}")


def box_tables_graph(
    images: da.Array,
    batch_size: int,
    fn: Callable[..., pd.DataFrame],
    *args: Any,
    name: str = "boxes",
    pure: bool = True,
) -> list[Any]:
    """``fn(images[a:b], a, *args)`` for every batch ``a:b`` of ``batch_size`` images: one lazy
    task per batch (``Delayed``), each returning a box table whose first image is ``a``."""
    n = int(images.shape[0])
    out = []
    for a in range(0, n, batch_size):
        b = min(n, a + batch_size)
        key = f"{name}-{tokenize(images.name, a, b, fn, args)}"
        out.append(dask.delayed(fn, pure=pure)(images[a:b], a, *args, dask_key_name=key))
    return out


def _counts_block(
    images: np.ndarray, fn: Callable[..., pd.DataFrame], args: tuple[Any, ...]
) -> np.ndarray:
    boxes = fn(images, 0, *args)
    return np.bincount(boxes["tilt"].to_numpy(dtype=np.int64), minlength=len(images)).astype(
        np.int32
    )


def box_counts_graph(
    images: da.Array,
    batch_size: int,
    fn: Callable[..., pd.DataFrame],
    *args: Any,
    name: str = "boxcounts",
) -> da.Array:
    """Boxes per image ``(n,)`` int32 of ``fn(batch, 0, *args)``, one task per batch."""
    data = images.rechunk((batch_size, -1, -1))
    return data.map_blocks(
        _counts_block,
        fn,
        tuple(args),
        drop_axis=[1, 2],
        dtype=np.int32,
        meta=np.empty((0,), np.int32),
        name=f"{name}-{tokenize(data.name, fn, args)}",
    )
