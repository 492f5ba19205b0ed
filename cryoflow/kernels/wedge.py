"""The missing wedge: which Fourier components of a box a single-axis tilt series measured.

Rule (``CONTRACT.md``, "Missing wedge"). Single-axis tilt about ``y`` with tilts
``t in [tilt_min, tilt_max]`` (degrees): by the projection-slice theorem the image at tilt ``t``
(``uc = xc*cos(t) + zc*sin(t)``) samples the central plane spanned by ``ky`` and the direction
``(kx, kz) = (cos t, sin t)``. A Fourier component ``k = (kz, ky, kx)`` is therefore *measured*
when the angle of ``(kx, kz)`` from the ``kx`` axis, folded into ``(-90, 90]`` (a real volume's
transform is Hermitian), lies in ``[tilt_min, tilt_max]``. Components with ``kx = kz = 0``
(the ``ky`` axis) are measured by every tilt.

For a particle with orientation ``M`` (reference -> tomogram, acting on ``(z, y, x)``; see
:mod:`cryoflow.geometry.rotation`), the components measured *in the reference frame* are
``W_ref(k) = W(M k)``: the particle's transform is the reference's rotated by ``M``.

Frequencies are in cycles per voxel in NumPy's FFT order (``numpy.fft.fftfreq``; with
``rfft=True`` the last axis is ``numpy.fft.rfftfreq``), so masks multiply ``numpy.fft.fftn``
(or ``rfftn``) output directly, without shifting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryoflow.errors import GeometryError
from cryoflow.kernels._guards import eager_volume


def parse_tilt_range(tilt_range_deg: Sequence[float]) -> tuple[float, float]:
    """``(tilt_min, tilt_max)`` in degrees, checked: finite, ordered, within ``[-90, 90]``."""
    try:
        lo, hi = (float(v) for v in tilt_range_deg)
    except (TypeError, ValueError) as exc:
        raise GeometryError(
            f"a tilt range is two numbers (min, max) in degrees, got {tilt_range_deg!r}"
        ) from exc
    if not (np.isfinite(lo) and np.isfinite(hi)) or not -90.0 <= lo <= hi <= 90.0:
        raise GeometryError(
            f"tilt range must satisfy -90 <= min <= max <= 90 degrees, got ({lo:g}, {hi:g})"
        )
    return lo, hi


def fourier_grid(shape: Sequence[int], *, rfft: bool = False) -> np.ndarray:
    """ndarray of shape (3, Z, Y, X'): ``(kz, ky, kx)`` in cycles/voxel, FFT order.

    ``X' = X // 2 + 1`` with ``rfft=True``, else ``X``.
    """
    z, y, x = (int(n) for n in shape)
    kz = np.fft.fftfreq(z)
    ky = np.fft.fftfreq(y)
    kx = np.fft.rfftfreq(x) if rfft else np.fft.fftfreq(x)
    return np.stack(np.meshgrid(kz, ky, kx, indexing="ij"))


def _measured(kz: np.ndarray, kx: np.ndarray, lo: float, hi: float) -> np.ndarray:
    # angle of (kx, kz) from the kx axis, folded into (-90, 90]
    ang = np.degrees(np.arctan2(kz, kx))
    ang = np.where(ang > 90.0, ang - 180.0, ang)
    ang = np.where(ang <= -90.0, ang + 180.0, ang)
    on_ky_axis = (np.abs(kz) < 1e-12) & (np.abs(kx) < 1e-12)
    tol = 1e-9
    return on_ky_axis | ((ang >= lo - tol) & (ang <= hi + tol))


def wedge_mask(
    shape: Sequence[int],
    tilt_range_deg: Sequence[float],
    *,
    rotation_zyx: np.ndarray | None = None,
    rfft: bool = False,
) -> np.ndarray:
    """Boolean ndarray of shape (Z, Y, X') (FFT order): True where the tilt series measured.

    Parameters
    ----------
    shape : (Z, Y, X)
        The box (real space).
    tilt_range_deg : (tilt_min, tilt_max)
        Tilt range of the tomogram the box came from, degrees.
    rotation_zyx : ndarray of shape (3, 3), optional
        Reference -> tomogram rotation acting on ``(z, y, x)``: returns the mask in the
        reference frame, ``W(M k)``. Default: the tomogram frame.
    rfft : bool
        Mask for ``numpy.fft.rfftn`` output (last axis halved).
    """
    lo, hi = parse_tilt_range(tilt_range_deg)
    k = fourier_grid(shape, rfft=rfft)
    if rotation_zyx is not None:
        m = np.asarray(rotation_zyx, dtype=float)
        if m.shape != (3, 3):
            raise GeometryError(f"rotation_zyx must have shape (3, 3), got {m.shape}")
        k = np.tensordot(m, k, axes=1)
    return _measured(k[0], k[2], lo, hi)


def apply_wedge(volume: np.ndarray, tilt_range_deg: Sequence[float]) -> np.ndarray:
    """ndarray of the volume's shape: ``volume`` with its unmeasured Fourier components zeroed.

    The real-space result of imaging ``volume`` through the tilt range (no noise, no CTF).
    """
    vol = eager_volume(volume, "apply_wedge")
    mask = wedge_mask(vol.shape, tilt_range_deg, rfft=True)
    return np.fft.irfftn(np.fft.rfftn(vol) * mask, s=vol.shape, axes=(0, 1, 2)).astype(np.float32)
