"""Figures of an average against a known truth (phantoms): registration, FSC, orientation error.

A template-free average lies in a frame of its own, so it is first *registered* to the truth:
the average is aligned like a particle with no missing wedge (tilt range -90..90) against the
truth (global grid, then local levels), then rotated and shifted into the truth's frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryoflow.geometry.orientation_error import orientation_errors_deg
from cryoflow.geometry.rotation import matrix_xyz_from_euler, matrix_zyx_from_euler
from cryoflow.kernels.align import RoundReferences, SearchParams, align_batch
from cryoflow.kernels.fourier_rotate import rotate_volumes
from cryoflow.kernels.fsc import fsc
from cryoflow.kernels.masks import spherical_mask


def shift_volume(volume: np.ndarray, shift_zyx_px: np.ndarray) -> np.ndarray:
    """ndarray (B, B, B): ``out(r) = volume(r - shift)`` (a Fourier phase ramp, periodic)."""
    v = np.asarray(volume, dtype=np.float64)
    k = np.meshgrid(
        *(np.fft.fftfreq(n) for n in v.shape[:2]), np.fft.rfftfreq(v.shape[2]), indexing="ij"
    )
    ph = np.exp(-2j * np.pi * sum(ki * si for ki, si in zip(k, shift_zyx_px, strict=True)))
    return np.fft.irfftn(np.fft.rfftn(v) * ph, s=v.shape).astype(np.float32)


def register_to(
    volume: np.ndarray,
    truth: np.ndarray,
    *,
    step_deg: float = 10.0,
    resolution_px: float = 3.0,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``volume`` moved into ``truth``'s frame.

    Returns the registered volume (B, B, B), the rotation ``R`` (3, 3, on ``(x, y, z)``) and
    shift (3,) ``(z, y, x)`` with ``volume(r) ~ truth(R^-1 (r - s))``.
    """
    box = truth.shape[0]
    refs = RoundReferences(
        np.asarray(truth, np.float32)[None],
        spherical_mask(box, box / 2.0 - 3.0, 2.0),
        resolution_px,
    )
    search = SearchParams(step_deg, ((4.0, 8.0), (1.5, 3.0), (0.5, 1.0)), box / 4.0, top_k=3)
    res = align_batch(
        np.asarray(volume)[None], np.array([[-90.0, 90.0]]), refs, search, device=device
    )
    m_zyx = matrix_zyx_from_euler(res.euler_deg[0])
    shifted = shift_volume(volume, -res.shifts_zyx_px[0])
    registered = rotate_volumes(shifted, m_zyx.T, device=device)
    return registered, matrix_xyz_from_euler(res.euler_deg[0]), res.shifts_zyx_px[0]


@dataclass(frozen=True)
class TruthFigures:
    """Median orientation error (deg) and the average's FSC-0.5 resolution against the truth."""

    orientation_error_deg: float
    average_fsc05_px: float
    registered: np.ndarray


def truth_figures(
    average: np.ndarray,
    truth: np.ndarray,
    est_euler_deg: np.ndarray,
    true_euler_deg: np.ndarray,
    *,
    symmetry: str = "C1",
    template_free: bool = True,
    mask: np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> TruthFigures:
    """The demo's figures of an average (B, B, B) and its particles' orientations (n, 3)."""
    registered = (
        register_to(average, truth, device=device)[0] if template_free else np.asarray(average)
    )
    errors, _ = orientation_errors_deg(
        matrix_xyz_from_euler(est_euler_deg),
        matrix_xyz_from_euler(true_euler_deg),
        symmetry=symmetry,
        align_frame=template_free,
    )
    curve = fsc(registered, truth, mask)
    return TruthFigures(float(np.median(errors)), curve.resolution_px(0.5), registered)
