"""Centroids of labelled components: per-block moments that add up across blocks.

A component's centroid is the mean position of its voxels; with ``weights`` (a probability
map) also its mean weight (the pick's score) and its weight-weighted centroid. Each block
contributes sums (:func:`component_moments`); sums of the same label from different blocks
add (:func:`merge_moments`), so the result does not depend on the chunking.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cryoflow.kernels._guards import refuse_lazy

__all__ = ["MOMENT_COLUMNS", "centroids", "component_moments", "merge_moments"]

MOMENT_COLUMNS = ["label", "n_voxels", "sum_z", "sum_y", "sum_x", "sum_w"]


def component_moments(
    labels: np.ndarray, weights: np.ndarray | None = None, offset: Sequence[int] = (0, 0, 0)
) -> pd.DataFrame:
    """Voxel count, coordinate sums and weight sums of every label in one block.

    Parameters
    ----------
    labels : ndarray of shape (z, y, x), int (0 = background)
    weights : ndarray of the same shape, optional (default: weight 1 per voxel)
    offset : where ``labels[0, 0, 0]`` lies in the volume

    Returns
    -------
    pandas.DataFrame with :data:`MOMENT_COLUMNS`, one row per label present.
    """
    refuse_lazy(labels, "component_moments")
    lab = np.asarray(labels)
    ids, inverse = np.unique(lab.ravel(), return_inverse=True)
    keep = ids > 0
    if not keep.any():
        return pd.DataFrame(
            {c: np.zeros(0, np.int64 if c == "label" else np.float64) for c in MOMENT_COLUMNS}
        )
    n = ids.size
    zz, yy, xx = np.indices(lab.shape, sparse=False).reshape(3, -1).astype(np.float64)
    w = np.ones(lab.size) if weights is None else np.asarray(weights, np.float64).ravel()
    out = {
        "label": ids.astype(np.int64),
        "n_voxels": np.bincount(inverse, minlength=n).astype(np.float64),
        "sum_z": np.bincount(inverse, weights=zz + offset[0], minlength=n),
        "sum_y": np.bincount(inverse, weights=yy + offset[1], minlength=n),
        "sum_x": np.bincount(inverse, weights=xx + offset[2], minlength=n),
        "sum_w": np.bincount(inverse, weights=w, minlength=n),
    }
    return pd.DataFrame(out)[keep].reset_index(drop=True)


def merge_moments(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Add up the moments of the same labels from several blocks (sorted by label)."""
    nonempty = [t for t in tables if len(t)]
    if not nonempty:
        return component_moments(np.zeros((1, 1, 1), np.int64))
    t = pd.concat(nonempty, ignore_index=True)
    return t.groupby("label", sort=True).sum().reset_index()[MOMENT_COLUMNS]


def centroids(moments: pd.DataFrame, *, min_voxels: int = 1) -> pd.DataFrame:
    """One pick per component: ``z, y, x`` (float, voxels), ``score`` (mean weight),
    ``n_voxels`` and ``label``; components smaller than ``min_voxels`` are dropped."""
    m = moments[moments["n_voxels"] >= min_voxels]
    n = m["n_voxels"].to_numpy(np.float64)
    return pd.DataFrame(
        {
            "z": m["sum_z"].to_numpy() / n,
            "y": m["sum_y"].to_numpy() / n,
            "x": m["sum_x"].to_numpy() / n,
            "score": m["sum_w"].to_numpy() / n,
            "n_voxels": n.astype(np.int64),
            "label": m["label"].to_numpy(np.int64),
        }
    ).reset_index(drop=True)
