"""Particle orientations: the contract's ZYZ Euler convention and its matrices.

Convention (``CONTRACT.md``, "Orientations"; RELION's axes, not its direction: see
``relion_euler_from_euler``): angles ``rot, tilt, psi`` in degrees and

    R = scipy.spatial.transform.Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True)

maps *reference* coordinates to *tomogram* coordinates, both ``(x, y, z)`` about the box centre:
the particle's density at offset ``r`` from its centre is the reference's density at
``R.inv().apply(r)``.

cryoflow's arrays are indexed ``(z, y, x)``, so most kernels want the same rotation acting on
``(z, y, x)`` column vectors: ``M_zyx = P @ R_xyz @ P`` with ``P`` the axis reversal.
Names say which frame a matrix acts in (``_xyz`` or ``_zyx``) and which way it maps
(``ref2tomo``: reference -> tomogram).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from cryoflow.errors import GeometryError

#: reverses (x, y, z) <-> (z, y, x); its own inverse
XYZ_TO_ZYX = np.eye(3)[::-1].copy()


def _euler_array(euler_zyz_deg: Sequence[float] | np.ndarray) -> np.ndarray:
    e = np.asarray(euler_zyz_deg, dtype=float)
    if e.shape[-1:] != (3,):
        raise GeometryError(
            f"Euler angles must have a last axis of length 3 (rot, tilt, psi), got shape {e.shape}"
        )
    if not np.all(np.isfinite(e)):
        raise GeometryError("Euler angles must be finite numbers (degrees)")
    return e


def rotation_from_euler(euler_zyz_deg: Sequence[float] | np.ndarray) -> Rotation:
    """The contract's rotation(s) ``R`` (reference -> tomogram) of ``(..., 3)`` angles in degrees."""
    e = _euler_array(euler_zyz_deg)
    return Rotation.from_euler("ZYZ", e.reshape(-1, 3) if e.ndim > 1 else e, degrees=True)


def matrix_xyz_from_euler(euler_zyz_deg: Sequence[float] | np.ndarray) -> np.ndarray:
    """ndarray of shape (..., 3, 3): ``R`` acting on ``(x, y, z)`` column vectors, ref -> tomo."""
    e = _euler_array(euler_zyz_deg)
    m = rotation_from_euler(e).as_matrix()
    return m.reshape(*e.shape[:-1], 3, 3)


def matrix_zyx_from_euler(euler_zyz_deg: Sequence[float] | np.ndarray) -> np.ndarray:
    """ndarray of shape (..., 3, 3): the same rotation acting on ``(z, y, x)`` column vectors."""
    return XYZ_TO_ZYX @ matrix_xyz_from_euler(euler_zyz_deg) @ XYZ_TO_ZYX


def euler_from_matrix_xyz(matrix_xyz: np.ndarray) -> np.ndarray:
    """ndarray of shape (..., 3): ``(rot, tilt, psi)`` in degrees of ``(..., 3, 3)`` matrices."""
    m = np.asarray(matrix_xyz, dtype=float)
    if m.shape[-2:] != (3, 3):
        raise GeometryError(f"rotation matrices must have shape (..., 3, 3), got {m.shape}")
    flat = m.reshape(-1, 3, 3)
    e = Rotation.from_matrix(flat).as_euler("ZYZ", degrees=True)
    return e.reshape(*m.shape[:-2], 3)


def euler_from_matrix_zyx(matrix_zyx: np.ndarray) -> np.ndarray:
    """ndarray of shape (..., 3): Euler angles (deg) of matrices acting on ``(z, y, x)``."""
    return euler_from_matrix_xyz(XYZ_TO_ZYX @ np.asarray(matrix_zyx, dtype=float) @ XYZ_TO_ZYX)


def random_euler(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Uniformly random orientations (Haar measure on SO(3)) as ``(rot, tilt, psi)`` degrees.

    Returns an ndarray of shape ``(3,)`` when ``n`` is None, else ``(n, 3)``.
    """
    rot = Rotation.random(1 if n is None else n, random_state=rng)
    e = rot.as_euler("ZYZ", degrees=True)
    return e[0] if n is None else e


def angular_distance_deg(matrix_a: np.ndarray, matrix_b: np.ndarray) -> np.ndarray:
    """ndarray of shape (...): the rotation angle (deg) of ``A^T B`` for ``(..., 3, 3)`` matrices.

    Frame-independent: the same value for the ``_xyz`` and ``_zyx`` forms of both.
    """
    a = np.asarray(matrix_a, dtype=float)
    b = np.asarray(matrix_b, dtype=float)
    rel = np.swapaxes(a, -1, -2) @ b
    shape = rel.shape[:-2]
    # the rotation vector's norm: accurate near 0, unlike arccos of the trace
    angle = Rotation.from_matrix(rel.reshape(-1, 3, 3)).magnitude()
    return np.degrees(angle).reshape(shape)


def relion_euler_from_euler(euler_zyz_deg: Sequence[float] | np.ndarray) -> np.ndarray:
    """ndarray of shape (..., 3): the angles RELION needs for the same pose as contract angles.

    RELION builds ``A = Euler_angles2matrix(rot, tilt, psi)``, which is ``R.T`` of scipy's
    intrinsic ZYZ matrix of the same numbers, and its projector samples the reference at
    ``A^-1 k`` for every point ``k`` of the particle: ``A`` maps reference to particle. The
    contract's ``R`` maps reference to tomogram too, so the same pose has ``A == R``, i.e.
    RELION's angles are the contract angles of ``R^-1``: ``(-psi, -tilt, -rot)`` up to
    equivalent triples. The map is its own inverse (use it both ways).
    """
    e = _euler_array(euler_zyz_deg)
    inverse = rotation_from_euler(e).inv()
    return inverse.as_euler("ZYZ", degrees=True).reshape(e.shape)
