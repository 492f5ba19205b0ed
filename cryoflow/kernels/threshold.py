"""Algorithm 1 of the 2D-to-3D paper (threshold auto-selection), every candidate in one pass.

For a candidate ``T`` the paper forward projects ``votes > T`` (mode ``any``) and scores it by
the mean over tilts of IoU(mask_t, projection_t). Since ``any(votes > T)`` along a ray equals
``max(votes along the ray) > T``, one max-projection ``P`` serves every candidate: per tilt,

    |proj_T|         = #(P > T)
    |mask & proj_T|  = #(mask & (P > T))
    IoU_T            = |mask & proj_T| / (|mask| + |proj_T| - |mask & proj_T|)   (1 if both empty)

and both counts for all candidates come from one histogram of ``P`` over the sorted candidates
(:func:`threshold_counts`), so the cost does not grow with the number of candidates.
:func:`select_threshold_reference` is the naive per-candidate search it is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cryoflow.errors import GeometryError
from cryoflow.geometry import TiltGeometry
from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.project import project_reference


@dataclass(frozen=True)
class ThresholdResult:
    """Outcome of a threshold search.

    Attributes
    ----------
    threshold : float
        The best candidate (the lowest one among equal best scores).
    thresholds : ndarray of shape (K,)
        Candidates, ascending.
    scores : ndarray of shape (K,)
        Mean over tilts of IoU(mask_t, FP_any(votes > T)_t), aligned with ``thresholds``.
    """

    threshold: float
    thresholds: np.ndarray
    scores: np.ndarray

    @property
    def score(self) -> float:
        """Score of the chosen threshold."""
        return float(self.scores[int(np.searchsorted(self.thresholds, self.threshold))])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "cryoflow.ThresholdResult",
            "threshold": float(self.threshold),
            "thresholds": [float(t) for t in self.thresholds],
            "scores": [float(s) for s in self.scores],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ThresholdResult:
        if not isinstance(d, dict) or d.get("kind") != "cryoflow.ThresholdResult":
            raise ValueError(f"not a cryoflow.ThresholdResult record: {str(d)[:120]}")
        return cls(
            threshold=float(d["threshold"]),
            thresholds=np.asarray(d["thresholds"], dtype=np.float64),
            scores=np.asarray(d["scores"], dtype=np.float64),
        )


def parse_candidates(candidates: object, n_tilts: int) -> np.ndarray:
    """Candidates as a sorted, unique, finite float64 array (default ``0 .. n_tilts-1``)."""
    if candidates is None:
        return np.arange(n_tilts, dtype=np.float64)
    c = np.asarray(candidates, dtype=np.float64).reshape(-1)
    if c.size == 0 or not np.all(np.isfinite(c)):
        raise ValueError(f"candidates must be a non-empty list of finite numbers, got {c.tolist()}")
    return np.unique(c)


def threshold_counts(
    maxproj: np.ndarray, masks: np.ndarray, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-tilt pixel counts for every candidate, from a max-projection.

    Parameters
    ----------
    maxproj : ndarray of shape (n_tilts, V, U)
        Per-ray maximum of the votes (``-inf`` where no voxel falls).
    masks : ndarray of shape (n_tilts, V, U)
        2D masks (non-zero = object).
    candidates : ndarray of shape (K,)
        Ascending thresholds.

    Returns
    -------
    inter : ndarray of shape (n_tilts, K), int64
        ``#(mask & (maxproj > T))``.
    proj : ndarray of shape (n_tilts, K), int64
        ``#(maxproj > T)``.
    mask : ndarray of shape (n_tilts,), int64
        ``#mask``.
    """
    refuse_lazy(maxproj, "maxproj")
    refuse_lazy(masks, "masks")
    maxproj = np.asarray(maxproj)
    masks = np.asarray(masks) != 0
    if maxproj.shape != masks.shape or maxproj.ndim != 3:
        raise GeometryError(
            f"maxproj and masks must both be (n_tilts, V, U), got {maxproj.shape} and {masks.shape}"
        )
    n = maxproj.shape[0]
    k = candidates.size
    # 1. bin of each pixel = number of candidates strictly below its value (P > c_j iff j < bin)
    bins = np.searchsorted(candidates, maxproj.reshape(n, -1).astype(np.float64), side="left")
    flat = bins + (np.arange(n) * (k + 1))[:, None]
    hist_all = np.bincount(flat.ravel(), minlength=n * (k + 1)).reshape(n, k + 1)
    hist_in = np.bincount(flat[masks.reshape(n, -1)], minlength=n * (k + 1)).reshape(n, k + 1)
    # 2. count(P > c_j) = sum of bins j+1 .. k
    above_all = np.cumsum(hist_all[:, ::-1], axis=1)[:, ::-1][:, 1:]
    above_in = np.cumsum(hist_in[:, ::-1], axis=1)[:, ::-1][:, 1:]
    return above_in.astype(np.int64), above_all.astype(np.int64), masks.reshape(n, -1).sum(1)


def iou_from_counts(inter: np.ndarray, proj: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """ndarray of shape (n_tilts, K): IoU per tilt and candidate (1 when both are empty)."""
    union = mask[:, None] + proj - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return iou


def result_from_counts(
    candidates: np.ndarray, inter: np.ndarray, proj: np.ndarray, mask: np.ndarray
) -> ThresholdResult:
    """Scores (mean IoU over tilts) and the best candidate (ties go to the lowest)."""
    scores = iou_from_counts(inter, proj, mask).mean(axis=0)
    best = int(np.argmax(scores))  # first maximum = lowest candidate
    return ThresholdResult(float(candidates[best]), candidates.copy(), scores)


def select_threshold_block(
    maxproj: np.ndarray, masks: np.ndarray, candidates: np.ndarray
) -> ThresholdResult:
    """The fast search on in-memory arrays, each (n_tilts, V, U)."""
    return result_from_counts(candidates, *threshold_counts(maxproj, masks, candidates))


def select_threshold_reference(
    votes: np.ndarray,
    masks: np.ndarray,
    geometry: TiltGeometry,
    candidates: object = None,
    *,
    interpolation: str = "nearest",
) -> ThresholdResult:
    """The naive search: forward project ``votes > T`` for every candidate ``T``.

    Parameters
    ----------
    votes : ndarray of shape (Z, Y, X)
    masks : ndarray of shape (n_tilts, V, U)
    geometry : TiltGeometry
    candidates : array-like of shape (K,), optional
    """
    masks = np.asarray(masks) != 0
    cands = parse_candidates(candidates, geometry.n_tilts)
    detector = masks.shape[1:]
    inter, proj = [], []
    for t in cands:
        fp = project_reference(
            np.asarray(votes) > t, geometry, detector, mode="any", interpolation=interpolation
        )
        inter.append((fp & masks).sum(axis=(1, 2)))
        proj.append(fp.sum(axis=(1, 2)))
    return result_from_counts(
        cands, np.stack(inter, axis=1), np.stack(proj, axis=1), masks.sum(axis=(1, 2))
    )
