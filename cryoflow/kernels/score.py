"""Wedge-aware constrained cross-correlation with an FFT translation search (torch, batched).

Score of particle ``p`` (transform ``P``, measured components ``W_p`` in its tomogram's frame)
against the reference ``V`` in orientation ``M`` (reference -> tomogram, on ``(z, y, x)``) at
shift ``s`` (voxels, the particle's centre relative to the box centre):

    H(k)    = V(M^T k) S(M^T k)                     the rotated reference (and its support S)
    C(k)    = W_p(k) band(k) S(M^T k)               components both sides hold, in the band
    cc(s)   = Re sum_k C P conj(H) e^{2 pi i k.s} / sqrt(sum_k C |P|^2  sum_k C |H|^2)

``band`` keeps ``0 < |k| <= 1/resolution_px`` (no DC: the score ignores the mean). ``S`` is the
reference's own measured support (1 where its weight sum is above the floor; all ones for a
filled reference). Both sides are multiplied by the particle's wedge and the normaliser is
computed *within* it, so a reference whose own wedge lines up with the particle's gains nothing:
it is a correlation coefficient over the common components, in ``[-1, 1]``. Soft masks: the
reference is multiplied by its mask before it is transformed (the mask turns with it); the
particle by a fixed spherical mask wide enough for the shift search.

Batching: per chunk of orientations the reference is rotated once (one trilinear gather of the
band's components) and correlated with every particle of the batch. ``cc(s)`` is evaluated only
at the shifts searched, ``|s| <= max_shift_px``, by a separable DFT of the cross spectrum cropped
to the band (three small complex matrix products per (particle, orientation)): cheaper than an
inverse FFT of the whole box whenever the window is small (a 7^3 window in a 32^3 box: about 8x
fewer operations than the FFT, and the cube shrinks with the band limit).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from cryoflow.errors import GeometryError
from cryoflow.kernels.fourier_rotate import (
    centred_rfft,
    hermitian_weights,
    padded_transform,
    sample_transform,
)
from cryoflow.kernels.wedge import wedge_mask

#: bytes of scratch the per-chunk cross-correlation maps may take
DEFAULT_CHUNK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ParticleSpectra:
    """A batch of particles prepared for scoring (device tensors), on the *band cube*: the
    components ``(kz, ky, kx)`` with ``kz, ky in -m .. m`` and ``kx in 0 .. m`` (``m = floor(B
    k_max)``), flattened to ``C = (2m+1)^2 (m+1)`` entries, zero outside the band.

    ``spectra`` (P, C) complex: centred transforms, wedge applied; ``wedge`` (P, C) float:
    ``W_p`` times ``herm``; ``herm`` (C,): the Hermitian multiplicity of each rfft component,
    zero outside the band; ``band_freqs`` (C, 3): cycles/voxel ``(kz, ky, kx)``.
    """

    spectra: torch.Tensor
    wedge: torch.Tensor
    herm: torch.Tensor
    band_freqs: torch.Tensor
    m: int
    box: int


@dataclass(frozen=True)
class ReferenceSpectrum:
    """A reference prepared for rotation: padded transform (1, 2, P, P, P), optional support."""

    padded: torch.Tensor
    support: torch.Tensor | None  # (1, 2, B, B, B) fftshifted, channel 1 zero; or None
    box: int


def wedge_stack(
    box: int, tilt_ranges: np.ndarray, device: str | torch.device, *, rfft: bool = True
) -> torch.Tensor:
    """Float tensor (n, ...): each particle's wedge in its tomogram frame (one mask per range)."""
    tr = np.asarray(tilt_ranges, dtype=float).reshape(-1, 2)
    uniq, inverse = np.unique(tr, axis=0, return_inverse=True)
    masks = np.stack([wedge_mask((box,) * 3, r, rfft=rfft) for r in uniq]).astype(np.float32)
    return torch.as_tensor(masks, device=device)[torch.as_tensor(inverse.reshape(-1))]


def band_cube(
    box: int, resolution_px: float, device: str | torch.device, highpass_px: float | None = None
) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The band cube: ``m``, rfft flat indices (C,), frequencies (C, 3) and band mask (C,)."""
    cut = 1.0 / max(float(resolution_px), 2.0)
    lo = max(1.0 / float(highpass_px), 0.5 / box) if highpass_px else 0.5 / box
    m = min(int(np.floor(cut * box + 1e-6)), box // 2)
    ax = torch.arange(-m, m + 1, device=device)
    kz, ky, kx = torch.meshgrid(ax, ax, torch.arange(0, m + 1, device=device), indexing="ij")
    idx = ((kz % box) * box + (ky % box)) * (box // 2 + 1) + kx
    freqs = torch.stack([kz, ky, kx], dim=-1).reshape(-1, 3).to(torch.float32) / box
    r = torch.linalg.vector_norm(freqs, dim=1)
    band = (r >= lo - 1e-6) & (r <= cut + 1e-6)
    if 2 * m == box:  # +B/2 and -B/2 are one component: keep -B/2 only
        band &= (kz.reshape(-1) != m) & (ky.reshape(-1) != m)
    return m, idx.reshape(-1), freqs, band.to(torch.float32)


def prepare_particles(
    particles: torch.Tensor,
    tilt_ranges: np.ndarray,
    mask: torch.Tensor,
    resolution_px: float,
    highpass_px: float | None = None,
) -> ParticleSpectra:
    """Mask, transform and band-limit a (P, B, B, B) particle batch (see module docstring)."""
    box = int(particles.shape[-1])
    dev = particles.device
    n = particles.shape[0]
    m, idx, freqs, band = band_cube(box, resolution_px, dev, highpass_px)
    spec = centred_rfft(particles * mask).reshape(n, -1)[:, idx]
    wedge = wedge_stack(box, tilt_ranges, dev).reshape(n, -1)[:, idx] * band
    herm = hermitian_weights(box, dev).reshape(-1)[idx] * band
    return ParticleSpectra(spec * wedge, wedge * herm, herm, freqs, m, box)


def prepare_reference(
    volume: torch.Tensor, mask: torch.Tensor, support_full: torch.Tensor | None, pad: int = 2
) -> ReferenceSpectrum:
    """Masked, gridding-corrected padded transform of a (B, B, B) reference.

    ``support_full`` (B, B, B) float in FFT order over the full grid (1 = measured), or None.
    """
    box = int(volume.shape[-1])
    padded = padded_transform((volume * mask)[None], pad)
    sup = None
    if support_full is not None:
        s = torch.fft.fftshift(support_full.to(volume.dtype), dim=(-3, -2, -1))
        sup = torch.stack([s, torch.zeros_like(s)])[None].contiguous()
    return ReferenceSpectrum(padded, sup, box)


@dataclass(frozen=True)
class ShiftWindow:
    """The shifts searched around each particle's current centre: the cube of offsets
    ``step * (-half .. half)`` per axis, ``keep`` (Nw,) its flat indices inside the ball
    ``|offset| <= radius``, ``offsets`` (Nw, 3) float ``(z, y, x)`` voxels."""

    half: int
    step: float
    keep: torch.Tensor
    offsets: torch.Tensor


def shift_window(
    radius_px: float, device: str | torch.device, *, step_px: float = 1.0, box: int | None = None
) -> ShiftWindow:
    """Offsets on a grid of ``step_px`` within ``|s| <= radius_px`` (see :class:`ShiftWindow`)."""
    if not (np.isfinite(radius_px) and radius_px >= 0 and step_px > 0):
        raise GeometryError(
            f"a shift window needs radius >= 0 and step > 0 voxels, got {radius_px}, {step_px}"
        )
    m = int(np.floor(float(radius_px) / float(step_px) + 1e-9))
    if box is not None and 2 * radius_px + 1 > box:
        raise GeometryError(f"max shift {radius_px} px does not fit a box of {box}")
    ax = torch.arange(-m, m + 1, device=device, dtype=torch.float64) * float(step_px)
    s = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), dim=-1).reshape(-1, 3)
    keep = torch.nonzero((s**2).sum(1) <= float(radius_px) ** 2 + 1e-9).reshape(-1)
    return ShiftWindow(m, float(step_px), keep, s[keep])


def recentre(parts: ParticleSpectra, centres_zyx: torch.Tensor) -> ParticleSpectra:
    """The batch with every particle's spectrum phase-shifted so offsets are relative to its
    centre ``c_p`` (``centres_zyx`` (P, 3) voxels): ``P'(k) = P(k) e^{2 pi i k.c_p}``."""
    phase = torch.exp(
        2j * np.pi * (centres_zyx.to(torch.float64) @ parts.band_freqs.T.to(torch.float64))
    )
    return replace(parts, spectra=parts.spectra * phase.to(parts.spectra.dtype))


def _block(e: torch.Tensor) -> torch.Tensor:
    """Real (2K, 2X) matrix acting on interleaved (re, im) rows as the complex (K, X) ``e``."""
    k, x = e.shape
    b = torch.empty((2 * k, 2 * x), dtype=e.real.dtype, device=e.device)
    b[0::2, 0::2], b[0::2, 1::2] = e.real, e.imag
    b[1::2, 0::2], b[1::2, 1::2] = -e.imag, e.real
    return b


def _contract_last(x: torch.Tensor, e_block: torch.Tensor) -> torch.Tensor:
    """Complex ``x`` (..., K) times complex (K, X) given as its real block: (..., X)."""
    shape = x.shape
    y = torch.view_as_real(x.contiguous()).reshape(-1, 2 * shape[-1]) @ e_block
    return torch.view_as_complex(y.reshape(*shape[:-1], -1, 2).contiguous())


def window_correlation(
    parts: ParticleSpectra, prod: torch.Tensor, window: ShiftWindow
) -> torch.Tensor:
    """Tensor (N, Nw): ``Re sum_k X(k) e^{2 pi i k.s}`` (full grid) at the window's offsets.

    ``prod`` (N, C) complex: cross spectra ``X`` on the band cube, Hermitian multiplicities
    included. The sum is a separable DFT (three small real matrix products, no FFT): only the
    shifts searched are evaluated, at any step (sub-voxel too), and a band limit shrinks the cube.
    """
    m, box, n = parts.m, parts.box, prod.shape[0]
    dev = prod.device
    s = torch.arange(-window.half, window.half + 1, device=dev, dtype=torch.float64) * window.step
    k = torch.arange(-m, m + 1, device=dev, dtype=torch.float64)
    e = _block(torch.exp(2j * np.pi * torch.outer(k, s) / box).to(prod.dtype))
    kx = torch.arange(0, m + 1, device=dev, dtype=torch.float64)
    ex = _block(torch.exp(2j * np.pi * torch.outer(kx, s) / box).to(prod.dtype))
    w = 2 * window.half + 1
    y = _contract_last(prod.reshape(n, 2 * m + 1, 2 * m + 1, m + 1), ex)  # (n, kz, ky, sx)
    y = _contract_last(y.transpose(2, 3), e)  # (n, kz, sx, sy)
    y = _contract_last(y.permute(0, 2, 3, 1), e)  # (n, sx, sy, sz)
    out = y.real.permute(0, 3, 2, 1).reshape(n, w**3)
    return out[:, window.keep]


def _sample_support(ref: ReferenceSpectrum, q: torch.Tensor) -> torch.Tensor:
    # support on the B grid (step 1/B): same sampler, "padding" factor 1
    assert ref.support is not None
    return sample_transform(ref.support, q).real.clamp(0.0, 1.0).gt(0.5).to(q.dtype)


def _rotated_reference(
    parts: ParticleSpectra, ref: ReferenceSpectrum, rot: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``H`` (..., c, Kb) and the sampled support (or None) for rotations (..., c, 3, 3)."""
    q = torch.einsum("...oji,kj->...oki", rot, parts.band_freqs)  # M^T k, (..., c, Kb, 3)
    qq = q.reshape(1, -1, q.shape[-2], 3)
    h = sample_transform(ref.padded, qq).reshape(*q.shape[:-1])
    if ref.support is None:
        return h, None
    sup = _sample_support(ref, qq).reshape(*q.shape[:-1])
    return h * sup, sup


def score_orientations(
    parts: ParticleSpectra,
    ref: ReferenceSpectrum,
    rotations_zyx: torch.Tensor,
    window: ShiftWindow,
    *,
    allowed: torch.Tensor | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best-over-shift scores of every particle in every orientation.

    Parameters
    ----------
    rotations_zyx : tensor (O, 3, 3) shared by all particles, or (P, O, 3, 3) per particle
    window : ShiftWindow
        The offsets searched around each particle's centre (:func:`shift_window`,
        :func:`recentre`).
    allowed : tensor (P, Nw) bool, optional
        Offsets each particle may take (e.g. within its maximum total shift).

    Returns
    -------
    scores : tensor (P, O)
        The constrained cross-correlation at the best shift.
    shift_index : tensor (P, O) long
        Row of ``window.offsets`` where it was found.
    """
    n_p = parts.spectra.shape[0]
    shared = rotations_zyx.ndim == 3
    n_o = rotations_zyx.shape[-3]
    cube = (2 * parts.m + 1) ** 2 * (parts.m + 1)
    per = max(1, int(chunk_bytes // (n_p * cube * 8 * 3)))
    dev = parts.spectra.device
    scores = torch.empty((n_p, n_o), device=dev)
    where = torch.empty((n_p, n_o), dtype=torch.long, device=dev)
    pp = (parts.spectra.real**2 + parts.spectra.imag**2) * parts.wedge  # (P, C)
    weighted = (parts.spectra * parts.herm)[:, None, :]
    for lo in range(0, n_o, per):
        rot = rotations_zyx[..., lo : lo + per, :, :]
        c = rot.shape[-3]
        # 1. rotate the reference once per orientation: H(k) = V(M^T k) at the band's k
        h, sup = _rotated_reference(parts, ref, rot)
        # 2. normalisers within the particle's wedge (and the reference's support)
        hp = h.real**2 + h.imag**2
        if shared:
            ref_norm = (hp @ parts.wedge.T).T  # (P, c)
            par_norm = pp @ sup.T if sup is not None else pp.sum(1, keepdim=True)
        else:
            ref_norm = torch.einsum("pck,pk->pc", hp, parts.wedge)
            par_norm = (
                torch.einsum("pck,pk->pc", sup, pp) if sup is not None else pp.sum(1, keepdim=True)
            )
        # 3. cross-correlation at every shift of the window (separable DFT)
        hc = torch.conj(h)[None] if shared else torch.conj(h)
        prod = weighted * hc
        cc = window_correlation(parts, prod.reshape(n_p * c, -1), window)
        if allowed is not None:
            cc = cc.reshape(n_p, c, -1).masked_fill(~allowed[:, None, :], -torch.inf)
        best, arg = cc.reshape(n_p * c, -1).max(dim=1)
        den = torch.sqrt((ref_norm * par_norm).clamp_min(1e-30))
        scores[:, lo : lo + c] = best.reshape(n_p, c) / den
        where[:, lo : lo + c] = arg.reshape(n_p, c)
    return scores, where


def window_maps(
    parts: ParticleSpectra, ref: ReferenceSpectrum, rotations_zyx: torch.Tensor, window: ShiftWindow
) -> torch.Tensor:
    """Tensor (P, n, n, n), ``n = 2 half + 1``: unnormalised ``cc`` on the window's whole cube,
    each particle in its own orientation (``rotations_zyx`` (P, 3, 3))."""
    h, _ = _rotated_reference(parts, ref, rotations_zyx[:, None])
    prod = (parts.spectra * parts.herm) * torch.conj(h[:, 0])
    n = 2 * window.half + 1
    cube = replace(window, keep=torch.arange(n**3, device=prod.device))
    return window_correlation(parts, prod, cube).reshape(-1, n, n, n)
