"""Signal subtraction: a map placed in particles' poses inside their wedges, removed from them.

Forward model (the averaging convention, :mod:`cryoflow.kernels.average`): a particle of map
``V`` in pose ``(M, s)`` (reference -> tomogram on ``(z, y, x)``, ``s`` its centre relative
to the box centre) measured through wedge ``W_p`` is

    p(r) = V(M^-1 (r - s))   ->   P(k) = W_p(k) e^{-2 pi i k.s} V(M^T k)

with ``V(M^-1 r)`` made by the averaging kernels' rotation
(:func:`~cryoflow.kernels.fourier_rotate.rotate_volumes`: the gridding-corrected,
twice-oversampled transform sampled at ``M^T k``; exact voxel permutations for multiples of
90 degrees), then shifted and wedge-filtered in one transform.
:func:`subtract_models` removes ``a_p`` times the sum of such models from each particle, with
``a_p`` the least-squares scale of the *whole* model to the particle (``<p, f> / <f, f>``
over the box, ``f`` every body placed), so a particle whose contrast differs from the
consensus is subtracted at its own scale.
"""

from __future__ import annotations

import numpy as np
import torch

from cryoflow.errors import GeometryError
from cryoflow.geometry.rotation import matrix_zyx_from_euler
from cryoflow.kernels.fourier_rotate import (
    centred_irfft,
    centred_rfft,
    rfft_frequencies,
    rotate_volumes,
)
from cryoflow.kernels.score import wedge_stack


def place_in_poses(
    volume: np.ndarray,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    tilt_ranges: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    pad: int = 2,
) -> np.ndarray:
    """ndarray (n, B, B, B) float32: ``volume`` (B, B, B) as particles in ``n`` poses.

    ``euler_deg``/``shifts_zyx_px`` (n, 3) the poses (contract convention), ``tilt_ranges``
    (n, 2) each particle's wedge (see module docstring).
    """
    v = np.asarray(volume, dtype=np.float32)
    if v.ndim != 3 or len(set(v.shape)) != 1:
        raise GeometryError(f"place_in_poses takes one (B, B, B) map, got shape {v.shape}")
    box = v.shape[0]
    e = np.asarray(euler_deg, dtype=float).reshape(-1, 3)
    s = np.asarray(shifts_zyx_px, dtype=float).reshape(-1, 3)
    tr = np.asarray(tilt_ranges, dtype=float).reshape(-1, 2)
    n = len(e)
    if len(s) != n or len(tr) != n:
        raise GeometryError(
            f"need one shift and tilt range per pose: {len(s)} and {len(tr)} for {n} poses"
        )
    if n == 0:
        return np.zeros((0, box, box, box), np.float32)
    # 1. V(M^-1 r): the map turned into every pose (the averaging kernels' rotation)
    turned = rotate_volumes(
        np.repeat(v[None], n, axis=0), matrix_zyx_from_euler(e), device=device, pad=pad
    )
    spec = centred_rfft(torch.as_tensor(turned, device=device)).reshape(n, -1)
    # 2. shifted (a Fourier phase) and seen through each particle's wedge
    dev = spec.device
    k = rfft_frequencies(box, dev).reshape(-1, 3).to(torch.float64)
    phase = torch.exp(-2j * np.pi * (torch.as_tensor(s, dtype=torch.float64, device=dev) @ k.T))
    wedge = wedge_stack(box, tr, dev).reshape(n, -1)
    full = (spec.to(torch.complex128) * phase * wedge).reshape(n, box, box, box // 2 + 1)
    return centred_irfft(full, box).cpu().numpy().astype(np.float32)


def model_scales(particles: np.ndarray, models: np.ndarray) -> np.ndarray:
    """ndarray (n,): least-squares ``a_p = <p, f> / <f, f>`` of models (n, B, B, B) to
    particles (n, B, B, B), clipped to ``[0, 2]`` (1 where a model is empty)."""
    p = np.asarray(particles, dtype=np.float64).reshape(len(particles), -1)
    f = np.asarray(models, dtype=np.float64).reshape(len(models), -1)
    num = (p * f).sum(axis=1)
    den = (f * f).sum(axis=1)
    a = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    return np.clip(a, 0.0, 2.0)


def subtract_models(
    particles: np.ndarray, models: np.ndarray, keep: int, scales: np.ndarray
) -> np.ndarray:
    """ndarray (n, B, B, B) float32: each particle minus ``scales`` times every placed model
    (``models`` (nb, n, B, B, B), one per body) but body ``keep``'s."""
    others = np.asarray(models).sum(axis=0) - np.asarray(models)[keep]
    a = np.asarray(scales, dtype=np.float32).reshape(-1, 1, 1, 1)
    return (np.asarray(particles, dtype=np.float32) - a * others).astype(np.float32)
