"""Several classes' vote maps to one label volume (the multi-class rule of Algorithm 1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryoflow.kernels._guards import refuse_lazy

__all__ = ["assign_classes"]


def assign_classes(
    votes: np.ndarray,
    thresholds: Sequence[float],
    n_tilts: Sequence[int] | int,
    class_ids: Sequence[int],
) -> np.ndarray:
    """Label each voxel with the best-supported class among those passing their threshold.

    Class ``c`` passes at a voxel when ``votes[c] > thresholds[c]`` (the paper's
    ``1(M > T)``). Its support there is ``votes[c] / n_tilts[c]``, the fraction of tilts whose
    2D map marked the voxel's ray, so classes lifted from different numbers of tilts compare
    fairly. The voxel takes the passing class with the highest support; ties go to the class
    listed first; no passing class gives 0 (background).

    Parameters
    ----------
    votes : ndarray of shape (K, z, y, x), integer
        One vote map (block) per class.
    thresholds : sequence of K numbers
    n_tilts : int or sequence of K ints
    class_ids : sequence of K ints in 1..255
        Label written for each class.

    Returns
    -------
    ndarray of shape (z, y, x), uint8
    """
    refuse_lazy(votes, "assign_classes")
    v = np.asarray(votes)
    k = v.shape[0]
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    n = np.broadcast_to(np.asarray(n_tilts, dtype=np.float64), (k,))
    ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    if t.size != k or ids.size != k:
        raise ValueError(f"need one threshold and one id per class ({k}), got {t.size}, {ids.size}")
    if np.any(ids < 1) or np.any(ids > 255):
        raise ValueError(f"class ids must lie in 1..255, got {ids.tolist()}")
    if np.any(n <= 0):
        raise ValueError(f"n_tilts must be positive, got {n.tolist()}")
    shape = (k,) + (1,) * (v.ndim - 1)
    support = np.where(v > t.reshape(shape), v / n.reshape(shape), -1.0)
    best = np.argmax(support, axis=0)  # first maximum: ties go to the earlier class
    passed = np.take_along_axis(support, best[None], axis=0)[0] >= 0
    return np.where(passed, ids[best], 0).astype(np.uint8)
