"""Orientation errors against a known truth, up to symmetry and (optionally) a global frame.

A template-free average lies in a frame of its own: if it equals the truth rotated by ``G``
(``avg(r) = truth(G^-1 r)``), every estimated orientation is ``R_est = R_true @ G^-1``. The
frame ``G`` is found as the candidate ``R_est_i^T R_true_i`` (over up to 200 particles) with the
smallest median error, then errors are ``min over g`` of the angle of ``(R_est G)^T R_true g``.
"""

from __future__ import annotations

import numpy as np

from cryoflow.errors import GeometryError
from cryoflow.geometry.symmetry import SymmetryGroup, parse_symmetry


def orientation_errors_deg(
    est_xyz: np.ndarray,
    true_xyz: np.ndarray,
    *,
    symmetry: str | SymmetryGroup = "C1",
    align_frame: bool = False,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-particle orientation errors (deg) and the frame used.

    Parameters
    ----------
    est_xyz, true_xyz : ndarray of shape (n, 3, 3)
        Estimated and true orientations (reference -> tomogram, on ``(x, y, z)``).
    symmetry : str or SymmetryGroup
        The reference's point group: equivalent orientations count as equal.
    align_frame : bool
        Estimate the global frame ``G`` first (template-free averages); else ``G = I``.

    Returns
    -------
    errors_deg : ndarray of shape (n,)
    frame_xyz : ndarray of shape (3, 3)
        ``G`` (identity when ``align_frame`` is False).
    """
    est = np.asarray(est_xyz, dtype=float)
    tru = np.asarray(true_xyz, dtype=float)
    if est.shape != tru.shape or est.ndim != 3 or est.shape[1:] != (3, 3):
        raise GeometryError(
            f"orientations must be two (n, 3, 3) arrays of one shape, got {est.shape} "
            f"and {tru.shape}"
        )
    group = parse_symmetry(symmetry)
    frame = np.eye(3)
    if align_frame:
        rng = rng if rng is not None else np.random.default_rng(0)
        pick = rng.permutation(len(est))[:200]
        best = np.inf
        for i in pick:
            g = est[i].T @ tru[i]
            err = np.median(group.distance_deg(est @ g, tru))
            if err < best:
                best, frame = err, g
    return group.distance_deg(est @ frame, tru), frame
