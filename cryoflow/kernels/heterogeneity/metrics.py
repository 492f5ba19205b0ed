"""Figures of classification and multi-body refinement against a known truth (phantoms).

- :func:`class_accuracy`: the share of particles whose class matches the truth under the
  best one-to-one matching of found classes to true ones (Hungarian assignment on the
  contingency table, ``scipy.optimize.linear_sum_assignment``): class numbers are arbitrary,
  so a perfect classification with swapped numbers scores 1. Extra found classes match
  nothing, so their particles count as wrong.
- :func:`body_angle_errors_deg`: per particle and body, the rotation angle between the
  estimated and the true body orientation.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from cryoflow.errors import GeometryError
from cryoflow.geometry.rotation import angular_distance_deg, matrix_xyz_from_euler


def class_accuracy(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of particles in matched classes (see module docstring); ``found``, ``truth`` (n,)."""
    a = np.asarray(found, dtype=int).reshape(-1)
    t = np.asarray(truth, dtype=int).reshape(-1)
    if a.shape != t.shape or a.size == 0:
        raise GeometryError(
            f"need two non-empty label arrays of one length, got {a.shape}, {t.shape}"
        )
    fa, ia = np.unique(a, return_inverse=True)
    ft, it = np.unique(t, return_inverse=True)
    table = np.zeros((len(fa), len(ft)), dtype=np.int64)
    np.add.at(table, (ia, it), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / a.size)


def body_angle_errors_deg(est_euler_deg: np.ndarray, true_matrices_xyz: np.ndarray) -> np.ndarray:
    """ndarray (n, nb): angles (deg) between estimated body poses (n, nb, 3) Euler angles and
    true body orientations (n, nb, 3, 3) (the contract's ``R`` on ``(x, y, z)``)."""
    est = matrix_xyz_from_euler(np.asarray(est_euler_deg, dtype=float))
    tru = np.asarray(true_matrices_xyz, dtype=float)
    if est.shape != tru.shape:
        raise GeometryError(f"estimated {est.shape[:-2]} and true {tru.shape[:-2]} poses differ")
    return angular_distance_deg(est, tru)
