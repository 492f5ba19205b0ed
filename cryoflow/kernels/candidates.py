"""Candidate voxels for the picker: local maxima of a blob response at the particle's scale.

The picking network (:mod:`cryoflow.models.picknet`) need not score every voxel: a particle's
centre is, to a voxel or two, a local maximum of the Laplacian of Gaussian at its scale
(``sigma = D / (2 sqrt 3)``, the scale a ball of diameter ``D`` answers most to), signed by
its polarity. The network scores only those maxima above a generous threshold (chosen from
the examples at training, :func:`cryoflow.models.picktrain.train_picker`); the blob response
finds where molecules are, the network's descriptors decide which molecule.

Rule (what makes a block read with a halo decide its core exactly as the whole volume):

* ``response = -polarity * LoG_sigma(volume)`` with the volume counted as 0 outside it (the
  normalised mean, as everywhere in picking) and the Gaussian cut at :func:`response_radius`
  voxels (at most 4 sigma, and at most the block halo less two);
* a **candidate** is a voxel whose response is finite, ``>= threshold`` and the greatest of its
  3 x 3 x 3 neighbourhood (ties: every voxel of a plateau counts; peak finding later keeps
  one pick per ``min_distance``).

So a voxel's candidacy depends on the volume within ``response_radius + 1`` voxels of it: a
block with a halo of ``h >= response_radius + 2`` voxels decides its core, and one voxel beyond
it, exactly as the whole volume would (the picker also scores a candidate's 26 neighbours,
:meth:`cryoflow.models.picknet.PickNet.candidates`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cryoflow.errors import ConfigError
from cryoflow.kernels._guards import refuse_lazy

__all__ = ["blob_response", "candidate_voxels", "particle_sigma", "response_radius"]


def particle_sigma(diameter_px: float) -> float:
    """The LoG's scale for a particle of ``diameter_px``: ``D / (2 sqrt 3)`` (a ball's)."""
    return float(diameter_px) / (2.0 * np.sqrt(3.0))


def response_radius(diameter_px: float, halo: int) -> int:
    """Voxels the response's Gaussian reaches: ``min(ceil(4 sigma), halo - 2)`` (>= 1)."""
    if halo < 3:
        raise ConfigError(f"the candidate response needs a halo of >= 3 voxels, got {halo}")
    return int(max(1, min(int(np.ceil(4 * particle_sigma(diameter_px))), halo - 2)))


def blob_response(
    volume: np.ndarray, diameter_px: float, polarity: float, radius: int
) -> np.ndarray:
    """ndarray like ``volume`` float32: ``-polarity * LoG`` at the particle's scale, zeros
    outside the volume, the Gaussian cut at ``radius`` voxels."""
    refuse_lazy(volume, "blob_response")
    sigma = particle_sigma(diameter_px)
    v = np.asarray(volume, dtype=np.float32)
    # scipy's kernel radius is int(truncate * sigma + 0.5): this gives exactly `radius`
    log = ndimage.gaussian_laplace(v, sigma, mode="constant", cval=0.0, truncate=radius / sigma)
    return (-float(polarity) * log).astype(np.float32)


def candidate_voxels(
    volume: np.ndarray,
    diameter_px: float,
    polarity: float,
    threshold: float,
    *,
    radius: int,
    margin: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(points (n, 3) int64 z, y, x, responses (n,) float32)``: the candidates (module
    docstring; the response cut at ``radius``, :func:`response_radius`) at least ``margin``
    voxels inside ``volume`` (a block with its halo: ``margin`` is the halo and must exceed
    ``radius``; a whole volume: 0, the outside counting as 0)."""
    refuse_lazy(volume, "candidate_voxels")
    if margin and radius >= margin:
        raise ConfigError(f"the response radius {radius} must be below the block margin {margin}")
    v = np.asarray(volume, dtype=np.float32)
    if not margin:  # the outside counts as 0, its response too: the rule of a block's halo
        pts, resp = _maxima(np.pad(v, 1), diameter_px, polarity, threshold, radius, 1)
        return pts - 1, resp
    return _maxima(v, diameter_px, polarity, threshold, radius, margin)


def _maxima(
    v: np.ndarray, diameter_px: float, polarity: float, threshold: float, radius: int, margin: int
) -> tuple[np.ndarray, np.ndarray]:
    resp = blob_response(v, diameter_px, polarity, radius)
    top = ndimage.maximum_filter(resp, size=3, mode="constant", cval=-np.inf)
    keep = np.isfinite(resp) & (resp >= threshold) & (resp >= top)
    inner = np.zeros_like(keep)
    inner[tuple(slice(margin, n - margin) for n in v.shape)] = True
    keep &= inner
    pts = np.argwhere(keep).astype(np.int64)
    return pts, resp[keep].astype(np.float32)
