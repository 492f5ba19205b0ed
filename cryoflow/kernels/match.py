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

__all__ = ["PickScore", "match_pairs", "match_picks"]


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


def match_pairs(
    picks_xyz: np.ndarray, truth_xyz: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one matches of ``(n, 3)`` picks to ``(m, 3)`` true positions within
    ``tolerance``: ``(pick rows, truth rows)``, two int arrays of the same length."""
    p = np.asarray(picks_xyz, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(truth_xyz, dtype=np.float64).reshape(-1, 3)
    none = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    if not len(p) or not len(t):
        return none
    pairs = cKDTree(p).sparse_distance_matrix(
        cKDTree(t), float(tolerance), output_type="coo_matrix"
    )
    if pairs.nnz == 0:
        return none
    rows, cols = np.unique(pairs.row), np.unique(pairs.col)
    cost = np.full((len(rows), len(cols)), 1e9)
    cost[np.searchsorted(rows, pairs.row), np.searchsorted(cols, pairs.col)] = pairs.data
    r, c = linear_sum_assignment(cost)
    keep = cost[r, c] <= tolerance
    return rows[r[keep]].astype(np.int64), cols[c[keep]].astype(np.int64)


def match_picks(picks_xyz: np.ndarray, truth_xyz: np.ndarray, tolerance: float) -> PickScore:
    """Score ``(n, 3)`` picks against ``(m, 3)`` true positions (same units, e.g. voxels)."""
    n = len(np.asarray(picks_xyz).reshape(-1, 3))
    m = len(np.asarray(truth_xyz).reshape(-1, 3))
    tp = len(match_pairs(picks_xyz, truth_xyz, tolerance)[0])
    return PickScore(tp, n - tp, m - tp)
