"""3D connected components of one block and the per-label statistics that merge across blocks.

Eager NumPy/SciPy; the chunked, cluster-wide labelling is :mod:`cryoflow.graph.labels`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from cryoflow.kernels._guards import refuse_lazy

__all__ = [
    "STAT_COLUMNS",
    "block_stats",
    "bounding_boxes",
    "face_pairs",
    "label_block",
    "merge_stats",
    "structure",
]

#: Columns of a per-label statistics table (half-open box, voxel count, summed votes).
STAT_COLUMNS = ["label", "z0", "y0", "x0", "z1", "y1", "x1", "n_voxels", "votes_sum"]


def structure(connectivity: int) -> np.ndarray:
    """3x3x3 boolean structuring element: 1 = faces (6-), 2 = +edges (18-), 3 = +corners (26-)."""
    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1, 2 or 3, got {connectivity!r}")
    return ndimage.generate_binary_structure(3, connectivity)


def label_block(mask: np.ndarray, connectivity: int = 1) -> tuple[np.ndarray, int]:
    """Label the connected components of one boolean block.

    Parameters
    ----------
    mask : ndarray of shape (z, y, x), bool
    connectivity : int
        1, 2 or 3 (see :func:`structure`).

    Returns
    -------
    labels : ndarray of shape (z, y, x), int32
        0 = background, ``1..n`` = components.
    n : int
    """
    refuse_lazy(mask, "label_block")
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=structure(connectivity))
    return labels.astype(np.int32, copy=False), int(n)


def face_pairs(slab: np.ndarray, axis: int, connectivity: int = 1) -> np.ndarray:
    """Pairs of labels that touch across the middle of a 2-voxel-thick slab.

    Parameters
    ----------
    slab : ndarray of shape (2, a, b) along ``axis`` (any position of the 2), int
        Global labels on both sides of a chunk boundary, layer 0 before it, layer 1 after.
    axis : int
        The axis crossing the boundary (0, 1 or 2).
    connectivity : int

    Returns
    -------
    ndarray of shape (k, 2), int64
        Unique pairs ``(label_before, label_after)``, both non-zero.
    """
    refuse_lazy(slab, "face_pairs")
    s = np.moveaxis(np.asarray(slab), axis, 0)
    if s.shape[0] != 2:
        raise ValueError(f"slab must be 2 voxels thick along axis {axis}, got {slab.shape}")
    a, b = s[0], s[1]
    st = np.moveaxis(structure(connectivity), axis, 0)[2]  # neighbours one step forward
    out = []
    n0, n1 = a.shape
    for d0, d1 in zip(*np.nonzero(st), strict=True):
        d0, d1 = int(d0) - 1, int(d1) - 1
        aa = a[max(0, -d0) : n0 - max(0, d0), max(0, -d1) : n1 - max(0, d1)]
        bb = b[max(0, d0) : n0 - max(0, -d0), max(0, d1) : n1 - max(0, -d1)]
        both = (aa > 0) & (bb > 0)
        out.append(np.stack([aa[both], bb[both]], axis=1))
    pairs = np.concatenate(out, axis=0).astype(np.int64) if out else np.zeros((0, 2), np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def block_stats(
    labels: np.ndarray, votes: np.ndarray | None, offset: tuple[int, int, int] = (0, 0, 0)
) -> pd.DataFrame:
    """Per-label bounding box, voxel count and summed votes of one block.

    Parameters
    ----------
    labels : ndarray of shape (z, y, x), int
        Global labels (0 = background).
    votes : ndarray of shape (z, y, x) or None
        Vote counts to sum per label (``votes_sum`` is 0 when None).
    offset : (z, y, x)
        Position of the block's first voxel in the volume.

    Returns
    -------
    pandas.DataFrame with :data:`STAT_COLUMNS`, boxes in volume coordinates (half-open).
    """
    refuse_lazy(labels, "block_stats")
    labels = np.asarray(labels)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return pd.DataFrame({c: np.zeros(0, np.int64) for c in STAT_COLUMNS}).astype(
            {"votes_sum": np.float64}
        )
    # remap to 1..k so find_objects stays small even when labels are large
    dense = np.searchsorted(ids, labels) + 1
    dense[labels == 0] = 0
    slices = ndimage.find_objects(dense)
    counts = np.bincount(dense.ravel(), minlength=ids.size + 1)[1:]
    sums: np.ndarray = np.zeros(ids.size)
    if votes is not None:
        sums = np.bincount(
            dense.ravel(), weights=np.asarray(votes, np.float64).ravel(), minlength=ids.size + 1
        )[1:]
    rows = []
    for i, sl in enumerate(slices):
        lo = [s.start + o for s, o in zip(sl, offset, strict=True)]
        hi = [s.stop + o for s, o in zip(sl, offset, strict=True)]
        rows.append([int(ids[i]), *lo, *hi, int(counts[i]), float(sums[i])])
    return pd.DataFrame(rows, columns=STAT_COLUMNS)


def merge_stats(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Combine per-block statistics of the same labels into one row per label.

    Returns
    -------
    pandas.DataFrame with :data:`STAT_COLUMNS`, sorted by label.
    """
    nonempty = [t for t in tables if len(t)]
    if not nonempty:
        return block_stats(np.zeros((1, 1, 1), np.int32), None)
    t = pd.concat(nonempty, ignore_index=True)
    agg = {c: "min" for c in ("z0", "y0", "x0")}
    agg |= {c: "max" for c in ("z1", "y1", "x1")}
    agg |= {"n_voxels": "sum", "votes_sum": "sum"}
    return t.groupby("label", sort=True).agg(agg).reset_index()[STAT_COLUMNS]


def bounding_boxes(stats: pd.DataFrame, class_name: str, *, min_voxels: int = 1) -> pd.DataFrame:
    """3D boxes ``(class, support, z0, y0, x0, z1, y1, x1)`` from merged statistics.

    ``support`` is the mean vote count of the component's voxels (the mean of the paper's
    ``U3D`` over the object). Components with fewer than ``min_voxels`` voxels are dropped.

    Returns
    -------
    pandas.DataFrame with columns ``label, class, support, z0, y0, x0, z1, y1, x1, n_voxels``.
    """
    s = stats[stats["n_voxels"] >= min_voxels]
    out = pd.DataFrame(
        {
            "label": s["label"].to_numpy(np.int64),
            "class": [class_name] * len(s),
            "support": (s["votes_sum"] / s["n_voxels"].clip(lower=1)).to_numpy(np.float64),
        }
    )
    for c in ("z0", "y0", "x0", "z1", "y1", "x1", "n_voxels"):
        out[c] = s[c].to_numpy(np.int64)
    return out.reset_index(drop=True)
