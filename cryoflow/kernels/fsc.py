"""Fourier shell correlation, its resolution crossings, and a soft low-pass filter.

Shells: component ``k`` (cycles/voxel) of a ``(B, B, B)`` box belongs to shell
``i = round(|k| B)``, ``i = 0 .. B // 2`` (shell ``i`` is frequency ``i / B``, a period of
``B / i`` voxels). FSC of shell ``i`` is ``Re sum F1 conj(F2) / sqrt(sum |F1|^2 sum |F2|^2)``.

Resolution at a threshold: the first shell ``i >= 1`` whose FSC falls below the threshold,
linearly interpolated with the shell before it, as a period in voxels (``B / i``) and in Å
(times the voxel size). A curve that never falls below it gives Nyquist (2 voxels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryoflow.errors import GeometryError
from cryoflow.kernels._guards import refuse_lazy


def _radius_grid(box: int) -> np.ndarray:
    kz = np.fft.fftfreq(box)
    kx = np.fft.rfftfreq(box)
    return np.sqrt(kz[:, None, None] ** 2 + kz[None, :, None] ** 2 + kx[None, None, :] ** 2)


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 3 or len(set(a.shape)) != 1:
        raise GeometryError(f"FSC needs two cubic maps of one shape, got {a.shape} and {b.shape}")


@dataclass(frozen=True)
class FSCCurve:
    """An FSC curve: ``fsc[i]`` for shell ``i`` at ``frequency[i] = i / B`` cycles/voxel."""

    frequency: np.ndarray  # (B//2 + 1,), cycles/voxel
    fsc: np.ndarray  # (B//2 + 1,)
    box: int

    def resolution_px(self, threshold: float) -> float:
        """The period (voxels) where the curve first falls below ``threshold``."""
        f = self.fsc
        for i in range(1, len(f)):
            if f[i] < threshold:
                t = (f[i - 1] - threshold) / (f[i - 1] - f[i]) if f[i - 1] != f[i] else 0.0
                shell = (i - 1) + float(np.clip(t, 0.0, 1.0))
                return float(self.box / max(shell, 1e-6))
        return 2.0

    def resolution_angstrom(self, threshold: float, voxel_size_angstrom: float) -> float:
        """:meth:`resolution_px` times the voxel size."""
        return self.resolution_px(threshold) * float(voxel_size_angstrom)


def fsc(map1: np.ndarray, map2: np.ndarray, mask: np.ndarray | None = None) -> FSCCurve:
    """The FSC of two ``(B, B, B)`` maps, both multiplied by ``mask`` first when given."""
    refuse_lazy(map1, "fsc")
    refuse_lazy(map2, "fsc")
    a = np.asarray(map1, dtype=np.float64)
    b = np.asarray(map2, dtype=np.float64)
    _check_pair(a, b)
    if mask is not None:
        m = np.asarray(mask, dtype=np.float64)
        _check_pair(a, m)
        a, b = a * m, b * m
    box = a.shape[0]
    fa, fb = np.fft.rfftn(a), np.fft.rfftn(b)
    herm = np.full(fa.shape, 2.0)
    herm[..., 0] = 1.0
    if box % 2 == 0:
        herm[..., -1] = 1.0
    shell = np.rint(_radius_grid(box) * box).astype(int).ravel()
    n = box // 2 + 1
    keep = shell < n
    w = herm.ravel()[keep]
    s = shell[keep]
    cross = np.bincount(s, w * (fa.ravel()[keep] * np.conj(fb.ravel()[keep])).real, minlength=n)
    pa = np.bincount(s, w * np.abs(fa.ravel()[keep]) ** 2, minlength=n)
    pb = np.bincount(s, w * np.abs(fb.ravel()[keep]) ** 2, minlength=n)
    den = np.sqrt(pa * pb)
    curve = np.where(den > 0, cross / np.where(den > 0, den, 1.0), 0.0)
    return FSCCurve(np.arange(n) / box, curve, box)


def lowpass(volume: np.ndarray, resolution_px: float, *, edge_shells: float = 2.0) -> np.ndarray:
    """ndarray of the volume's shape: a raised-cosine low-pass at a period of ``resolution_px``.

    Frequencies up to ``1/resolution_px - edge/2B`` pass, falling to zero at
    ``1/resolution_px + edge/2B`` (``edge = edge_shells`` shells); ``resolution_px <= 2`` is
    Nyquist (the volume unchanged but for the corners beyond it).
    """
    refuse_lazy(volume, "lowpass")
    v = np.asarray(volume, dtype=np.float32)
    if v.ndim != 3 or len(set(v.shape)) != 1:
        raise GeometryError(f"lowpass expects a cubic (B, B, B) map, got shape {v.shape}")
    if not resolution_px > 0:
        raise GeometryError(f"a low-pass resolution is a period > 0 voxels, got {resolution_px}")
    box = v.shape[0]
    k = _radius_grid(box)
    cut = 1.0 / max(float(resolution_px), 2.0)
    half = edge_shells / (2.0 * box)
    t = np.clip((k - (cut - half)) / (2.0 * half), 0.0, 1.0) if half > 0 else (k > cut) * 1.0
    filt = 0.5 * (1.0 + np.cos(np.pi * t))
    return np.fft.irfftn(np.fft.rfftn(v) * filt, s=v.shape, axes=(0, 1, 2)).astype(np.float32)


def fsc_weighted(volume: np.ndarray, curve: FSCCurve, resolution_px: float) -> np.ndarray:
    """ndarray (B, B, B): ``volume`` with each shell weighted by ``sqrt(2 FSC / (1 + FSC))``
    (the expected correlation of a half map with the truth, Rosenthal & Henderson 2003), cut to
    zero beyond ``resolution_px`` with a raised-cosine edge (:func:`lowpass`)."""
    refuse_lazy(volume, "fsc_weighted")
    v = np.asarray(volume, dtype=np.float32)
    box = v.shape[0]
    f = np.clip(curve.fsc, 0.0, 1.0)
    w = np.sqrt(2.0 * f / (1.0 + f))
    shell = np.minimum(np.rint(_radius_grid(box) * box).astype(int), len(w) - 1)
    weighted = np.fft.irfftn(np.fft.rfftn(v) * w[shell], s=v.shape, axes=(0, 1, 2)).astype(
        np.float32
    )
    return lowpass(weighted, resolution_px)
