"""The training samples of the picking network (:func:`cryoflow.models.picktrain.train_picker`,
its module docstring's step 2): voxels at and around the marks, random background voxels away
from the positives, rings of off-centre voxels, and blob-like candidates of the particle's
scale and polarity, of which only the reliable negatives are trained as negatives
(:func:`reliable_negatives`, positive-unlabelled data).

Positions are integer ``z, y, x`` voxels of the pyramid level the network runs at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from cryoflow.kernels.peaks import local_maxima

if TYPE_CHECKING:
    from cryoflow.models.picktrain import PickTrainParams

__all__ = ["blob_candidates", "inside_grid", "reliable_negatives", "sample_voxels"]


def _neighbours(points: np.ndarray, jitter: int) -> np.ndarray:
    r = np.arange(-jitter, jitter + 1)
    offsets = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    return (points[:, None, :] + offsets[None]).reshape(-1, 3)


def inside_grid(points: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    return points[np.all((points >= 0) & (points < np.asarray(shape)), axis=1)]


def _away(points: np.ndarray, tree: cKDTree | None, radius: float) -> np.ndarray:
    if tree is None or not len(points):
        return points
    d, _ = tree.query(points)
    return points[d > radius]


def blob_candidates(volume: np.ndarray, diameter_px: float, polarity: float) -> np.ndarray:
    """``(n, 3)`` voxels ``z, y, x``: LoG maxima of the particle's scale and polarity, the
    strongest 10 % of them, at least half a diameter apart."""
    sigma = diameter_px / (2 * np.sqrt(3))
    log = -polarity * ndimage.gaussian_laplace(np.asarray(volume, np.float32), sigma)
    peaks = local_maxima(log, min_distance=0.5 * diameter_px, threshold=-np.inf)
    if not len(peaks):
        return np.zeros((0, 3), np.int64)
    cut = np.quantile(peaks["score"].to_numpy(), 0.9)
    return peaks[peaks["score"] >= cut][["z", "y", "x"]].to_numpy(np.int64)


def _rings(centres: np.ndarray, n: int, diameter_px: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` voxels around each centre, ``0.3 .. 0.7`` diameters away in random directions."""
    if not len(centres) or n == 0:
        return np.zeros((0, 3), np.int64)
    d = rng.normal(size=(len(centres), n, 3))
    d /= np.linalg.norm(d, axis=2, keepdims=True)
    d *= rng.uniform(0.3, 0.7, size=(len(centres), n, 1)) * diameter_px
    return np.rint(centres[:, None, :] + d).astype(np.int64).reshape(-1, 3)


def sample_voxels(
    volume: np.ndarray,
    pos: np.ndarray,
    neg_marked: np.ndarray,
    diameter_px: float,
    polarity: float,
    params: PickTrainParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Sample voxels ``(n, 3)`` ``z, y, x`` of one tomogram (level grid) around its marks
    ``pos`` / ``neg_marked`` (integer ``z, y, x`` on that grid): positives, negatives (the
    first ``n_background`` of them the random background voxels), ``n_background``, and the
    blob-like candidates (negatives only where :func:`reliable_negatives` says so)."""
    shape = volume.shape
    tree = cKDTree(pos) if len(pos) else None
    positives = inside_grid(_neighbours(pos, params.jitter_px), shape)
    near = max(2.0, 0.15 * diameter_px, params.jitter_px + 1.5)
    rand = rng.uniform(0, np.asarray(shape) - 1, size=(3 * params.n_random_negatives, 3))
    background = np.rint(_away(rand, tree, near)[: params.n_random_negatives]).astype(np.int64)
    negatives = [background, inside_grid(_neighbours(neg_marked, params.jitter_px), shape)]
    negatives.append(_away(_rings(pos, params.n_ring_negatives, diameter_px, rng), tree, near))
    if params.n_blob_negatives:
        blobs = _away(blob_candidates(volume, diameter_px, polarity), tree, 0.5 * diameter_px)
        blobs = inside_grid(blobs[rng.permutation(len(blobs))[: params.n_blob_negatives]], shape)
        negatives.append(
            _away(_rings(blobs, params.n_ring_negatives, diameter_px, rng), tree, near)
        )
    else:
        blobs = np.zeros((0, 3), np.int64)
    return positives, inside_grid(np.concatenate(negatives), shape), len(background), blobs


def reliable_negatives(
    blobs: np.ndarray, marks: np.ndarray, background: np.ndarray, quantile: float
) -> np.ndarray:
    """Which blob-like candidates (descriptor rows) are reliably *not* the particle.

    Some blob-like voxels are unmarked particles of the kind (positive-unlabelled data):
    training them as negatives teaches the network to reject the particle itself. In the
    descriptors standardised by the background, a candidate is kept as a negative when its
    distance to the nearest mark exceeds the ``quantile`` of the marks' own leave-one-out
    nearest-mark distances (how far a particle of the kind typically lies from the others);
    with a single mark, the candidates farther than the median candidate.
    """
    if not len(blobs):
        return np.zeros(0, bool)
    mu, sd = background.mean(axis=0), background.std(axis=0) + 1e-6
    b, m = (blobs - mu) / sd, (marks - mu) / sd
    d = np.min(np.linalg.norm(b[:, None] - m[None], axis=2), axis=1)
    if len(m) < 2:
        return d > np.median(d)
    mm = np.linalg.norm(m[:, None] - m[None], axis=2)
    np.fill_diagonal(mm, np.inf)
    return d > np.quantile(mm.min(axis=1), quantile)
