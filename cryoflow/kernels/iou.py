"""Overlap measures: mask IoU, box IoU and one-to-one box matching (eager NumPy)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from cryoflow.kernels._guards import refuse_lazy

__all__ = ["box_iou", "mask_iou", "match_boxes", "surface_scores"]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of the same shape (any ndim); two empty masks give 1.0."""
    refuse_lazy(a, "mask_iou")
    refuse_lazy(b, "mask_iou")
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask_iou needs equal shapes, got {a.shape} and {b.shape}")
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(a & b) / union)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of axis-aligned boxes in any dimension.

    Parameters
    ----------
    a : ndarray of shape (n, 2*d)
        Boxes ``(lo_0, ..., lo_{d-1}, hi_0, ..., hi_{d-1})`` with half-open ``hi``
        (a box ``(0, 0, 2, 2)`` covers 4 pixels), e.g. ``(z0, y0, x0, z1, y1, x1)``.
    b : ndarray of shape (m, 2*d)

    Returns
    -------
    ndarray of shape (n, m), float64
    """
    refuse_lazy(a, "box_iou")
    refuse_lazy(b, "box_iou")
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape[1] != b.shape[1] or a.shape[1] % 2:
        raise ValueError(f"boxes need 2*d columns each, got {a.shape[1]} and {b.shape[1]}")
    d = a.shape[1] // 2
    lo = np.maximum(a[:, None, :d], b[None, :, :d])
    hi = np.minimum(a[:, None, d:], b[None, :, d:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    vol_a = np.prod(np.clip(a[:, d:] - a[:, :d], 0, None), axis=1)
    vol_b = np.prod(np.clip(b[:, d:] - b[:, :d], 0, None), axis=1)
    union = vol_a[:, None] + vol_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_boxes(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of predicted to true boxes maximising total IoU (Hungarian).

    Pairs with IoU 0 are not matches.

    Parameters
    ----------
    pred : ndarray of shape (n, 2*d)
    truth : ndarray of shape (m, 2*d)

    Returns
    -------
    pred_index, truth_index : ndarray of shape (k,), int
        Matched rows of ``pred`` and ``truth``.
    iou : ndarray of shape (k,)
        IoU of each matched pair.
    """
    if len(pred) == 0 or len(truth) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros(0)
    iou = box_iou(pred, truth)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    keep = iou[rows, cols] > 0
    return rows[keep], cols[keep], iou[rows[keep], cols[keep]]


def surface_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    tolerance: float = 1.5,
    *,
    dist_truth: np.ndarray | None = None,
) -> dict[str, float]:
    """Precision, recall and F1 of a detected surface against a true one, with tolerance.

    A detected voxel is correct when a true voxel lies within ``tolerance`` voxels (Euclidean
    distance); a true voxel is found when a detected voxel lies within ``tolerance``.

    Parameters
    ----------
    pred, truth : ndarray of shape (Z, Y, X), bool
    dist_truth : ndarray of shape (Z, Y, X), optional
        ``distance_transform_edt(~truth)``, when already computed (scoring many ``pred``).

    Returns
    -------
    dict with ``precision``, ``recall``, ``f1`` (0 when undefined) and ``n_pred``, ``n_truth``.
    """
    from scipy.ndimage import distance_transform_edt

    refuse_lazy(pred, "surface_scores")
    refuse_lazy(truth, "surface_scores")
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    n_pred, n_truth = int(pred.sum()), int(truth.sum())
    if n_pred == 0 or n_truth == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n_pred": n_pred, "n_truth": n_truth}
    if dist_truth is None:
        dist_truth = distance_transform_edt(~truth)
    precision = float(np.mean(dist_truth[pred] <= tolerance))
    recall = float(np.mean(distance_transform_edt(~pred)[truth] <= tolerance))
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n_pred": n_pred,
        "n_truth": n_truth,
    }
