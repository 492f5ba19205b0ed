"""Aligned particles in the reference frame: each particle's transform and its measured region.

For particle ``p`` with orientation ``M`` (reference -> tomogram, on ``(z, y, x)``), shift ``s``
(its centre relative to the box centre, voxels) and wedge ``W_p`` (its tomogram frame), the
alignment says ``p(r) = ref(M^-1 (r - s))``, so ``P(k) = e^{-2 pi i k.s} REF(M^T k)``. Undoing
the alignment, at every component ``q`` of a reference-frame grid:

    X(q) = W_p(M q) P(M q) e^{+2 pi i (M q).s}        (the particle seen in the reference frame)
    W(q) = W_p(M q)                                    (what it measured there, exact)

the per-particle terms of :mod:`cryoflow.kernels.average` (which sums them over particles).
``P`` is sampled from the particle's gridding-corrected, twice-oversampled transform with its
wedge applied (:mod:`cryoflow.kernels.fourier_rotate`); ``W_p(M q)`` follows the contract's rule
(:func:`cryoflow.kernels.wedge.wedge_mask`) exactly.

The grid may be smaller than the box (a Fourier crop, :mod:`cryoflow.kernels.fourier_crop`):
on a ``b``-grid the integer frequency ``f`` is ``f / B`` cycles per particle voxel, and values
are scaled by ``(b / B)^3`` so that the real-space values are preserved. Only the components
inside a band limit are ever needed downstream, so the crop is where the work shrinks.

With ``max_freq`` (cycles per particle voxel) only the components with ``|q| <= max_freq`` are
computed (the others are zero): each particle's transform is then kept only on the small cube
of frequencies that trilinear sampling inside the band reads
(:mod:`cryoflow.kernels.fourier_band`: a real-to-complex transform, no full-grid shifts), which
is what makes a batch cheap; the values inside the band are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from cryoflow.errors import GeometryError
from cryoflow.geometry.rotation import matrix_zyx_from_euler
from cryoflow.kernels.fourier_band import band_transform, sample_band, sample_cube
from cryoflow.kernels.fourier_rotate import (
    as_tensor,
    box_side,
    padded_transform,
    rfft_frequencies,
    sample_transform,
)
from cryoflow.kernels.wedge import wedge_mask


@dataclass(frozen=True)
class FrameSpectra:
    """Particles in the reference frame on a ``b``-grid.

    ``spectra`` complex64 tensor (n, b, b, b//2+1): centred transforms ``X`` (zero where not
    measured); ``wedges`` float32 tensor (n, b, b, b//2+1): ``W`` (1 measured, 0 not).
    """

    spectra: torch.Tensor
    wedges: torch.Tensor

    def __len__(self) -> int:
        return int(self.spectra.shape[0])


def checked_poses(
    n: int, euler_deg: np.ndarray, shifts_zyx_px: np.ndarray, tilt_ranges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The poses of ``n`` particles as float arrays (n, 3), (n, 3), (n, 2).

    ``GeometryError`` unless there is one orientation, shift and tilt range per particle.
    """
    e = np.asarray(euler_deg, dtype=float).reshape(-1, 3)
    s = np.asarray(shifts_zyx_px, dtype=float).reshape(-1, 3)
    tr = np.asarray(tilt_ranges, dtype=float).reshape(-1, 2)
    if not (len(e) == len(s) == len(tr) == n):
        raise GeometryError(
            f"need one orientation, shift and tilt range per particle: got {len(e)}, {len(s)}, "
            f"{len(tr)} for {n} particles"
        )
    return e, s, tr


@lru_cache(maxsize=32)
def _cube_wedge(key: tuple[float, float], p: int, side: int) -> np.ndarray:
    """The tomogram-frame wedge of tilt range ``key`` on the ``p``-grid's frequency cube of
    side ``side`` (DC at its centre): a pure function of its arguments, kept per process (a
    worker embedding batch after batch computes it once per tilt range)."""
    w = wedge_mask((p,) * 3, key).astype(np.float32)
    m = np.arange(-(side // 2), side // 2 + 1) % p
    out = w[np.ix_(m, m, m)]
    out.flags.writeable = False
    return out


def _key(tilt_range: np.ndarray) -> tuple[float, float]:
    return (float(tilt_range[0]), float(tilt_range[1]))


def _padded_wedge(
    key: tuple[float, float], p: int, side: int, max_freq: float | None, device: torch.device
) -> torch.Tensor:
    """The tomogram-frame wedge of tilt range ``key`` on the ``p``-grid, in the layout of the
    transform it multiplies: ``fftshift`` (full grid) or the band cube of side ``side``."""
    if max_freq is None:
        w = wedge_mask((p,) * 3, key).astype(np.float32)
        return torch.as_tensor(np.fft.fftshift(w), device=device)
    return torch.tensor(_cube_wedge(key, p, side), device=device)


def reference_frame_spectra(
    particles: np.ndarray,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    tilt_ranges: np.ndarray,
    *,
    box_out: int | None = None,
    device: str | torch.device = "cpu",
    pad: int = 2,
    chunk: int = 8,
    max_freq: float | None = None,
    normalise: bool = False,
) -> FrameSpectra:
    """Each particle's transform and measured region in the reference frame (module docstring).

    Parameters
    ----------
    particles : ndarray of shape (n, B, B, B)
        Aligned particles, each in its tomogram's frame.
    euler_deg : ndarray of shape (n, 3)
        ``rot, tilt, psi`` (contract convention: reference -> tomogram).
    shifts_zyx_px : ndarray of shape (n, 3)
        Each particle's centre relative to the box centre, voxels ``(z, y, x)``.
    tilt_ranges : ndarray of shape (n, 2)
        The tilt range of each particle's tomogram, degrees.
    box_out : int, optional
        Side ``b`` of the reference-frame grid (default ``B``).
    chunk : int
        Particles transformed together (memory: ``chunk * 2 * (pad B)^3`` floats).
    max_freq : float, optional
        Compute only ``|q| <= max_freq`` (cycles per particle voxel); zero beyond it.
    normalise : bool
        (with ``max_freq``) *Normalised interpolation*: the particle's wedge ``W_p`` is
        sampled at ``M q`` exactly as its data are (trilinear on the same grid, ``W~``); the
        measured region is ``W~ >= 1/2`` and the values there are ``X~ / W~``, the
        interpolation of the measured neighbours only. Plain trilinear data fall short near
        the wedge's edges (part of their interpolation weight lands on unmeasured, zero
        components) while the exact region counts them as measured: a dip that follows the
        wedge's direction, which an embedding then learns as if it were the particle.
    """
    v = as_tensor(particles, device, torch.float32)
    box = box_side(v)
    n = v.shape[0]
    e, s, tr = checked_poses(n, euler_deg, shifts_zyx_px, tilt_ranges)
    b = box if box_out is None else int(box_out)
    if b < 4:
        raise GeometryError(f"the reference-frame grid needs a side >= 4, got {b}")
    # 1. the b-grid's frequencies in cycles per particle voxel
    q = rfft_frequencies(b, v.device).reshape(-1, 3).to(torch.float64) * (b / box)  # (K, 3)
    m_all = matrix_zyx_from_euler(e).reshape(n, 3, 3) if n else np.zeros((0, 3, 3))
    shape = (b, b, b // 2 + 1)
    spectra = torch.zeros((n, *shape), dtype=torch.complex64, device=v.device)
    wedges = torch.zeros((n, *shape), dtype=torch.float32, device=v.device)
    padded_wedges: dict[tuple[float, float], torch.Tensor] = {}
    scale = (b / box) ** 3
    p = int(pad) * box
    in_band = torch.ones(q.shape[0], dtype=torch.bool, device=v.device)  # (K,)
    if max_freq is not None:
        in_band = torch.linalg.vector_norm(q, dim=-1) <= float(max_freq) + 1e-9
    for start in range(0, n, max(int(chunk), 1)):
        idx = range(start, min(start + max(int(chunk), 1), n))
        # 2. each particle's oversampled transform with its own (tomogram-frame) wedge applied
        if max_freq is None:
            f = padded_transform(v[idx.start : idx.stop], pad)
        else:
            f = band_transform(v[idx.start : idx.stop], float(max_freq), pad)
        for j, i in enumerate(idx):
            key = _key(tr[i])
            if key not in padded_wedges:
                padded_wedges[key] = _padded_wedge(key, p, f.shape[-1], max_freq, v.device)
            f[j] *= padded_wedges[key]
        # 3. sampled at M q, phase-shifted for the particle's shift
        mt = torch.as_tensor(m_all[idx.start : idx.stop], dtype=torch.float64, device=v.device)
        mq = torch.einsum("nij,kj->nki", mt, q)  # (c, K, 3): M q
        w_soft = None
        if max_freq is None:
            vals = sample_transform(f, mq.to(torch.float32)[:, None])[:, 0]  # (c, K)
        else:
            vals = sample_band(f, mq.to(torch.float32), p) * in_band
            if normalise:
                cubes = torch.stack([padded_wedges[_key(tr[i])] for i in idx])[:, None]
                w_soft = sample_cube(cubes, mq.to(torch.float32), p)[:, 0] * in_band
        sh = torch.as_tensor(s[idx.start : idx.stop], dtype=torch.float64, device=v.device)
        phase = torch.exp(2j * np.pi * torch.einsum("nkj,nj->nk", mq, sh))
        # 4. the measured region in the reference frame, by the contract's rule
        if w_soft is None:
            w_ref = np.stack(
                [wedge_mask((b,) * 3, tr[i], rotation_zyx=m_all[i], rfft=True) for i in idx]
            ).astype(np.float32)
            wt = torch.as_tensor(w_ref, device=v.device)
        else:  # or the interpolated one (normalise)
            wt = (w_soft >= 0.5).to(torch.float32)
            vals = vals / w_soft.clamp_min(0.5)
            wt = wt.reshape(-1, *shape)
        x = (vals.to(torch.complex128) * phase * scale).to(torch.complex64)
        spectra[idx.start : idx.stop] = x.reshape(-1, *shape) * wt
        wedges[idx.start : idx.stop] = wt
    return FrameSpectra(spectra, wedges)
