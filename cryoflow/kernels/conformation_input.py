"""What the conformation autoencoder sees and is scored on: band, mask, normalisation, filling.

All of it lives on the working grid of side ``b`` (a Fourier crop of the particle box ``B`` to
the band limit, :mod:`cryoflow.kernels.fourier_crop`), in the reference frame
(:mod:`cryoflow.kernels.reference_frame`: spectra ``X_i`` and measured regions ``W_i``).

1. **Band** ``H(q)``: 1 for ``0 < |q| <= 1/resolution_px`` (cycles per particle voxel), 0 else
   (the DC component is an arbitrary background level and is never counted).
2. **Per-particle scale** ``a_i``: the least-squares factor of the consensus average ``A`` (unit
   rms inside the mask) on the particle over what it measured in the band,
   ``a_i = Re sum(W_i H X_i conj A) / sum(W_i H |A|^2)`` (Hermitian-weighted), floored at a tenth
   of the particle's rms ratio ``sqrt(sum W_i H |X_i|^2 / sum W_i H |A|^2)`` (per particle, so a
   batch's result never depends on the other particles in it). Dividing by it evens out
   contrast between particles and tomograms.
3. **Filling** (wedge-aware normalisation): ``S_i = W_i X_i / a_i + (1 - W_i) A``: the
   unmeasured components take the average's values, so every particle's input is complete and
   the direction of its wedge leaves no hole for the encoder to see. ``S_i`` depends on ``X_i``
   only through ``W_i X_i``.
4. **Network input** ``x_i = m * irfft(H S_i)`` with ``m`` the soft real-space mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.kernels.fourier_crop import resize_spectra
from cryoflow.kernels.fourier_rotate import (
    centred_irfft,
    centred_rfft,
    hermitian_weights,
    rfft_frequencies,
)
from cryoflow.kernels.masks import spherical_mask
from cryoflow.kernels.reference_frame import reference_frame_spectra

#: the working side is a multiple of this (the autoencoder halves it three times)
WORK_MULTIPLE = 8


@dataclass(frozen=True)
class EmbedFrame:
    """Where the autoencoder works: particle box, working box, band, mask.

    box : particle box side ``B`` (voxels).
    resolution_px : band limit, a period in particle voxels (>= 2: Nyquist).
    mask_radius_px, mask_edge_px : the soft spherical mask, in particle voxels.
    work_box : side ``b`` of the working grid (default: the smallest multiple of 8 holding the
        band, at most ``B`` rounded up to a multiple of 8).
    """

    box: int
    resolution_px: float
    mask_radius_px: float
    mask_edge_px: float = 3.0
    work_box: int = 0

    def __post_init__(self) -> None:
        if int(self.box) < 8:
            raise ConfigError(f"the particle box must be >= 8 voxels, got {self.box}")
        if not float(self.resolution_px) >= 2.0:
            raise ConfigError(
                f"resolution_px is a period in voxels >= 2 (Nyquist), got {self.resolution_px}"
            )
        if not 0 < float(self.mask_radius_px) <= self.box / 2 or float(self.mask_edge_px) < 0:
            raise ConfigError(
                f"mask radius must lie in (0, B/2 = {self.box / 2:g}] and its edge be >= 0, got "
                f"{self.mask_radius_px}, {self.mask_edge_px}"
            )
        if int(self.work_box) == 0:
            object.__setattr__(self, "work_box", default_work_box(self.box, self.resolution_px))
        if int(self.work_box) % WORK_MULTIPLE or int(self.work_box) < WORK_MULTIPLE:
            raise ConfigError(
                f"work_box must be a multiple of {WORK_MULTIPLE}, got {self.work_box}"
            )

    @property
    def band_index(self) -> float:
        """The band limit as an integer-frequency radius ``B / resolution_px``."""
        return self.box / float(self.resolution_px)

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": int(self.box),
            "resolution_px": float(self.resolution_px),
            "mask_radius_px": float(self.mask_radius_px),
            "mask_edge_px": float(self.mask_edge_px),
            "work_box": int(self.work_box),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbedFrame:
        known = {"box", "resolution_px", "mask_radius_px", "mask_edge_px", "work_box"}
        if not isinstance(data, dict) or set(data) - known:
            raise ConfigError(f"malformed embedding frame {data!r}; fields {sorted(known)}")
        return cls(
            box=int(data["box"]),
            resolution_px=float(data["resolution_px"]),
            mask_radius_px=float(data["mask_radius_px"]),
            mask_edge_px=float(data.get("mask_edge_px", 3.0)),
            work_box=int(data.get("work_box", 0)),
        )


def default_work_box(box: int, resolution_px: float) -> int:
    """The smallest multiple of 8 whose grid holds the band strictly inside its Nyquist."""
    need = 2 * int(np.ceil(box / max(float(resolution_px), 2.0))) + 2
    cap = WORK_MULTIPLE * int(np.ceil(box / WORK_MULTIPLE))
    return min(WORK_MULTIPLE * int(np.ceil(need / WORK_MULTIPLE)), cap)


def band_weights(frame: EmbedFrame, device: str | torch.device = "cpu") -> torch.Tensor:
    """Float tensor (b, b, b//2+1): the band ``H`` (step 1), DC excluded."""
    b = frame.work_box
    k = rfft_frequencies(b, device).to(torch.float64) * (b / frame.box)
    r = torch.linalg.vector_norm(k, dim=-1)
    return ((r > 0) & (r <= 1.0 / float(frame.resolution_px) + 1e-9)).to(torch.float32)


def work_mask(frame: EmbedFrame) -> np.ndarray:
    """ndarray (b, b, b) float32: the soft spherical mask on the working grid."""
    s = frame.work_box / frame.box
    return spherical_mask(frame.work_box, frame.mask_radius_px * s, frame.mask_edge_px * s)


def _herm_sum(values: torch.Tensor, box: int) -> torch.Tensor:
    return (values * hermitian_weights(box, values.device)).sum(dim=(-3, -2, -1))


def particle_scales(
    spectra: torch.Tensor, wedges: torch.Tensor, average: torch.Tensor, band: torch.Tensor
) -> torch.Tensor:
    """Float tensor (n,): ``a_i`` of step 2 (``spectra``/``wedges`` (n, b, b, b//2+1), ``average``
    the average's spectrum (b, b, b//2+1))."""
    b = int(spectra.shape[1])
    wh = wedges * band
    num = _herm_sum(wh * (spectra * average.conj()).real, b)
    den = _herm_sum(wh * average.abs() ** 2, b).clamp_min(1e-12)
    power = _herm_sum(wh * spectra.abs() ** 2, b)
    # floor: a tenth of the rms ratio, so a particle unlike the average is not blown up
    floor = 0.1 * torch.sqrt(power / den) + 1e-12
    return torch.maximum(num / den, floor).to(torch.float32)


def filled_spectra(
    spectra: torch.Tensor,
    wedges: torch.Tensor,
    average: torch.Tensor,
    scales: torch.Tensor | None = None,
) -> torch.Tensor:
    """Complex tensor (n, b, b, b//2+1): ``S_i = W_i X_i / a_i + (1 - W_i) A`` (step 3).

    ``scales`` None: the spectra are already divided by ``a_i``.
    """
    if spectra.shape != wedges.shape or spectra.shape[1:] != average.shape:
        raise GeometryError(
            f"spectra {tuple(spectra.shape)}, wedges {tuple(wedges.shape)} and average "
            f"{tuple(average.shape)} must share one grid"
        )
    zero = torch.zeros((), dtype=spectra.dtype, device=spectra.device)
    x = wedges * torch.where(wedges > 0, spectra, zero)
    if scales is not None:
        x = x / scales.reshape(-1, 1, 1, 1)
    return x + (1.0 - wedges) * average


def network_input(spectra: torch.Tensor, band: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Float tensor (n, 1, b, b, b): ``m * irfft(H S)`` (step 4)."""
    b = int(spectra.shape[1])
    return (mask * centred_irfft(spectra * band, b)).unsqueeze(1)


def work_average(average: np.ndarray, frame: EmbedFrame) -> np.ndarray:
    """ndarray (b, b, b) float32: a ``(B, B, B)`` consensus average on the working grid.

    Fourier-cropped to ``b``, band-limited by ``H``, scaled to unit rms inside the mask (the
    unit in which every particle is normalised, step 2).
    """
    a = np.asarray(average, dtype=np.float32)
    if a.shape != (frame.box,) * 3:
        raise GeometryError(
            f"the average must be ({frame.box},)*3 like the particles, got {a.shape}"
        )
    spec = resize_spectra(centred_rfft(torch.as_tensor(a)[None]), frame.box, frame.work_box)
    vol = centred_irfft(spec * band_weights(frame), frame.work_box)[0].numpy()
    m = work_mask(frame)
    rms = float(np.sqrt((m * vol**2).sum() / max(m.sum(), 1e-6)))
    if not rms > 0:
        raise GeometryError("the consensus average is empty within the band and the mask")
    return (vol / rms).astype(np.float32)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch ready for the autoencoder (working grid ``b``).

    targets : complex tensor (n, b, b, b//2+1), ``W_i X_i / a_i``; wedges : float tensor
    (n, b, b, b//2+1), ``W_i``; scales : float tensor (n,), ``a_i``; inputs : float tensor
    (n, 1, b, b, b), the network inputs ``x_i`` (steps 1-4).
    """

    targets: torch.Tensor
    wedges: torch.Tensor
    scales: torch.Tensor
    inputs: torch.Tensor


def prepare_batch(
    particles: np.ndarray,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    tilt_ranges: np.ndarray,
    frame: EmbedFrame,
    average_work: np.ndarray | torch.Tensor,
    *,
    device: str | torch.device = "cpu",
) -> PreparedBatch:
    """Aligned particles ``(n, B, B, B)`` (orientations ``(n, 3)``, shifts ``(n, 3)``, tilt
    ranges ``(n, 2)``) -> :class:`PreparedBatch` on ``device``; ``average_work`` the
    :func:`work_average` ``(b, b, b)``."""
    if tuple(np.shape(particles)[1:]) != (frame.box,) * 3:
        raise GeometryError(
            f"particles must be (n, {frame.box}, {frame.box}, {frame.box}) like the model's "
            f"frame, got {tuple(np.shape(particles))}"
        )
    fs = reference_frame_spectra(
        particles,
        euler_deg,
        shifts_zyx_px,
        tilt_ranges,
        box_out=frame.work_box,
        device=device,
        max_freq=1.0 / float(frame.resolution_px),  # only the band is ever read (step 1)
        normalise=True,
    )
    band = band_weights(frame, fs.spectra.device)
    avg = torch.as_tensor(average_work, dtype=torch.float32, device=fs.spectra.device)
    a_spec = centred_rfft(avg[None])[0]
    scales = particle_scales(fs.spectra, fs.wedges, a_spec, band)
    targets = fs.spectra / scales.reshape(-1, 1, 1, 1)
    mask = torch.as_tensor(work_mask(frame), device=fs.spectra.device)
    inputs = network_input(filled_spectra(targets, fs.wedges, a_spec), band, mask)
    return PreparedBatch(targets, fs.wedges, scales, inputs)
