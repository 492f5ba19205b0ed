"""Procedural macromolecule templates (ribosome-like, RuBisCO-like) and random orientations.

A template is a union of ellipsoidal blobs defined in Ångström in its own body frame, so it
renders at any pixel size. The ribosome-like template has two conformations (0: classic,
1: rotated small subunit with an extra bound factor); the RuBisCO-like one has one.

Orientation convention (as RELION): ``R = Rotation.from_euler("ZYZ", [rot, tilt, psi],
degrees=True)`` maps body ``(x, y, z)`` to volume ``(x, y, z)``; recorded angles are
``rot, tilt, psi`` in degrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cryoflow.errors import ConfigError
from cryoflow.geometry.rotation import matrix_zyx_from_euler, random_euler
from cryoflow.simulate.shapes import Slices, box_coords

#: number of conformations per particle class
CONFORMATIONS: dict[str, int] = {"ribosome": 2, "rubisco": 1}


@dataclass(frozen=True)
class Blob:
    """One ellipsoidal blob: centre and semi-axes ``(z, y, x)`` in Ångström, body frame."""

    center_angstrom: tuple[float, float, float]
    radii_angstrom: tuple[float, float, float]


@dataclass(frozen=True)
class Template:
    """A particle shape: the union of its blobs."""

    name: str
    conformation: int
    blobs: tuple[Blob, ...]

    @property
    def radius_angstrom(self) -> float:
        """Radius of a ball about the body origin that holds every blob."""
        return max(
            float(np.linalg.norm(b.center_angstrom)) + max(b.radii_angstrom) for b in self.blobs
        )


def _ribosome(conformation: int) -> Template:
    large = Blob((0.0, 0.0, -30.0), (100.0, 105.0, 90.0))
    protuberance = Blob((85.0, 0.0, -45.0), (35.0, 35.0, 35.0))
    if conformation == 0:
        small = Blob((0.0, 15.0, 80.0), (80.0, 95.0, 45.0))
        return Template("ribosome", 0, (large, protuberance, small))
    # rotated state: small subunit swung along y, a factor bound at the subunit interface
    small = Blob((20.0, -25.0, 85.0), (75.0, 100.0, 45.0))
    factor = Blob((-75.0, 55.0, 55.0), (35.0, 45.0, 30.0))
    return Template("ribosome", 1, (large, protuberance, small, factor))


def _rubisco() -> Template:
    blobs = []
    for k in range(4):  # two rings of four large subunits (L8)
        a = np.deg2rad(45.0 + 90.0 * k)
        for z in (-24.0, 24.0):
            blobs.append(Blob((z, 34.0 * np.sin(a), 34.0 * np.cos(a)), (24.0, 24.0, 24.0)))
    for k in range(4):  # small subunits capping both ends (S8)
        a = np.deg2rad(90.0 * k)
        for z in (-50.0, 50.0):
            blobs.append(Blob((z, 30.0 * np.sin(a), 30.0 * np.cos(a)), (13.0, 16.0, 16.0)))
    return Template("rubisco", 0, tuple(blobs))


@lru_cache(maxsize=16)
def template(name: str, conformation: int = 0) -> Template:
    """The template of particle class ``name`` in ``conformation``.

    Raises
    ------
    ConfigError
        Unknown class, or a conformation the class does not have.
    """
    if name not in CONFORMATIONS:
        raise ConfigError(f"no particle template {name!r}; valid: {', '.join(CONFORMATIONS)}")
    if not 0 <= conformation < CONFORMATIONS[name]:
        raise ConfigError(
            f"{name} has conformations 0..{CONFORMATIONS[name] - 1}, got {conformation}"
        )
    return _ribosome(conformation) if name == "ribosome" else _rubisco()


def random_rotation(rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A uniformly random rotation.

    Returns
    -------
    matrix_zyx : ndarray of shape (3, 3)
        Acts on ``(z, y, x)`` column vectors, body -> volume.
    euler_zyz_deg : (rot, tilt, psi)
        The same rotation as intrinsic ZYZ Euler angles in degrees (see module docstring).
    """
    euler = random_euler(rng)
    return matrix_zyx_from_euler(euler), (float(euler[0]), float(euler[1]), float(euler[2]))


def rotation_zyx_from_euler(euler_zyz_deg: Sequence[float]) -> np.ndarray:
    """ndarray of shape (3, 3): the ``(z, y, x)``-vector matrix of ZYZ Euler angles (deg)."""
    return matrix_zyx_from_euler(euler_zyz_deg)


def render(
    tmpl: Template,
    shape: Sequence[int],
    center: Sequence[float] | np.ndarray,
    pixel_size_angstrom: float,
    rotation_zyx: np.ndarray,
) -> tuple[Slices, np.ndarray]:
    """Voxelise a rotated template centred at ``center`` (voxels) in a ``(Z, Y, X)`` volume.

    Returns
    -------
    slices : tuple of 3 slices
        Bounding box of the particle in the volume.
    mask : ndarray of bool, the box's shape
        Voxels whose centre lies inside any blob.
    """
    px = float(pixel_size_angstrom)
    slices, (dz, dy, dx) = box_coords(shape, center, tmpl.radius_angstrom / px + 1)
    r = np.asarray(rotation_zyx, dtype=float)
    # body-frame offsets in Ångström: R^T p
    bz = (r[0, 0] * dz + r[1, 0] * dy + r[2, 0] * dx) * px
    by = (r[0, 1] * dz + r[1, 1] * dy + r[2, 1] * dx) * px
    bx = (r[0, 2] * dz + r[1, 2] * dy + r[2, 2] * dx) * px
    mask = np.zeros(tuple(s.stop - s.start for s in slices), dtype=bool)
    for b in tmpl.blobs:
        cz, cy, cx = b.center_angstrom
        rz, ry, rx = b.radii_angstrom
        mask |= ((bz - cz) / rz) ** 2 + ((by - cy) / ry) ** 2 + ((bx - cx) / rx) ** 2 <= 1.0
    return slices, mask
