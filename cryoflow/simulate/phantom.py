"""Cellular phantoms: membranes, vesicles, mitochondria with granules, filaments, particles.

:func:`make_phantom` builds one phantom of shape ``(Z, Y, X)`` from a seeded generator. Objects
never overlap: each is placed where nothing else is, so the label volume is exact and the
particle table re-renders to exactly the particle labels (see :func:`render_particle`).

Density is mass per voxel (higher = more scattering); projected images are sums of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from cryoflow.errors import ConfigError
from cryoflow.simulate import classes as C
from cryoflow.simulate.cell import CellModel
from cryoflow.simulate.particles import (
    CONFORMATIONS,
    random_rotation,
    render,
    rotation_zyx_from_euler,
    template,
)
from cryoflow.simulate.shapes import ball, ellipsoid, ellipsoid_shell, paint, tube

# density of each material (mass per voxel, arbitrary units)
DENSITY_OUTSIDE = 0.05
DENSITY_CYTOSOL = 0.15
DENSITY_MATRIX = 0.3
DENSITY_MEMBRANE = 1.0
DENSITY_PROTEIN = 1.0
DENSITY_GRANULE = 2.5  # the default cell model's; see cryoflow.simulate.cell for the units

#: target fraction of free cytosol filled by each particle class
PARTICLE_FRACTION = {"ribosome": 0.05, "rubisco": 0.03}

PARTICLE_COLUMNS = [
    "x",
    "y",
    "z",
    "class",
    "class_id",
    "conformation",
    "rot",
    "tilt",
    "psi",
    "radius_px",
]
BOX_COLUMNS = ["z0", "y0", "x0", "z1", "y1", "x1"]


@dataclass(frozen=True)
class Phantom:
    """One cellular phantom with its ground truth.

    Attributes
    ----------
    density : ndarray of float32, shape (Z, Y, X)
    labels : ndarray of uint8, shape (Z, Y, X)
        Class ids from :mod:`cryoflow.simulate.classes`.
    particles : pandas.DataFrame
        One row per particle: ``x, y, z`` (voxels), ``class`` (name), ``class_id``,
        ``conformation``, ``rot, tilt, psi`` (ZYZ degrees, see :mod:`~.particles`),
        ``radius_px`` (bounding radius).
    mito_boxes : pandas.DataFrame
        One row per mitochondrion: half-open voxel box ``z0, y0, x0, z1, y1, x1`` of its
        outer membrane.
    """

    density: np.ndarray
    labels: np.ndarray
    particles: pd.DataFrame
    mito_boxes: pd.DataFrame


def _in_plane_rotation(angle_rad: float) -> np.ndarray:
    """ndarray of shape (3, 3): rotation about z, acting on ``(z, y, x)`` vectors."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])


class _Builder:
    """Mutable state while one phantom is assembled (private to :func:`make_phantom`)."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        pixel_size_angstrom: float,
        rng: np.random.Generator,
        cell: CellModel,
    ) -> None:
        self.shape = shape
        self.px = pixel_size_angstrom
        self.rng = rng
        self.cell = cell
        self.density = np.full(shape, DENSITY_CYTOSOL, dtype=np.float32)
        self.labels = np.zeros(shape, dtype=np.uint8)
        self.occupied = np.zeros(shape, dtype=bool)  # no new object may enter
        self.side = float(min(shape[1], shape[2]))
        self.membrane_px = max(1.5, 40.0 / self.px)
        self.mito_boxes: list[list[int]] = []
        self.particles: list[dict[str, object]] = []

    def free(self, slices: tuple[slice, ...], mask: np.ndarray) -> bool:
        return bool(mask.any()) and not bool((self.occupied[slices] & mask).any())

    # 1. a plasma membrane: a section of a large sphere; beyond it is outside the cell
    def plasma_membrane(self) -> None:
        Z, Y, X = self.shape
        radius = 3.0 * self.side
        phi = self.rng.uniform(0, 2 * np.pi)
        reach = radius + 0.35 * self.side
        center = ((Z - 1) / 2, (Y - 1) / 2 + reach * np.sin(phi), (X - 1) / 2 + reach * np.cos(phi))
        whole = (slice(0, Z), slice(0, Y), slice(0, X))
        # float32 open grids: the whole volume is evaluated once
        zz, yy, xx = (
            (np.arange(n, dtype=np.float32) - np.float32(c)).reshape(view) ** 2
            for n, c, view in zip(
                self.shape, center, ((-1, 1, 1), (1, -1, 1), (1, 1, -1)), strict=True
            )
        )
        dist = np.sqrt(zz + yy + xx) - np.float32(radius)
        shell = np.abs(dist) <= self.membrane_px / 2
        outside = dist < -self.membrane_px / 2
        self.density[outside] = DENSITY_OUTSIDE
        paint(self.density, whole, shell, DENSITY_MEMBRANE)
        paint(self.labels, whole, shell, C.MEMBRANE)
        self.occupied |= ndimage.binary_dilation(shell | outside, iterations=2)

    # 2. mitochondria: double membrane, matrix, cristae, dense granules
    def mitochondria(self, with_granules: bool) -> None:
        Z, Y, X = self.shape
        # default: about a quarter of the section's area (one per square section)
        n = self.cell.mito_count or max(1, int(0.25 * Y * X / (0.159 * self.side**2)))
        gap = self.membrane_px + max(1.0, 60.0 / self.px)  # outer-to-inner membrane spacing
        for _ in range(n):
            for _attempt in range(40):
                center, radii, rot = self._mito_placement()
                # every 4th voxel first: a subset of the full test's voxels, so a clash there
                # is a clash of the full test (same outcome, a fraction of the cost)
                sl, coarse = ellipsoid(self.shape, center, radii, rotation=rot, grow=2, stride=4)
                if (self.occupied[sl][::4, ::4, ::4] & coarse).any():
                    continue
                sl, solid = ellipsoid(self.shape, center, radii, rotation=rot, grow=2)
                if self.free(sl, solid):
                    break
            else:
                continue
            self._one_mitochondrion(center, radii, rot, gap, with_granules)
            self.occupied[sl] |= solid

    def _mito_placement(
        self,
    ) -> tuple[tuple[float, float, float], tuple[float, float, float], np.ndarray]:
        """One try at a mitochondrion: centre, semi-axes ``(rz, ry, rx)``, rotation."""
        Z, Y, X = self.shape
        cell = self.cell
        if cell.mito_radius_angstrom is None:  # the default rule (its draws, in its order)
            rz = min(0.38 * Z, Z / 2 - 2.5)
            ry = self.rng.uniform(0.16, 0.22) * self.side
        else:
            ry = self.rng.uniform(*cell.mito_radius_angstrom) / self.px
            rz = min(ry, 0.38 * Z, Z / 2 - 2.5)
        rx = ry * self.rng.uniform(*cell.mito_elongation)
        rot = _in_plane_rotation(self.rng.uniform(0, np.pi))
        margin = rx + 2
        cz = (Z - 1) / 2 + self.rng.uniform(-0.5, 0.5)
        if cell.mito_radius_angstrom is not None and Z > 2 * rz + 5:
            cz = self.rng.uniform(rz + 2, Z - 3 - rz)
        center = (
            cz,
            self.rng.uniform(ry + 2, Y - 3 - ry) if Y > 2 * ry + 5 else (Y - 1) / 2,
            self.rng.uniform(min(margin, X / 2), max(X - 1 - margin, X / 2)),
        )
        return center, (rz, ry, rx), rot

    def _one_mitochondrion(
        self,
        center: Sequence[float],
        radii: tuple[float, float, float],
        rot: np.ndarray,
        gap: float,
        with_granules: bool,
    ) -> None:
        t = self.membrane_px
        inner_radii = tuple(r - gap for r in radii)
        sl, solid = ellipsoid(self.shape, center, inner_radii, rotation=rot, grow=-t / 2 - 0.5)
        paint(self.density, sl, solid, DENSITY_MATRIX)
        matrix = np.zeros(self.shape, dtype=bool)
        matrix[sl] = solid
        if with_granules:
            self._granules(center, inner_radii, rot, matrix)
        # cristae: thin disks across the short axes, cut to the matrix
        n_cristae = self.rng.integers(1, 4)
        for k in range(n_cristae):
            offset = (k + 1) / (n_cristae + 1) * 2 - 1
            body = np.array([0.0, 0.0, offset * 0.7 * inner_radii[2]])
            c = np.asarray(center) + rot @ body
            disk = (0.7 * inner_radii[0], 0.7 * inner_radii[1], t / 2 + 0.25)
            csl, cmask = ellipsoid(self.shape, c, disk, rotation=rot)
            cmask &= matrix[csl]
            paint(self.density, csl, cmask, DENSITY_MEMBRANE)
            paint(self.labels, csl, cmask, C.MITO_MEMBRANE)
            matrix[csl] &= ~ndimage.binary_dilation(cmask, iterations=1)
        for r in (radii, inner_radii):
            ssl, shell = ellipsoid_shell(self.shape, center, r, t, rotation=rot)
            paint(self.density, ssl, shell, DENSITY_MEMBRANE)
            paint(self.labels, ssl, shell, C.MITO_MEMBRANE)
        osl, outer = ellipsoid(self.shape, center, radii, rotation=rot, grow=t / 2)
        idx = np.nonzero(outer)
        lo = [int(i.min()) + s.start for i, s in zip(idx, osl, strict=True)]
        hi = [int(i.max()) + 1 + s.start for i, s in zip(idx, osl, strict=True)]
        self.mito_boxes.append(lo + hi)

    def _granules(
        self,
        center: Sequence[float],
        inner_radii: Sequence[float],
        rot: np.ndarray,
        matrix: np.ndarray,
    ) -> None:
        n = int(self.rng.integers(*self.cell.granules_per_mito))
        if self.cell.granule_radius_angstrom is None:  # the default rule
            r_range = (max(1.5, 0.025 * self.side), max(2.5, 0.05 * self.side))
        else:
            lo, hi = self.cell.granule_radius_angstrom
            r_range = (max(1.5, lo / self.px), max(1.5, hi / self.px))
        placed = 0
        for _ in range(20 * n):
            if placed == n:
                break
            r = self.rng.uniform(*r_range)
            u = self.rng.normal(size=3)
            u *= self.rng.uniform() ** (1 / 3) / np.linalg.norm(u)
            body = u * np.maximum(np.asarray(inner_radii) - r - 1, 0.0)
            c = np.asarray(center) + rot @ body
            gsl, g = ball(self.shape, c, r)
            if g.any() and not (g & ~matrix[gsl]).any():
                paint(self.density, gsl, g, self.cell.granule_density)
                paint(self.labels, gsl, g, C.GRANULE)
                matrix[gsl] &= ~ndimage.binary_dilation(g, iterations=1)
                placed += 1

    # 3. vesicles: single-membrane ellipsoids
    def vesicles(self) -> None:
        Z, Y, X = self.shape
        r_lo, r_hi = max(3.0, 0.06 * self.side), max(5.0, 0.14 * self.side)
        n = max(1, int(round(0.12 * Y * X / (np.pi * ((r_lo + r_hi) / 2) ** 2))))
        for _ in range(n):
            for _attempt in range(30):
                r = self.rng.uniform(r_lo, r_hi)
                radii = tuple(min(r * f, Z / 2 - 2.0) for f in self.rng.uniform(0.85, 1.15, 3))
                center = tuple(self.rng.uniform(-0.5, s - 0.5) for s in self.shape)
                sl, solid = ellipsoid(self.shape, center, radii, grow=self.membrane_px / 2 + 1)
                if self.free(sl, solid):
                    ssl, shell = ellipsoid_shell(self.shape, center, radii, self.membrane_px)
                    paint(self.density, ssl, shell, DENSITY_MEMBRANE)
                    paint(self.labels, ssl, shell, C.MEMBRANE)
                    self.occupied[sl] |= solid
                    break

    # 4. filaments: smooth random walks, stopped by anything already placed
    def filaments(self) -> None:
        Z, Y, X = self.shape
        radius = max(1.2, 35.0 / self.px)
        n = max(2, int(round(3 * self.side / 64)))
        step = self.side / 6
        for _ in range(n):
            p = np.array(
                [
                    self.rng.uniform(radius + 1, Z - 2 - radius),
                    self.rng.uniform(0, Y - 1),
                    self.rng.uniform(0, X - 1),
                ]
            )
            phi, elev = self.rng.uniform(0, 2 * np.pi), self.rng.normal(0, 0.1)
            pts = [p]
            for _k in range(8):
                phi += self.rng.normal(0, 0.25)
                elev = float(np.clip(elev + self.rng.normal(0, 0.05), -0.3, 0.3))
                d = np.array([np.sin(elev), np.cos(elev) * np.sin(phi), np.cos(elev) * np.cos(phi)])
                q = pts[-1] + step * d
                if not radius + 1 <= q[0] <= Z - 2 - radius:
                    elev = -elev
                    q[0] = np.clip(q[0], radius + 1, Z - 2 - radius)
                pts.append(q)
            grown = []
            for sl, m in tube(self.shape, np.array(pts), radius):
                m = m & ~self.occupied[sl] & (self.labels[sl] == 0)
                paint(self.density, sl, m, DENSITY_PROTEIN)
                paint(self.labels, sl, m, C.FILAMENT)
                grown.append((sl, m))
            for sl, m in grown:
                self.occupied[sl] |= ndimage.binary_dilation(m, iterations=1)

    # 5. macromolecules, randomly placed and oriented
    def particles_of(self, name: str) -> None:
        class_id = C.CLASS_IDS[name]
        ref = template(name, 0)
        radius_px = ref.radius_angstrom / self.px
        _, ref_mask = render(ref, self.shape, np.asarray(self.shape) / 2, self.px, np.eye(3))
        free_voxels = float((~self.occupied).sum())
        n = int(round(PARTICLE_FRACTION[name] * free_voxels / max(int(ref_mask.sum()), 1)))
        n = max(n, 2)
        lo = np.minimum(np.full(3, 0.5 * radius_px), (np.asarray(self.shape) - 1) / 2)
        hi = np.asarray(self.shape) - 1 - lo
        placed = 0
        for _ in range(30 * n):
            if placed == n:
                break
            center = np.rint(self.rng.uniform(lo, hi))
            conformation = int(self.rng.integers(CONFORMATIONS[name]))
            rot_zyx, euler = random_rotation(self.rng)
            if self.occupied[tuple(center.astype(int))]:
                continue
            tmpl = template(name, conformation)
            sl, m = render(tmpl, self.shape, center, self.px, rot_zyx)
            if not self.free(sl, m):
                continue
            paint(self.density, sl, m, DENSITY_PROTEIN)
            paint(self.labels, sl, m, class_id)
            self.occupied[sl] |= ndimage.binary_dilation(m, iterations=1)
            self.particles.append(
                {
                    "x": float(center[2]),
                    "y": float(center[1]),
                    "z": float(center[0]),
                    "class": name,
                    "class_id": class_id,
                    "conformation": conformation,
                    "rot": euler[0],
                    "tilt": euler[1],
                    "psi": euler[2],
                    "radius_px": radius_px,
                }
            )
            placed += 1


def make_phantom(
    shape: Sequence[int],
    pixel_size_angstrom: float,
    classes: Sequence[str],
    rng: np.random.Generator,
    cell: CellModel | None = None,
) -> Phantom:
    """Assemble one cellular phantom.

    Parameters
    ----------
    shape : (Z, Y, X)
        Volume shape in voxels (each at least 8).
    pixel_size_angstrom : float
        Voxel size; particle templates and membrane thickness are physical sizes.
    classes : sequence of str
        Foreground classes to include (see :func:`cryoflow.simulate.classes.parse_classes`).
    rng : numpy.random.Generator
        The only source of randomness.
    cell : CellModel, optional
        Mitochondria and granules (:mod:`cryoflow.simulate.cell`; default: the default model).

    Returns
    -------
    Phantom
        ``density`` and ``labels`` of shape ``(Z, Y, X)``, particle table and mitochondria boxes.
    """
    shp = tuple(int(s) for s in shape)
    if len(shp) != 3 or min(shp) < 8:
        raise ConfigError(
            f"phantom shape must be (Z, Y, X) with every size >= 8, got {tuple(shape)}"
        )
    if not pixel_size_angstrom > 0:
        raise ConfigError(f"pixel_size_angstrom must be > 0, got {pixel_size_angstrom}")
    wanted = C.parse_classes(classes)
    b = _Builder((shp[0], shp[1], shp[2]), float(pixel_size_angstrom), rng, cell or CellModel())
    if "membrane" in wanted:
        b.plasma_membrane()
    if "mito_membrane" in wanted:
        b.mitochondria(with_granules="granule" in wanted)
    if "filament" in wanted:
        b.filaments()
    if "membrane" in wanted:
        b.vesicles()
    for name in C.PARTICLE_CLASSES:
        if name in wanted:
            b.particles_of(name)
    particles = pd.DataFrame(b.particles, columns=PARTICLE_COLUMNS).astype(
        {"class_id": "int64", "conformation": "int64"}
    )
    boxes = pd.DataFrame(b.mito_boxes, columns=BOX_COLUMNS, dtype="int64")
    return Phantom(b.density, b.labels, particles, boxes)


def render_particle(
    row: pd.Series | dict, shape: Sequence[int], pixel_size_angstrom: float
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Re-render one particle-table row: ``(slices, mask)`` in a ``(Z, Y, X)`` volume."""
    tmpl = template(str(row["class"]), int(row["conformation"]))
    rot = rotation_zyx_from_euler([row["rot"], row["tilt"], row["psi"]])
    return render(tmpl, shape, (row["z"], row["y"], row["x"]), pixel_size_angstrom, rot)
