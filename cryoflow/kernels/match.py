"""Matching picks to true positions: one-to-one within a distance, precision, recall, F1.

A pick matches a true particle when they are at most ``tolerance`` voxels apart; each is
matched at most once, by a minimum-distance assignment (Hungarian algorithm on the distances
within the tolerance), so duplicates count as false positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

__all__ = ["PickScore", "match_picks"]


@dataclass(frozen=True)
class PickScore:
    """True positives, false positives, false negatives and the ratios they give."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        return (
            2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else 1.0
        )


def match_picks(picks_xyz: np.ndarray, truth_xyz: np.ndarray, tolerance: float) -> PickScore:
    """Score ``(n, 3)`` picks against ``(m, 3)`` true positions (same units, e.g. voxels)."""
    p = np.asarray(picks_xyz, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(truth_xyz, dtype=np.float64).reshape(-1, 3)
    if not len(p) or not len(t):
        return PickScore(0, len(p), len(t))
    pairs = cKDTree(p).sparse_distance_matrix(
        cKDTree(t), float(tolerance), output_type="coo_matrix"
    )
    if pairs.nnz == 0:
        return PickScore(0, len(p), len(t))
    rows, cols = np.unique(pairs.row), np.unique(pairs.col)
    cost = np.full((len(rows), len(cols)), 1e9)
    cost[np.searchsorted(rows, pairs.row), np.searchsorted(cols, pairs.col)] = pairs.data
    r, c = linear_sum_assignment(cost)
    tp = int((cost[r, c] <= tolerance).sum())
    return PickScore(tp, len(p) - tp, len(t) - tp)
