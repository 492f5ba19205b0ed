"""Real-space signs of the missing wedge: elongation along z, membranes facing the beam.

Both take eager ``(Z, Y, X)`` volumes (dense matter positive) and refuse Dask input.

- :func:`z_elongation`: for each object (centre, radius), the full width at half maximum of
  its profile along ``z`` over that along ``x`` (through the centre, averaged over a 3x3
  neighbourhood, after a Gaussian of ``sigma_px``; the baseline is the median of the box
  around it). A sphere gives 1; a tilt range of +-60 degrees stretches it about 1.5x along z.
- :func:`membrane_normals`: the unit normal of a membrane mask at each of its voxels (the
  principal axis of the smoothed mask's structure tensor).
- :func:`membrane_contrast`: the mean of a volume on membrane voxels minus its mean in a thin
  shell just off the membrane, for membranes whose normal lies within ``beam_angle_deg`` of the
  beam (``z``: erased by the wedge) and for those whose normal lies within that angle of the
  ``xy`` plane (well measured).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from cryoflow.errors import GeometryError
from cryoflow.kernels._guards import eager_volume, refuse_lazy


def _fwhm(profile: np.ndarray, centre: int, half: float) -> float:
    """Width (voxels) between the first crossings of ``half`` on either side of ``centre``."""
    width = 0.0
    for step in (-1, 1):
        i = centre
        while 0 <= i + step < len(profile) and profile[i + step] > half:
            i += step
        if not 0 <= i + step < len(profile):
            return float("nan")  # never fell to half: the object fills the box
        a, b = float(profile[i]), float(profile[i + step])
        width += abs(i - centre) + ((a - half) / (a - b) if a > b else 0.0)
    return width


def z_elongation(
    volume: np.ndarray,
    centres_zyx: np.ndarray,
    radii_px: Sequence[float] | np.ndarray,
    *,
    sigma_px: float = 1.0,
) -> np.ndarray:
    """ndarray of shape (n,): FWHM along z over FWHM along x of each object (nan if unmeasurable).

    Parameters
    ----------
    volume : ndarray of shape (Z, Y, X)
    centres_zyx : ndarray of shape (n, 3), voxels
    radii_px : ndarray of shape (n,), each object's radius (sets the profile length, 3 r + 2)
    """
    v = eager_volume(volume, "z_elongation")
    g = ndimage.gaussian_filter(v, sigma_px) if sigma_px > 0 else v
    centres = np.rint(np.asarray(centres_zyx, dtype=float)).astype(int).reshape(-1, 3)
    radii = np.broadcast_to(np.asarray(radii_px, dtype=float), (len(centres),))
    out = np.full(len(centres), np.nan)
    for n, (c, r) in enumerate(zip(centres, radii, strict=True)):
        h = int(np.ceil(3 * r)) + 2
        lo = np.maximum(c - h, 0)
        hi = np.minimum(c + h + 1, v.shape)
        if np.any(c < 1) or np.any(c >= np.asarray(v.shape) - 1):
            continue
        box = g[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        base = float(np.median(box))
        y0, y1, x0, x1 = c[1] - 1, c[1] + 2, c[2] - 1, c[2] + 2
        pz = g[lo[0] : hi[0], y0:y1, x0:x1].mean(axis=(1, 2))
        px = g[c[0] - 1 : c[0] + 2, y0:y1, lo[2] : hi[2]].mean(axis=(0, 1))
        peak_z, peak_x = pz[c[0] - lo[0]], px[c[2] - lo[2]]
        peak = 0.5 * (peak_z + peak_x)
        if not peak > base:
            continue
        half = base + 0.5 * (peak - base)
        wz, wx = _fwhm(pz, c[0] - lo[0], half), _fwhm(px, c[2] - lo[2], half)
        if wx > 0:
            out[n] = wz / wx
    return out


def membrane_normals(mask: np.ndarray, *, sigma_px: float = 1.5) -> np.ndarray:
    """ndarray of shape (n, 3): unit normals ``(nz, ny, nx)`` at the mask's voxels (C order)."""
    refuse_lazy(mask, "membrane_normals")
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 3:
        raise GeometryError(f"membrane_normals expects a (Z, Y, X) mask, got shape {m.shape}")
    s = ndimage.gaussian_filter(m.astype(np.float32), sigma_px)
    grads = np.gradient(s)
    tensor = np.empty((int(m.sum()), 3, 3), dtype=np.float64)
    for i in range(3):
        for j in range(i, 3):
            t = ndimage.gaussian_filter(grads[i] * grads[j], 2 * sigma_px)[m]
            tensor[:, i, j] = t
            tensor[:, j, i] = t
    _, vecs = np.linalg.eigh(tensor)
    return vecs[:, :, -1]  # eigenvector of the largest eigenvalue: across the membrane


def membrane_contrast(
    volume: np.ndarray,
    mask: np.ndarray,
    *,
    beam_angle_deg: float = 30.0,
    shell_px: tuple[int, int] = (2, 4),
) -> dict[str, float]:
    """Membrane contrast by orientation: ``{"facing_beam": c, "side_on": c, "n_facing": n, ...}``.

    ``facing_beam``: membrane voxels whose normal is within ``beam_angle_deg`` of ``z``;
    ``side_on``: within that angle of the ``xy`` plane. The contrast of a group is the mean of
    ``volume`` on it minus the mean on voxels ``shell_px[0]..shell_px[1]`` voxels off the
    membrane and nearest to that group.
    """
    v = eager_volume(volume, "membrane_contrast")
    m = np.asarray(mask, dtype=bool)
    if m.shape != v.shape:
        raise GeometryError(f"mask shape {m.shape} differs from the volume's {v.shape}")
    normals = membrane_normals(m)
    angle_from_z = np.degrees(np.arccos(np.clip(np.abs(normals[:, 0]), 0.0, 1.0)))
    groups = {
        "facing_beam": angle_from_z <= beam_angle_deg,
        "side_on": angle_from_z >= 90.0 - beam_angle_deg,
    }
    # the shell: near the membrane but off it; each shell voxel belongs to its nearest membrane voxel
    dist, (iz, iy, ix) = ndimage.distance_transform_edt(~m, return_indices=True)
    shell = (dist >= shell_px[0]) & (dist <= shell_px[1])
    label = np.full(v.shape, -1, dtype=np.int64)
    label[m] = np.arange(int(m.sum()))
    owner = label[iz[shell], iy[shell], ix[shell]]
    out: dict[str, float] = {}
    for name, sel in groups.items():
        on = v[m][sel]
        off = v[shell][sel[owner]]
        out[name] = float(on.mean() - off.mean()) if on.size and off.size else float("nan")
        out[f"n_{name}"] = float(on.size)
    return out
