"""Body motions relative to the consensus, and their principal motions (PCA).

Per particle and body, in the reference (consensus) frame, ``(x, y, z)`` order:

- rotation: the rotation vector (degrees) of ``R_cons^T R_body`` (the contract's ``R`` on
  ``(x, y, z)``): how the body turned relative to where the consensus put it;
- translation: where the body's centre went, ``R_cons^-1 (x_body - x_cons)`` in voxels, with
  ``x = s + M c_b`` the body centre in the particle under either pose.

Each particle's motions form one row of ``6 nb`` numbers (``rot_x, rot_y, rot_z, shift_x,
shift_y, shift_z`` per body; a degree and a voxel count one unit each, as RELION's flexibility
analysis weighs degrees and Å). Centred and decomposed by SVD, they give the principal
motions: unit directions in that space, their variances, and every particle's amplitude along
each. Phase 2 writes the amplitudes as a STAR column set and draws the components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from cryoflow.errors import GeometryError
from cryoflow.geometry.rotation import XYZ_TO_ZYX, matrix_xyz_from_euler, matrix_zyx_from_euler

_PARTS = ("rot_x_deg", "rot_y_deg", "rot_z_deg", "shift_x_px", "shift_y_px", "shift_z_px")


@dataclass(frozen=True)
class BodyMotions:
    """``rotations_deg`` (n, nb, 3) and ``translations_px`` (n, nb, 3), both ``(x, y, z)`` in
    the reference frame (see module docstring)."""

    rotations_deg: np.ndarray
    translations_px: np.ndarray

    def table(self) -> np.ndarray:
        """ndarray (n, 6 nb): per body its rotation then its translation."""
        n, nb = self.rotations_deg.shape[:2]
        return np.concatenate([self.rotations_deg, self.translations_px], axis=2).reshape(n, 6 * nb)


def motion_columns(n_bodies: int) -> list[str]:
    """Names of the ``6 nb`` motion columns: ``body1_rot_x_deg`` .. ``body<nb>_shift_z_px``."""
    return [f"body{b + 1}_{p}" for b in range(int(n_bodies)) for p in _PARTS]


def relative_motions(
    consensus_euler_deg: np.ndarray,
    consensus_shifts_zyx_px: np.ndarray,
    body_euler_deg: np.ndarray,
    body_shifts_zyx_px: np.ndarray,
    centres_zyx_px: np.ndarray,
) -> BodyMotions:
    """Motions of every body relative to the consensus (see module docstring).

    ``consensus_*`` (n, 3); ``body_*`` (n, nb, 3); ``centres_zyx_px`` (nb, 3).
    """
    ce = np.asarray(consensus_euler_deg, dtype=float).reshape(-1, 3)
    cs = np.asarray(consensus_shifts_zyx_px, dtype=float).reshape(-1, 3)
    be = np.asarray(body_euler_deg, dtype=float)
    bs = np.asarray(body_shifts_zyx_px, dtype=float)
    c = np.asarray(centres_zyx_px, dtype=float)
    n = len(ce)
    if be.ndim != 3 or be.shape[0] != n or be.shape[2] != 3 or bs.shape != be.shape:
        raise GeometryError(
            f"body poses must be (n, nb, 3) for {n} particles, got {be.shape} and {bs.shape}"
        )
    nb = be.shape[1]
    if c.shape != (nb, 3):
        raise GeometryError(f"need one centre (3,) per body ({nb}), got {c.shape}")
    r_c = matrix_xyz_from_euler(ce)  # (n, 3, 3)
    m_c = matrix_zyx_from_euler(ce)
    rot = np.empty((n, nb, 3))
    trans = np.empty((n, nb, 3))
    for b in range(nb):
        r_b = matrix_xyz_from_euler(be[:, b])
        rel = np.swapaxes(r_c, 1, 2) @ r_b
        rot[:, b] = np.degrees(Rotation.from_matrix(rel).as_rotvec())
        x_body = bs[:, b] + matrix_zyx_from_euler(be[:, b]) @ c[b]
        x_cons = cs + m_c @ c[b]
        d_zyx = np.einsum("nji,nj->ni", m_c, x_body - x_cons)  # M^T (x_b - x_c)
        trans[:, b] = d_zyx @ XYZ_TO_ZYX  # reversed: (x, y, z)
    return BodyMotions(rot, trans)


@dataclass(frozen=True)
class PrincipalMotions:
    """``components`` (L, 6 nb) unit directions; ``variances`` (L,); ``explained`` (L,) shares
    of the total variance; ``amplitudes`` (n, L) each particle's coordinate along each;
    ``mean`` (6 nb,); ``columns`` the names of the ``6 nb`` entries."""

    components: np.ndarray
    variances: np.ndarray
    explained: np.ndarray
    amplitudes: np.ndarray
    mean: np.ndarray
    columns: list[str]


def principal_motions(motions: BodyMotions, n_components: int | None = None) -> PrincipalMotions:
    """PCA of the motion table (see module docstring); ``n_components`` default all."""
    x = motions.table()
    n, d = x.shape
    if n < 2:
        raise GeometryError(f"principal motions need at least 2 particles, got {n}")
    mean = x.mean(axis=0)
    u, sv, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = sv**2 / (n - 1)
    total = max(float(var.sum()), 1e-30)
    k = len(sv) if n_components is None else min(int(n_components), len(sv))
    # a deterministic sign: each component's largest entry positive
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    vt = vt * signs[:, None]
    amp = (x - mean) @ vt[:k].T
    return PrincipalMotions(vt[:k], var[:k], var[:k] / total, amp, mean, motion_columns(d // 6))
