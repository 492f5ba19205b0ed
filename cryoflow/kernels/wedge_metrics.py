"""Measurements of a missing-wedge filling against a known true density (Fourier space).

All functions take eager ``(Z, Y, X)`` NumPy volumes of one shape and refuse Dask input.
Frequencies are in cycles per voxel (``numpy.fft.fftfreq``); ``k_max = 0.25`` is a quarter of
the sampling frequency (half of Nyquist).

- :func:`missing_angle_deg`: for every Fourier component, how far (degrees, in the
  ``(kx, kz)`` plane) its direction lies from the measured tilt range; 0 where measured. The
  rule is the contract's (:mod:`cryoflow.kernels.wedge`).
- :func:`fourier_cc`: the normalised cross-correlation of two volumes' transforms over a
  region of Fourier components, ``Re sum(A conj(B)) / sqrt(sum|A|^2 sum|B|^2)``.
- :func:`wedge_cc`: :func:`fourier_cc` with the truth over the unmeasured components with
  ``0 < |k| <= k_max`` (optionally only those at least ``min_angle_deg`` from the measured
  range: the deep wedge, far from any measured neighbour); 0 when the estimate's power there
  is at the level of float32 rounding (an exactly wedge-limited volume).
- :func:`neighbour_copy`: a "fake wedge": every unmeasured component replaced by the measured
  component at the same radius in the ``(kx, kz)`` plane and the same ``ky``, on the nearest
  edge of the tilt range. A filling that merely copies its measured neighbours correlates with
  this, not with the truth.
- :func:`real_space_cc`: Pearson correlation of two volumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryoflow.errors import GeometryError
from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.wedge import fourier_grid, parse_tilt_range

#: relative power below which a region counts as empty (float32 rounding of an FFT round trip)
ROUNDING_POWER = 1e-9


def _volumes(*arrays: object, name: str) -> list[np.ndarray]:
    out = []
    for a in arrays:
        refuse_lazy(a, name)
        out.append(np.asarray(a, dtype=np.float64))
    shapes = {v.shape for v in out}
    if len(shapes) != 1 or out[0].ndim != 3:
        raise GeometryError(
            f"{name} expects (Z, Y, X) volumes of one shape, got {[v.shape for v in out]}"
        )
    return out


def _folded_angle_deg(kz: np.ndarray, kx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angle of ``(kx, kz)`` from the kx axis folded into (-90, 90], and whether it was flipped."""
    ang = np.degrees(np.arctan2(kz, kx))
    flip = ang > 90.0
    ang = np.where(flip, ang - 180.0, ang)
    flip2 = ang <= -90.0
    ang = np.where(flip2, ang + 180.0, ang)
    return ang, flip | flip2


def missing_angle_deg(shape: Sequence[int], tilt_range_deg: Sequence[float]) -> np.ndarray:
    """ndarray of shape (Z, Y, X) (full FFT order): degrees from each component to the range.

    0 inside the measured range ``[tilt_min, tilt_max]`` and on the ``ky`` axis; otherwise the
    angular distance (on the circle of directions, period 180 degrees) to the nearer end.
    """
    lo, hi = parse_tilt_range(tilt_range_deg)
    k = fourier_grid(shape)
    ang, _ = _folded_angle_deg(k[0], k[2])
    below = np.mod(lo - ang, 180.0)  # going up from ang to lo
    above = np.mod(ang - hi, 180.0)  # going down from ang to hi
    dist = np.minimum(below, above)
    inside = (ang >= lo - 1e-9) & (ang <= hi + 1e-9)
    on_ky_axis = (np.abs(k[0]) < 1e-12) & (np.abs(k[2]) < 1e-12)
    return np.where(inside | on_ky_axis, 0.0, dist)


def radius(shape: Sequence[int]) -> np.ndarray:
    """ndarray of shape (Z, Y, X): ``|k|`` in cycles per voxel (full FFT order)."""
    k = fourier_grid(shape)
    return np.sqrt((k**2).sum(axis=0))


def fourier_cc(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Normalised correlation of ``fftn(a)`` and ``fftn(b)`` over ``region`` (bool, FFT order).

    0.0 when either transform has no power there.
    """
    va, vb = _volumes(a, b, name="fourier_cc")
    fa, fb = np.fft.fftn(va)[region], np.fft.fftn(vb)[region]
    return _cc(fa, fb)


def _cc(fa: np.ndarray, fb: np.ndarray) -> float:
    den = np.sqrt(float(np.sum(np.abs(fa) ** 2)) * float(np.sum(np.abs(fb) ** 2)))
    if den <= 0.0:
        return 0.0
    return float(np.real(np.sum(fa * np.conj(fb))) / den)


def wedge_region(
    shape: Sequence[int],
    tilt_range_deg: Sequence[float],
    *,
    k_max: float = 0.25,
    min_angle_deg: float = 0.0,
) -> np.ndarray:
    """Bool ndarray of shape (Z, Y, X): unmeasured components with ``0 < |k| <= k_max``.

    Only those at least ``min_angle_deg`` (> 0 keeps the deep wedge) beyond the measured range.
    """
    miss = missing_angle_deg(shape, tilt_range_deg)
    r = radius(shape)
    keep = (miss > max(float(min_angle_deg), 1e-9)) & (r > 0) & (r <= float(k_max))
    return np.asarray(keep)


def wedge_cc(
    estimate: np.ndarray,
    truth: np.ndarray,
    tilt_range_deg: Sequence[float],
    *,
    k_max: float = 0.25,
    min_angle_deg: float = 0.0,
) -> float:
    """Fourier correlation of ``estimate`` with ``truth`` inside the missing wedge.

    Parameters
    ----------
    estimate, truth : ndarray of shape (Z, Y, X)
    tilt_range_deg : (tilt_min, tilt_max)
        The tilt range the estimate's tomogram was reconstructed from.
    k_max : float
        Only components with ``|k| <= k_max`` (cycles/voxel) count.
    min_angle_deg : float
        Only components at least this far (degrees) beyond the measured range count.
    """
    est, tru = _volumes(estimate, truth, name="wedge_cc")
    region = wedge_region(est.shape, tilt_range_deg, k_max=k_max, min_angle_deg=min_angle_deg)
    f_est = np.fft.fftn(est)
    inside = f_est[region]
    # power at the level of float32 rounding is no power: an exactly wedge-limited volume scores 0
    if float(np.sum(np.abs(inside) ** 2)) <= ROUNDING_POWER * float(np.sum(np.abs(f_est) ** 2)):
        return 0.0
    return _cc(inside, np.fft.fftn(tru)[region])


def neighbour_copy(volume: np.ndarray, tilt_range_deg: Sequence[float]) -> np.ndarray:
    """ndarray of shape (Z, Y, X), float64: ``volume`` with a copied (fake) wedge.

    Every unmeasured component ``k = (kz, ky, kx)`` gets the value of the nearest grid component
    to ``(r sin e, ky, r cos e)``, ``r = |(kx, kz)|``, ``e`` the nearer end of the tilt range
    moved one grid step inside it (on the same side of the origin as ``k``). Measured components are unchanged.
    """
    (vol,) = _volumes(volume, name="neighbour_copy")
    lo, hi = parse_tilt_range(tilt_range_deg)
    shape = vol.shape
    f = np.fft.fftn(vol)
    k = fourier_grid(shape)
    miss = missing_angle_deg(shape, tilt_range_deg) > 0
    kz, ky, kx = (c[miss] for c in k)
    ang, flipped = _folded_angle_deg(kz, kx)
    to_lo = np.mod(lo - ang, 180.0)
    to_hi = np.mod(ang - hi, 180.0)
    r = np.hypot(kz, kx)
    # one grid step inside the range, so that the rounded source component is a measured one
    step = np.degrees(np.arctan(1.5 / np.maximum(r * min(shape[0], shape[2]), 1.0)))
    edge = np.where(to_lo <= to_hi, lo + step, hi - step)
    sign = np.where(flipped, -1.0, 1.0)
    src_z = sign * r * np.sin(np.radians(edge))
    src_x = sign * r * np.cos(np.radians(edge))
    iz = np.mod(np.rint(src_z * shape[0]).astype(int), shape[0])
    iy = np.mod(np.rint(ky * shape[1]).astype(int), shape[1])
    ix = np.mod(np.rint(src_x * shape[2]).astype(int), shape[2])
    out = f.copy()
    out[miss] = f[iz, iy, ix]
    return np.fft.ifftn(out).real


def real_space_cc(a: np.ndarray, b: np.ndarray, *, mask: np.ndarray | None = None) -> float:
    """Pearson correlation of two ``(Z, Y, X)`` volumes (over ``mask`` voxels if given)."""
    va, vb = _volumes(a, b, name="real_space_cc")
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != va.shape:
            raise GeometryError(f"mask must have shape {va.shape}, got {m.shape}")
        va, vb = va[m], vb[m]
    va = va - va.mean()
    vb = vb - vb.mean()
    den = float(np.sqrt(np.sum(va**2) * np.sum(vb**2)))
    return float(np.sum(va * vb) / den) if den > 0 else 0.0
