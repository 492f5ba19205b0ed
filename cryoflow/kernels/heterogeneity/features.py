"""Wedge-filled feature vectors of aligned particles: the input of the PCA.

For particle ``p`` with consensus pose ``(M, s)`` and wedge ``W_p``, in the reference frame
(the averaging sums' rule, :func:`~cryoflow.kernels.average.reference_frame_spectra`):

    X_p(q) = P~(M q) e^{2 pi i (M q).s}  +  (1 - W~_p(M q)) A(q)

the particle's measured components where it has them and the consensus average ``A``'s
where it has not (*filling from the average*). ``P~`` is the particle's wedge-masked,
oversampled transform interpolated at ``M q`` and ``W~_p`` its wedge interpolated the same
way (:func:`~cryoflow.kernels.average.reference_frame_spectra` with ``soft_weight``), so at
the wedge's edges the particle's part and the fill blend; with the exact binary weight
there the interpolated data fall short and the fill does not make up for it (measured: one
map in eight poses with +-60 degree wedges, the features' spread about their mean is 0.18 of
the mean's norm with the interpolated weight, 0.37 with the exact one, 1.07 unfilled, 0.04
with no wedge, where only interpolation differs). Then ``x_p = mask * irfft(X_p)`` and the
feature vector is the band of ``rfft(x_p)`` (``highpass < |k| <= 1/resolution_px``, the
averaging score's band cube), real and imaginary parts times ``sqrt`` of each component's
Hermitian multiplicity, so Euclidean distances between features are real-space distances of
the band-limited, masked, wedge-filled particles.

Why filling and not a wedge-masked correlation matrix: filling is linear per particle, so the
covariance (and its randomized sketch, :mod:`.pca`) accumulates batch by batch with memory
bounded by the band, not by the number of particles; a pairwise constrained-correlation matrix
needs ``n^2`` rotated pairs and ``n^2`` memory. The filled components carry no variance of
their own (they equal the average in every particle), so the principal components are made of
what the particles measured, and the orientation of each missing wedge does not show up as a
class (it does, unfilled: a particle's zeros in its wedge differ from the others' data there).
"""

from __future__ import annotations

import numpy as np
import torch

from cryoflow.errors import GeometryError
from cryoflow.geometry.symmetry import parse_symmetry
from cryoflow.kernels.average import reference_frame_spectra
from cryoflow.kernels.fourier_rotate import (
    as_tensor,
    box_side,
    centred_irfft,
    centred_rfft,
    hermitian_weights,
)
from cryoflow.kernels.reference_frame import checked_poses
from cryoflow.kernels.score import band_cube


def _band(
    box: int, resolution_px: float, highpass_px: float | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """rfft flat indices (C',) of the band's components and their ``sqrt(herm)`` (C',)."""
    _, idx, _, band = band_cube(box, resolution_px, device, highpass_px)
    keep = band > 0
    herm = hermitian_weights(box, device).reshape(-1)[idx[keep]]
    return idx[keep], torch.sqrt(herm).to(torch.float64)


def feature_dimension(box: int, resolution_px: float, highpass_px: float | None = None) -> int:
    """``D``: the length of a feature vector (twice the band's rfft components)."""
    idx, _ = _band(int(box), resolution_px, highpass_px, torch.device("cpu"))
    return 2 * int(idx.numel())


def features_batch(
    particles: np.ndarray,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    tilt_ranges: np.ndarray,
    *,
    average: np.ndarray,
    mask: np.ndarray,
    resolution_px: float,
    highpass_px: float | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """ndarray (n, D) float32: the wedge-filled feature vectors of a batch (module docstring).

    Parameters
    ----------
    particles : ndarray of shape (n, B, B, B)
    euler_deg, shifts_zyx_px : ndarray of shape (n, 3)
        The consensus alignment (contract convention).
    tilt_ranges : ndarray of shape (n, 2)
    average : ndarray of shape (B, B, B)
        The consensus average (fills each particle's missing wedge).
    mask : ndarray of shape (B, B, B)
        Soft mask on the reference frame (what the PCA looks at).
    resolution_px, highpass_px : float
        The band: periods in voxels (``highpass_px`` None drops only DC).
    """
    v = as_tensor(particles, device, torch.float32)
    box = box_side(v)
    n = v.shape[0]
    e, s, tr = checked_poses(n, euler_deg, shifts_zyx_px, tilt_ranges)
    if np.shape(average) != (box,) * 3 or np.shape(mask) != (box,) * 3:
        raise GeometryError(
            f"average and mask must be ({box}, {box}, {box}), got {np.shape(average)} and "
            f"{np.shape(mask)}"
        )
    dev = v.device
    avg = centred_rfft(as_tensor(average, dev, torch.float64)[None]).reshape(-1)
    msk = as_tensor(mask, dev, torch.float64)
    idx, root = _band(box, resolution_px, highpass_px, dev)
    out = np.empty((n, 2 * int(idx.numel())), np.float32)
    shape = (1, box, box, box // 2 + 1)
    for i, data, weight in reference_frame_spectra(
        v, e, s, tr, group=parse_symmetry("C1"), soft_weight=True
    ):
        filled = data + (1.0 - weight) * avg
        x = centred_irfft(filled.reshape(shape), box)[0] * msk
        spec = centred_rfft(x[None]).reshape(-1)[idx] * root
        out[i] = torch.cat([spec.real, spec.imag]).cpu().numpy()
    return out


def features_to_volumes(
    vectors: np.ndarray, box: int, resolution_px: float, highpass_px: float | None = None
) -> np.ndarray:
    """ndarray (L, B, B, B) float32: feature-space vectors (L, D) back as real-space maps
    (eigenvolumes, the mean): the inverse of the band extraction, zero outside the band."""
    vec = np.asarray(vectors, dtype=np.float64)
    vec = vec[None] if vec.ndim == 1 else vec
    dev = torch.device("cpu")
    idx, root = _band(int(box), resolution_px, highpass_px, dev)
    c = int(idx.numel())
    if vec.shape[-1] != 2 * c:
        raise GeometryError(
            f"feature vectors of a {box}^3 box in this band have length {2 * c}, got "
            f"{vec.shape[-1]}"
        )
    t = torch.as_tensor(vec)
    spec = torch.complex(t[:, :c], t[:, c:]) / root
    full = torch.zeros((len(vec), box * box * (box // 2 + 1)), dtype=torch.complex128)
    full[:, idx] = spec
    maps = centred_irfft(full.reshape(len(vec), box, box, box // 2 + 1), int(box))
    return maps.numpy().astype(np.float32)
