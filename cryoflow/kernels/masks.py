"""Soft real-space masks for subtomogram averaging: spherical, and automatic from a map.

Every mask is float32 in ``[0, 1]`` of shape ``(B, B, B)`` with its centre at voxel ``B // 2``.
Soft edges are raised-cosine falloffs, ``0.5 (1 + cos(pi d / edge))`` at distance ``d`` voxels
outside the hard region, so masking adds no sharp edge (no ringing in Fourier space).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cryoflow.errors import GeometryError
from cryoflow.kernels._guards import refuse_lazy


def _cosine_edge(distance: np.ndarray, edge_px: float) -> np.ndarray:
    if edge_px <= 0:
        return (distance <= 0).astype(np.float32)
    d = np.clip(distance / edge_px, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * d))).astype(np.float32)


def spherical_mask(box: int, radius_px: float, edge_px: float = 3.0) -> np.ndarray:
    """ndarray of shape (B, B, B): 1 within ``radius_px`` of the centre, cosine edge beyond."""
    if int(box) < 2 or not radius_px > 0 or edge_px < 0:
        raise GeometryError(
            f"spherical mask needs box >= 2, radius > 0 and edge >= 0 voxels, got box={box}, "
            f"radius={radius_px}, edge={edge_px}"
        )
    c = np.arange(int(box), dtype=np.float64) - int(box) // 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    return _cosine_edge(r - float(radius_px), float(edge_px))


def auto_mask(
    volume: np.ndarray,
    *,
    threshold: float = 0.25,
    dilate_px: float = 2.0,
    edge_px: float = 3.0,
    lowpass_sigma_px: float = 1.0,
) -> np.ndarray:
    """ndarray of shape (B, B, B): a soft mask around the density of a map.

    Steps: (1) smooth the map with a Gaussian of ``lowpass_sigma_px``; (2) keep voxels above
    ``threshold`` times its maximum; (3) keep the connected component holding the maximum;
    (4) grow it by ``dilate_px``; (5) add a cosine edge of ``edge_px``; (6) confine it to the
    sphere inscribed in the box (minus the edge), so a noisy map cannot leak to the corners.
    An empty map gives the inscribed sphere.
    """
    refuse_lazy(volume, "auto_mask")
    v = np.asarray(volume, dtype=np.float32)
    if v.ndim != 3 or len(set(v.shape)) != 1:
        raise GeometryError(f"auto_mask expects a cubic (B, B, B) map, got shape {v.shape}")
    box = v.shape[0]
    outer = spherical_mask(box, max(box / 2.0 - edge_px - 1.0, 1.0), edge_px)
    s = ndimage.gaussian_filter(v, lowpass_sigma_px) if lowpass_sigma_px > 0 else v
    s = s * (outer > 0.5)
    peak = float(s.max())
    if not peak > 0:
        return outer
    hard = s > threshold * peak
    labels, _ = ndimage.label(hard)
    hard = labels == labels[np.unravel_index(np.argmax(s), s.shape)]
    dist = ndimage.distance_transform_edt(~hard)
    return np.minimum(_cosine_edge(dist - float(dilate_px), float(edge_px)), outer)


def mask_radius_px(mask: np.ndarray, level: float = 0.5) -> float:
    """The largest distance (voxels) from the box centre of a voxel where ``mask > level``."""
    m = np.asarray(mask)
    box = m.shape[0]
    c = np.arange(box, dtype=np.float64) - box // 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    inside = m > level
    return float(r[inside].max()) if inside.any() else 0.0
