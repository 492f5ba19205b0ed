"""Orientation grids on SO(3): a uniform global grid and local grids around given orientations.

Global grid: a *super-Fibonacci spiral* (Alexa, "Super-Fibonacci Spirals: Fast, Low-Discrepancy
Sampling of SO(3)", CVPR 2022). Sample ``i = 0 .. N-1`` is the unit quaternion

    s = i + 1/2,  r = sqrt(s/N),  R = sqrt(1 - s/N),
    alpha = 2 pi s / sqrt(2),  beta = 2 pi s / psi   (psi^4 = psi + 4, psi = 1.5337...)
    q = (r sin alpha, r cos alpha, R sin beta, R cos beta)

a low-discrepancy set for the Haar measure, any ``N``, no polar clustering (unlike Euler-angle
grids) and no tables (unlike HEALPix-based grids).

Angular step. ``step_deg(N) = (8 pi^2 / N)^(1/3)`` in degrees: the side of a cube with each
point's share of SO(3)'s volume ``8 pi^2`` (rad^3). Measured on this grid (20 000 random
rotations, ``tests/geometry/test_so3_grid.py``): the covering radius (the farthest any rotation
lies from its nearest grid point) is ``0.84-0.9 x step`` and the median distance ``~0.5 x step``.
``grid_for_step(15)`` holds 4 401 orientations, ``grid_for_step(20)`` 1 857.

Local grid: rotation vectors on a cubic lattice of side ``step`` inside a ball of ``radius``
(so the same step definition: covering radius ``sqrt(3)/2 x step = 0.87 x step``), composed on
the right of each centre, ``R = R_centre @ exp([w]_x)``: a perturbation in the reference frame.

Orientations are returned as ``(n, 3, 3)`` matrices acting on ``(x, y, z)`` (the contract's
``R``, reference -> tomogram); :func:`cryoflow.geometry.rotation.euler_from_matrix_xyz` turns them
into ``(rot, tilt, psi)``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from cryoflow.errors import GeometryError

#: the positive root of psi^4 = psi + 4 (Alexa 2022)
_PSI = 1.533751168755204288118041
#: the Haar volume of SO(3) in rad^3 used by the step definition
_SO3_VOLUME = 8.0 * np.pi**2


def super_fibonacci_quaternions(n: int) -> np.ndarray:
    """ndarray of shape (n, 4): ``n`` unit quaternions ``(x, y, z, w)``, the spiral above."""
    if int(n) < 1:
        raise GeometryError(f"an orientation grid needs n >= 1 points, got {n}")
    s = np.arange(int(n), dtype=float) + 0.5
    t = s / int(n)
    r, big_r = np.sqrt(t), np.sqrt(1.0 - t)
    alpha = 2.0 * np.pi * s / np.sqrt(2.0)
    beta = 2.0 * np.pi * s / _PSI
    return np.stack(
        [r * np.sin(alpha), r * np.cos(alpha), big_r * np.sin(beta), big_r * np.cos(beta)], axis=1
    )


def step_deg(n: int) -> float:
    """The angular step (degrees) of an ``n``-point global grid: ``(8 pi^2 / n)^(1/3)``."""
    if int(n) < 1:
        raise GeometryError(f"an orientation grid needs n >= 1 points, got {n}")
    return float(np.degrees((_SO3_VOLUME / int(n)) ** (1.0 / 3.0)))


def n_for_step(step: float) -> int:
    """The number of grid points whose :func:`step_deg` is at most ``step`` degrees."""
    if not (np.isfinite(step) and 0.0 < step <= 180.0):
        raise GeometryError(f"an angular step must lie in (0, 180] degrees, got {step!r}")
    return max(1, int(np.ceil(_SO3_VOLUME / np.radians(step) ** 3)))


def grid_for_step(step: float) -> np.ndarray:
    """ndarray of shape (N, 3, 3): a uniform global grid with angular step ``<= step`` degrees."""
    q = super_fibonacci_quaternions(n_for_step(step))
    return Rotation.from_quat(q).as_matrix()


def local_offsets(step: float, radius: float) -> np.ndarray:
    """ndarray of shape (L, 3, 3): small rotations on a cubic lattice of rotation vectors.

    Lattice side ``step`` degrees, every point within ``radius`` degrees of the identity (the
    identity first). ``L`` is about ``4/3 pi (radius/step)^3``.
    """
    if not (np.isfinite(step) and step > 0 and np.isfinite(radius) and radius >= 0):
        raise GeometryError(
            f"a local grid needs step > 0 and radius >= 0 degrees, got step={step!r}, "
            f"radius={radius!r}"
        )
    m = int(np.floor(radius / step + 1e-9))
    ax = np.arange(-m, m + 1, dtype=float) * step
    w = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), axis=-1).reshape(-1, 3)
    w = w[np.linalg.norm(w, axis=1) <= radius + 1e-9]
    w = w[np.argsort(np.linalg.norm(w, axis=1), kind="stable")]  # identity first
    return Rotation.from_rotvec(np.radians(w)).as_matrix()


def local_grid(centres_xyz: np.ndarray, step: float, radius: float) -> np.ndarray:
    """ndarray of shape (n, L, 3, 3): ``R_centre @ offset`` for every centre and local offset.

    Parameters
    ----------
    centres_xyz : ndarray of shape (n, 3, 3)
        Orientations (reference -> tomogram, acting on ``(x, y, z)``) to refine around.
    step, radius : float
        Lattice side and ball radius in degrees (see :func:`local_offsets`).
    """
    c = np.asarray(centres_xyz, dtype=float)
    if c.ndim != 3 or c.shape[1:] != (3, 3):
        raise GeometryError(f"centres must have shape (n, 3, 3), got {c.shape}")
    off = local_offsets(step, radius)
    return np.einsum("nij,ljk->nlik", c, off)
