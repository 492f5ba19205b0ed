"""A particle's oversampled transform kept only inside a band: the cheap path to its low
frequencies.

:func:`cryoflow.kernels.fourier_rotate.padded_transform` returns the whole ``P^3`` complex
transform (``P = pad * B``) in ``fftshift`` layout, and a caller that needs the components
with ``|k| <= k_max`` only (the conformation autoencoder: its band) then samples a few
thousand points of it. Here (same values, same rule):

1. a real-to-complex transform of the gridding-corrected box zero-padded to ``P^3``
   (``rfftn(v, s=(P, P, P))``: half the work and memory of a complex one, no padded copy);
2. only the cube of integer frequencies ``|m| <= h`` (``h = ceil(k_max P) + 2``, so trilinear
   samples up to ``k_max`` never reach its faces) is gathered, negative ``m_x`` from the
   Hermitian half (``F(-m) = conj F(m)``), DC at index ``h`` of every axis;
3. phases made relative to the box centre on the cube alone (the box starts at index 0, its
   centre at ``B // 2``: a factor ``e^{2 pi i m.(B//2) / P}``, the shift theorem), instead of
   shifting the whole grid.

:func:`sample_band` samples it like :func:`~cryoflow.kernels.fourier_rotate.sample_transform`
(trilinear, ``align_corners``: the sample at ``k`` is at index ``h + k P``); beyond the cube
the samples are zero.
"""

from __future__ import annotations

import numpy as np
import torch

from cryoflow.kernels.fourier_rotate import box_side


def band_half_width(k_max: float, p: int) -> int:
    """``h``: the half-side (integer frequencies of the ``P``-grid) of the cube kept for a
    band of ``k_max`` cycles per voxel (at most ``P // 2 - 1``)."""
    return int(min(np.ceil(float(k_max) * p) + 2, p // 2 - 1))


def _cube_index(h: int, p: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Indices into an ``rfftn`` grid of side ``p`` for the frequency cube ``|m| <= h``, and
    where ``m_x < 0`` (taken conjugated from ``-m``)."""
    m = torch.arange(-h, h + 1, device=device)
    z, y, x = torch.meshgrid(m, m, m, indexing="ij")
    neg = x < 0
    zi = torch.where(neg, -z, z) % p
    yi = torch.where(neg, -y, y) % p
    return zi, yi, x.abs(), neg


def band_transform(volumes: torch.Tensor, k_max: float, pad: int = 2) -> torch.Tensor:
    """Complex tensor (n, C, C, C), ``C = 2 h + 1``: the gridding-corrected, ``pad``-times
    oversampled centred transform on the cube ``|m| <= h`` (module docstring), DC at ``h``.

    ``volumes`` real (n, B, B, B); the values equal
    :func:`~cryoflow.kernels.fourier_rotate.padded_transform`'s at the same frequencies.
    """
    box = box_side(volumes)
    p = int(pad) * box
    h = band_half_width(k_max, p)
    x = torch.arange(box, device=volumes.device, dtype=torch.float64) - box // 2
    corr = (torch.sinc(x / p) ** 2).to(volumes.dtype)
    v = volumes / (corr[:, None, None] * corr[None, :, None] * corr[None, None, :])
    # 1. half the zero-padded transform; 2. the cube, negative m_x from the conjugate half
    f = torch.fft.rfftn(v, s=(p, p, p), dim=(-3, -2, -1))
    zi, yi, xi, neg = _cube_index(h, p, volumes.device)
    cube = f[:, zi, yi, xi]
    cube = torch.where(neg, cube.conj(), cube)
    # 3. phases about the box centre
    m = torch.arange(-h, h + 1, device=volumes.device, dtype=torch.float64)
    ph = torch.exp(2j * np.pi * m * (box // 2) / p)
    phase = (ph[:, None, None] * ph[None, :, None] * ph[None, None, :]).to(cube.dtype)
    return cube * phase


def sample_cube(src: torch.Tensor, freqs_zyx: torch.Tensor, p: int) -> torch.Tensor:
    """Real tensor (n, ch, K): trilinear samples of real cubes ``src`` ``(n, ch, C, C, C)`` (DC at
    index ``C // 2``) at frequencies ``freqs_zyx`` ``(n, K, 3)`` (cycles per voxel of the
    ``B``-box, ``p = pad * B``); zero beyond the cube."""
    c = int(src.shape[-1])
    idx = c // 2 + freqs_zyx * p
    grid = ((idx / (c - 1)) * 2.0 - 1.0).flip(-1)[:, :, None, None, :]  # (n, K, 1, 1, 3) x,y,z
    out = torch.nn.functional.grid_sample(
        src, grid.to(src.dtype), mode="bilinear", padding_mode="zeros", align_corners=True
    )  # (n, ch, K, 1, 1)
    return out[..., 0, 0]


def sample_band(cube: torch.Tensor, freqs_zyx: torch.Tensor, p: int) -> torch.Tensor:
    """Complex tensor (n, K): trilinear samples of :func:`band_transform` cubes ``(n, C, C, C)``
    at frequencies ``freqs_zyx`` ``(n, K, 3)`` (:func:`sample_cube`)."""
    out = sample_cube(torch.stack([cube.real, cube.imag], dim=1), freqs_zyx, p)
    return torch.complex(out[:, 0], out[:, 1])
