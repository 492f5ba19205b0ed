"""2D boxes per tilt <-> masks (eager NumPy): the inputs of the paper's Algorithm 3.

A 2D box table has columns ``tilt, class, score, y0, x0, y1, x1`` (see
:mod:`cryoflow.io.boxes`); coordinates are detector pixels, ``y1``/``x1`` exclusive, and may
be fractional: a pixel belongs to a box when its centre ``(y, x)`` satisfies
``y0 <= y < y1`` and ``x0 <= x < x1`` after rounding the bounds up (``ceil``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from cryoflow.kernels._guards import refuse_lazy

__all__ = [
    "BOX2D_COLUMNS",
    "BOX3D_COLUMNS",
    "box_masks",
    "boxes_from_masks",
    "component_boxes",
    "outermost",
]

#: the 2D box schema (detector pixels, ``y1``/``x1`` exclusive, 0-based tilt index): every
#: 2D box table (detectors, truth boxes, box files) has these columns in this order
BOX2D_COLUMNS = ["tilt", "class", "score", "y0", "x0", "y1", "x1"]
#: the 3D box schema (voxels, ``z1``/``y1``/``x1`` exclusive; ``support`` = mean votes inside)
BOX3D_COLUMNS = ["class", "support", "z0", "y0", "x0", "z1", "y1", "x1"]


def box_masks(
    boxes: pd.DataFrame,
    n_tilts: int,
    image_shape: tuple[int, int],
    *,
    class_name: str | None = None,
    min_score: float = 0.0,
) -> np.ndarray:
    """Paint 2D boxes into per-tilt binary masks (the paper's ``U2D(h)``).

    Parameters
    ----------
    boxes : pandas.DataFrame
        Columns ``tilt, class, score, y0, x0, y1, x1``; ``tilt`` is the 0-based tilt index.
    n_tilts : int
    image_shape : (Y, U)
    class_name : str or None
        Keep only boxes of this class (None: all boxes).
    min_score : float
        Keep only boxes with ``score >= min_score``.

    Returns
    -------
    ndarray of shape (n_tilts, Y, U), bool
        Boxes are clipped to the image; a box outside it paints nothing.
    """
    Y, U = image_shape
    out = np.zeros((n_tilts, Y, U), dtype=bool)
    sel = boxes
    if class_name is not None:
        sel = sel[sel["class"].astype(str) == class_name]
    sel = sel[sel["score"].astype(float) >= min_score]
    for t, y0, x0, y1, x1 in sel[["tilt", "y0", "x0", "y1", "x1"]].itertuples(index=False):
        t = int(t)
        if not 0 <= t < n_tilts:
            raise ValueError(f"box on tilt {t} but the series has tilts 0..{n_tilts - 1}")
        ya, yb = (int(np.clip(np.ceil(v), 0, Y)) for v in (y0, y1))
        xa, xb = (int(np.clip(np.ceil(v), 0, U)) for v in (x0, x1))
        out[t, ya:yb, xa:xb] = True
    return out


def boxes_from_masks(
    masks: np.ndarray,
    class_name: str,
    *,
    jitter_px: float = 0.0,
    min_pixels: int = 4,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-tilt boxes around the connected components of 2D masks, optionally jittered.

    Stands in for a 2D detector (e.g. Faster R-CNN) when making test data from truth masks.

    Parameters
    ----------
    masks : ndarray of shape (n_tilts, Y, U), bool
    class_name : str
    jitter_px : float
        Standard deviation (pixels) of independent Gaussian noise added to each box edge.
    min_pixels : int
        Components smaller than this are skipped.
    seed : int
        Seed of the local RNG for the jitter.

    Returns
    -------
    pandas.DataFrame with columns ``tilt, class, score, y0, x0, y1, x1`` (float coordinates,
    ``score`` 1.0), sorted by tilt.
    """
    refuse_lazy(masks, "boxes_from_masks")
    masks = np.asarray(masks, dtype=bool)
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(masks.shape[0]):
        for _, box in component_boxes(masks[t], min_pixels)[1]:
            if jitter_px > 0:
                box += rng.normal(0.0, jitter_px, size=4)
            rows.append([t, class_name, 1.0, *box.tolist()])
    return pd.DataFrame(rows, columns=BOX2D_COLUMNS)


def component_boxes(
    mask: np.ndarray, min_pixels: int = 1
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Boxes around the connected components of one 2D mask (the one box extraction).

    Returns
    -------
    labels : ndarray of the mask's shape, int
        ``scipy.ndimage.label`` of the mask (4-connected), 0 outside it.
    boxes : list of (label, ndarray of shape (4,), float)
        ``(y0, x0, y1, x1)`` (``y1``/``x1`` exclusive) of every component with at least
        ``min_pixels`` pixels, in label order.
    """
    labels, n = ndimage.label(mask)
    if n == 0:
        return labels, []
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    return labels, [
        (k, np.array([sl[0].start, sl[1].start, sl[0].stop, sl[1].stop], float))
        for k, sl in enumerate(ndimage.find_objects(labels), start=1)
        if sl is not None and sizes[k] >= min_pixels
    ]


def outermost(boxes: pd.DataFrame, fraction: float | None = None) -> pd.DataFrame:
    """The 3D boxes (``z0, y0, x0, z1, y1, x1``) not lying inside another box of the table
    (of equal boxes, the first is kept); index reset.

    ``fraction``: drop an inner box only when its ``n_voxels`` is below ``fraction`` times
    the outer box's (a fragment of that object), keeping a whole object that a larger,
    merged component's box happens to enclose. Algorithm 3's vote threshold leaves such
    fragments along the edges of an object's visual hull (slivers one voxel thick).
    """
    cols = ["z0", "y0", "x0", "z1", "y1", "x1"]
    b = boxes[cols].to_numpy(float)
    inside = (b[:, None, :3] >= b[None, :, :3]).all(-1) & (b[:, None, 3:] <= b[None, :, 3:]).all(-1)
    same = (b[:, None, :] == b[None, :, :]).all(-1)
    later = np.arange(len(b))[:, None] > np.arange(len(b))[None, :]
    drop = (inside & ~same) | (same & later)
    if fraction is not None:
        n = boxes["n_voxels"].to_numpy(float)
        drop &= n[:, None] < float(fraction) * n[None, :]
    return boxes[~drop.any(axis=1)].reset_index(drop=True)
