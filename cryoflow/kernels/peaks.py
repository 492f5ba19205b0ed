"""Local maxima of a score volume: picks at least ``min_distance`` apart, above a threshold.

Rule. Order voxels by ``(score, -flat index)``, the flat index taken in C order over the
*whole volume*: a strict total order, so ties are broken the same way wherever a voxel is
seen from. A voxel ``v`` is a **peak** when

* ``score[v] >= threshold`` (and finite), and
* ``v`` is the greatest voxel in that order within the ball ``|u - v| <= min_distance``
  (Euclidean, voxels; the ball clipped to the volume).

Two peaks are therefore always more than ``min_distance`` apart, and whether ``v`` is a peak
depends only on the voxels within ``min_distance`` of it: a chunk read with a halo of
``ceil(min_distance)`` voxels decides its own core voxels exactly as the whole volume would, so
chunkwise peak finding (:mod:`cryoflow.graph.peaks`) finds a particle on a chunk border
exactly once. On a plateau (equal scores, e.g. a saturated uint8 probability map) the voxel
with the smallest flat index wins within each ball; smooth a flat-topped map first if one
pick per plateau is wanted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from cryoflow.errors import GeometryError
from cryoflow.kernels._guards import refuse_lazy

__all__ = ["PEAK_COLUMNS", "ball", "local_maxima"]

#: columns of a peak table: position (voxels, the volume's) and the score there
PEAK_COLUMNS = ["z", "y", "x", "score"]


def ball(radius: float) -> np.ndarray:
    """Boolean ndarray of shape (2R+1,)*3, ``R = floor(radius)``: offsets with norm <= radius."""
    r = float(radius)
    if not (np.isfinite(r) and r >= 0):
        raise GeometryError(f"min_distance must be a finite number >= 0, got {radius!r}")
    n = int(np.floor(r))
    ax = np.arange(-n, n + 1)
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij", sparse=True)
    return (z**2 + y**2 + x**2) <= r * r + 1e-9


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {c: np.zeros(0, np.float64 if c == "score" else np.int64) for c in PEAK_COLUMNS}
    )


def local_maxima(
    block: np.ndarray,
    *,
    min_distance: float,
    threshold: float,
    origin: Sequence[int] = (0, 0, 0),
    core: tuple[slice, ...] | None = None,
    volume_shape: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Peaks (module rule) of the core of one block.

    Parameters
    ----------
    block : ndarray of shape (z, y, x)
        Scores of a region of the volume: a chunk plus a halo of ``ceil(min_distance)``
        voxels wherever the volume continues (NaN counts as no score).
    min_distance : float
        Peaks are more than this many voxels apart.
    threshold : float
        Lowest score of a peak.
    origin : (z, y, x)
        Where ``block[0, 0, 0]`` lies in the volume.
    core : tuple of 3 slices, optional
        The part of ``block`` whose peaks to report (default: all of it).
    volume_shape : (Z, Y, X), optional
        The whole volume's shape, for the flat-index tie-break (default: the block's extent
        from the origin).

    Returns
    -------
    pandas.DataFrame with :data:`PEAK_COLUMNS`
        ``z, y, x`` int64 in volume voxels, ``score`` float64; in flat-index order.
    """
    refuse_lazy(block, "local_maxima")
    b = np.asarray(block, dtype=np.float64)
    if b.ndim != 3:
        raise GeometryError(f"local_maxima takes a (z, y, x) block, got shape {b.shape}")
    if b.size == 0:
        return _empty()
    o = np.asarray(origin, dtype=np.int64)
    shape = np.asarray(volume_shape if volume_shape is not None else o + b.shape, dtype=np.int64)
    foot = ball(min_distance)
    r = foot.shape[0] // 2
    values = np.where(np.isfinite(b), b, -np.inf)
    # 1. candidates: the maximum of the cube inscribed in their ball (necessary, and cheap:
    #    a separable filter), above the threshold, in the core
    half = int(np.floor(float(min_distance) / np.sqrt(3.0)))
    top = ndimage.maximum_filter(values, size=2 * half + 1, mode="constant", cval=-np.inf)
    cand = (values == top) & (values >= threshold) & np.isfinite(values)
    if core is not None:
        keep = np.zeros_like(cand)
        keep[core] = True
        cand &= keep
    points = np.argwhere(cand)
    if not len(points):
        return _empty()
    # 2. the rule itself on the candidates' balls: nothing greater, ties to the smallest index
    winners = [p for p in points if _wins(values, p, foot, r, o, shape)]
    if not winners:
        return _empty()
    w = np.asarray(winners)
    pos = w + o
    out = pd.DataFrame({"z": pos[:, 0], "y": pos[:, 1], "x": pos[:, 2], "score": b[tuple(w.T)]})
    flat = np.ravel_multi_index(tuple(pos.T), tuple(int(s) for s in shape))
    return out.iloc[np.argsort(flat, kind="stable")].reset_index(drop=True)


def _wins(
    values: np.ndarray,
    p: np.ndarray,
    foot: np.ndarray,
    r: int,
    origin: np.ndarray,
    shape: np.ndarray,
) -> bool:
    """Whether ``p`` is the greatest voxel of its ball in the (score, -flat index) order."""
    lo = np.maximum(p - r, 0)
    hi = np.minimum(p + r + 1, values.shape)
    win = values[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    f = foot[
        lo[0] - p[0] + r : hi[0] - p[0] + r,
        lo[1] - p[1] + r : hi[1] - p[1] + r,
        lo[2] - p[2] + r : hi[2] - p[2] + r,
    ]
    v = values[tuple(p)]
    if np.any((win > v) & f):
        return False
    same = np.argwhere((win == v) & f) + lo + origin
    if len(same) == 1:
        return True
    flat = np.ravel_multi_index(tuple(same.T), tuple(int(s) for s in shape))
    mine = np.ravel_multi_index(tuple(p + origin), tuple(int(s) for s in shape))
    return bool(flat.min() == mine)
