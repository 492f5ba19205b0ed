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
    return np.fft.irfftn(np.fft.rfftn(v) * ph, s=v.shape, axes=(0, 1, 2)).astype(np.float32)


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
    """Median orientation error (deg), median error of the direction of one body axis (deg),
    the average's FSC-0.5 resolution against the truth (voxels), the registered average and
    every particle's orientation error."""

    orientation_error_deg: float
    axis_error_deg: float
    average_fsc05_px: float
    registered: np.ndarray
    errors_deg: np.ndarray


def truth_figures(
    average: np.ndarray,
    truth: np.ndarray,
    est_euler_deg: np.ndarray,
    true_euler_deg: np.ndarray,
    *,
    symmetry: str = "C1",
    template_free: bool = True,
    mask: np.ndarray | None = None,
    axis_xyz: tuple[float, float, float] = (1.0, 0.0, 0.0),
    device: str | torch.device = "cpu",
) -> TruthFigures:
    """The demo's figures of an average (B, B, B) and its particles' orientations (n, 3).

    Template-free, the average is registered to the truth first and the particles'
    orientations are taken into the truth's frame with the same rotation (``R_est R_map``).
    ``axis_error_deg``: the angle between where the estimated and the true orientations send
    the body axis ``axis_xyz`` (for a shape nearly symmetric about that axis the rotation about
    it is barely determined, and this is the figure that still says whether the shape lies
    right). Symmetry is ignored for the axis error.
    """
    est = matrix_xyz_from_euler(est_euler_deg)
    tru = matrix_xyz_from_euler(true_euler_deg)
    if template_free:
        registered, r_map, _ = register_to(average, truth, device=device)
        est = est @ r_map
    else:
        registered = np.asarray(average)
    errors, _ = orientation_errors_deg(est, tru, symmetry=symmetry)
    a = np.asarray(axis_xyz, dtype=float) / np.linalg.norm(axis_xyz)
    cos = np.clip(np.einsum("nij,j,nik,k->n", est, a, tru, a), -1.0, 1.0)
    curve = fsc(registered, truth, mask)
    return TruthFigures(
        float(np.median(errors)),
        float(np.degrees(np.median(np.arccos(cos)))),
        curve.resolution_px(0.5),
        registered,
        errors,
    )
