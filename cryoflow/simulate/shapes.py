"""Voxel shapes for cellular phantoms: ellipsoid shells and solids, balls, tubes (filaments).

Every shape is evaluated only inside its bounding box. A shape function returns
``(slices, mask)``: ``slices`` (z, y, x) select the box in a volume of shape ``(Z, Y, X)`` and
``mask`` is a boolean array of the box's shape. An empty box gives ``mask.size == 0``.
Coordinates are voxel indices ``(z, y, x)`` (floats allowed); rotations are 3x3 matrices acting
on ``(z, y, x)`` column vectors (``p_volume = R @ p_body``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Slices = tuple[slice, slice, slice]
Coords = tuple[np.ndarray, np.ndarray, np.ndarray]


def box_coords(
    shape: Sequence[int], center: Sequence[float] | np.ndarray, half_extent: float | Sequence[float]
) -> tuple[Slices, Coords]:
    """The voxel box around ``center`` and its coordinates relative to ``center``.

    Parameters
    ----------
    shape : (Z, Y, X)
        Volume shape.
    center : (zc, yc, xc)
        Box centre in voxels.
    half_extent : float or (hz, hy, hx)
        Half size of the box in voxels.

    Returns
    -------
    slices : tuple of 3 slices
        The box, clipped to the volume.
    coords : tuple of 3 ndarrays
        Open grids of shapes ``(bz, 1, 1)``, ``(1, by, 1)``, ``(1, 1, bx)``: voxel position
        minus ``center``.
    """
    half = np.broadcast_to(np.asarray(half_extent, dtype=float), (3,))
    slices = []
    coords = []
    for axis in range(3):
        lo = int(np.clip(np.floor(center[axis] - half[axis]), 0, shape[axis]))
        hi = int(np.clip(np.ceil(center[axis] + half[axis]) + 1, lo, shape[axis]))
        slices.append(slice(lo, hi))
        c = np.arange(lo, hi, dtype=np.float64) - float(center[axis])
        view = [1, 1, 1]
        view[axis] = hi - lo
        coords.append(c.reshape(view))
    return (slices[0], slices[1], slices[2]), (coords[0], coords[1], coords[2])


def _body_coords(coords: Coords, rotation: np.ndarray | None) -> Coords:
    """Volume-frame offsets -> body-frame offsets ``R^T p`` (full 3D arrays when rotated)."""
    if rotation is None:
        return coords
    r = np.asarray(rotation, dtype=float)
    dz, dy, dx = coords
    return (
        r[0, 0] * dz + r[1, 0] * dy + r[2, 0] * dx,
        r[0, 1] * dz + r[1, 1] * dy + r[2, 1] * dx,
        r[0, 2] * dz + r[1, 2] * dy + r[2, 2] * dx,
    )


def ellipsoid_distance(coords: Coords, radii: Sequence[float]) -> np.ndarray:
    """Approximate signed distance (voxels) to an axis-aligned ellipsoid surface.

    First-order estimate ``(rho - 1) / |grad rho|`` with ``rho`` the normalised radius; exact
    for spheres, negative inside.

    Parameters
    ----------
    coords : 3 arrays broadcasting to shape S
        Body-frame offsets ``(dz, dy, dx)`` from the centre.
    radii : (rz, ry, rx)
        Semi-axes in voxels.

    Returns
    -------
    ndarray of shape S
    """
    rz, ry, rx = (float(r) for r in radii)
    dz, dy, dx = coords
    rho2 = (dz / rz) ** 2 + (dy / ry) ** 2 + (dx / rx) ** 2
    g = np.sqrt((dz / rz**2) ** 2 + (dy / ry**2) ** 2 + (dx / rx**2) ** 2)
    rho = np.sqrt(rho2)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(g > 0, (rho - 1.0) * rho / np.where(g > 0, g, 1.0), -min(rz, ry, rx))
    return d


def ellipsoid(
    shape: Sequence[int],
    center: Sequence[float] | np.ndarray,
    radii: Sequence[float],
    *,
    rotation: np.ndarray | None = None,
    grow: float = 0.0,
    stride: int = 1,
) -> tuple[Slices, np.ndarray]:
    """Solid ellipsoid (optionally grown by ``grow`` voxels): ``(slices, mask)``.

    ``stride > 1`` evaluates only every ``stride``-th voxel of the box on each axis: the mask
    is ``full_mask[::stride, ::stride, ::stride]`` exactly (for a cheap overlap test against
    ``volume[slices][::stride, ::stride, ::stride]``)."""
    reach = max(radii) + grow + 1
    slices, coords = box_coords(shape, center, reach)
    k = int(stride)
    sub = (coords[0][::k], coords[1][:, ::k], coords[2][:, :, ::k])
    d = ellipsoid_distance(_body_coords(sub, rotation), radii)
    box = tuple(len(range(s.start, s.stop, k)) for s in slices)
    return slices, np.broadcast_to(d <= grow, box).copy()


def ellipsoid_shell(
    shape: Sequence[int],
    center: Sequence[float] | np.ndarray,
    radii: Sequence[float],
    thickness: float,
    *,
    rotation: np.ndarray | None = None,
) -> tuple[Slices, np.ndarray]:
    """Ellipsoidal shell (a membrane) of ``thickness`` voxels centred on the surface."""
    half = thickness / 2.0
    slices, coords = box_coords(shape, center, max(radii) + half + 1)
    d = ellipsoid_distance(_body_coords(coords, rotation), radii)
    return slices, np.broadcast_to(
        np.abs(d) <= half, tuple(s.stop - s.start for s in slices)
    ).copy()


def ball(
    shape: Sequence[int], center: Sequence[float] | np.ndarray, radius: float
) -> tuple[Slices, np.ndarray]:
    """Solid ball of ``radius`` voxels: ``(slices, mask)``."""
    slices, (dz, dy, dx) = box_coords(shape, center, radius + 1)
    return slices, (dz**2 + dy**2 + dx**2) <= radius**2


def tube(
    shape: Sequence[int], points: np.ndarray, radius: float
) -> list[tuple[Slices, np.ndarray]]:
    """A filament: voxels within ``radius`` of a polyline, one ``(slices, mask)`` per segment.

    Parameters
    ----------
    shape : (Z, Y, X)
    points : ndarray of shape (n_points, 3)
        Polyline vertices ``(z, y, x)`` in voxels, ``n_points >= 2``.
    radius : float
        Tube radius in voxels.
    """
    pts = np.asarray(points, dtype=float)
    pieces = []
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        center = (a + b) / 2
        slices, (dz, dy, dx) = box_coords(shape, center, np.abs(b - a) / 2 + radius + 1)
        if any(s.stop == s.start for s in slices):
            continue
        seg = b - a
        length2 = float(seg @ seg)
        pz, py, px = dz + (center[0] - a[0]), dy + (center[1] - a[1]), dx + (center[2] - a[2])
        t = (pz * seg[0] + py * seg[1] + px * seg[2]) / length2 if length2 > 0 else 0.0 * pz
        t = np.clip(t, 0.0, 1.0)
        dist2 = (pz - t * seg[0]) ** 2 + (py - t * seg[1]) ** 2 + (px - t * seg[2]) ** 2
        pieces.append((slices, dist2 <= radius**2))
    return pieces


def paint(
    target: np.ndarray,
    slices: Slices,
    mask: np.ndarray,
    value: float | int,
    *,
    where: np.ndarray | None = None,
) -> int:
    """Set ``target[slices][mask] = value`` (only where ``where[slices]`` is true, if given).

    Returns the number of voxels painted.
    """
    m = mask if where is None else mask & where[slices]
    target[slices][m] = value
    return int(m.sum())
