"""Coordinates and scale of the picking network: pyramid levels, normalisation, and the
particle diameter estimated from the marks (:func:`estimate_diameter_px`).

Coordinates are ``x, y, z`` in level-0 voxels; a level-``k`` voxel ``i`` sits at level-0
``i * 2^k + (2^k - 1) / 2`` (the OME-Zarr pyramid's averaging).
"""

from __future__ import annotations

import numpy as np

from cryoflow.errors import ConfigError

__all__ = [
    "MIN_DIAMETER_PX",
    "choose_level",
    "estimate_diameter_px",
    "level_to_voxels",
    "level_zyx",
    "normalise",
    "voxels_to_level",
]

#: the network runs at the coarsest pyramid level where the particle is at least this wide
MIN_DIAMETER_PX = 16.0


# ---------------------------------------------------------------------------- coordinates
def voxels_to_level(xyz: np.ndarray, level: int) -> np.ndarray:
    """Level-0 ``(n, 3)`` ``x, y, z`` -> level-``level`` voxel positions (float)."""
    f = 2.0**level
    return (np.asarray(xyz, dtype=np.float64) - (f - 1) / 2) / f


def level_to_voxels(xyz: np.ndarray, level: int) -> np.ndarray:
    """Level-``level`` ``(n, 3)`` positions -> level-0 ``x, y, z`` voxels."""
    f = 2.0**level
    return np.asarray(xyz, dtype=np.float64) * f + (f - 1) / 2


def choose_level(diameter_px0: float, n_levels: int = 3) -> int:
    """The coarsest level ``< n_levels`` where the diameter is still >= :data:`MIN_DIAMETER_PX`."""
    level = (
        int(np.floor(np.log2(max(diameter_px0, 1.0) / MIN_DIAMETER_PX))) if diameter_px0 > 0 else 0
    )
    return int(np.clip(level, 0, n_levels - 1))


def level_zyx(xyz: np.ndarray, level: int) -> np.ndarray:
    """Level-0 ``(n, 3)`` ``x, y, z`` -> the nearest level-``level`` voxels ``z, y, x``."""
    return np.rint(voxels_to_level(xyz, level)[:, ::-1]).astype(np.int64)


def normalise(volume: np.ndarray) -> np.ndarray:
    """``(volume - mean) / std`` as float32 (the per-tomogram normalisation)."""
    v = np.asarray(volume, dtype=np.float32)
    sd = float(v.std(dtype=np.float64))
    return ((v - float(v.mean(dtype=np.float64))) / (sd if sd > 0 else 1.0)).astype(np.float32)


# ---------------------------------------------------------------------------- scale
def _log_at_centre(crop: np.ndarray, sigma: float) -> float:
    """The Laplacian of Gaussian of a cube's centre voxel (separable Gaussian kernels; the cube
    reaches at least 4 sigma beyond the centre, so this equals the whole volume's LoG there)."""
    n = crop.shape[0]
    t = np.arange(n, dtype=np.float64) - n // 2
    g = np.exp(-(t**2) / (2 * sigma**2))
    g /= g.sum()
    g2 = g * (t**2 - sigma**2) / sigma**4
    c = crop.astype(np.float64)
    return float(
        np.einsum("zyx,z,y,x->", c, g2, g, g)
        + np.einsum("zyx,z,y,x->", c, g, g2, g)
        + np.einsum("zyx,z,y,x->", c, g, g, g2)
    )


def polarity_at_scale(volume: np.ndarray, positives_zyx: np.ndarray, diameter_px: float) -> float:
    """``+1`` (particles brighter than their surroundings) or ``-1``: the sign of the mean
    ``-LoG`` at the positives at the particle's own scale (``sigma = D / (2 sqrt 3)``).

    Measured at the known scale, not at the scale of the strongest response: in a crowded
    tomogram the strongest ``|LoG|`` over all scales can be a larger scale's, where the
    neighbourhood of a particle (its crowded neighbours) sets the sign, not the particle.
    """
    vol = np.asarray(volume, dtype=np.float32)
    pts = np.rint(np.asarray(positives_zyx, dtype=np.float64)).astype(np.int64).reshape(-1, 3)
    if not len(pts):
        raise ConfigError("at least one positive example is needed to measure the polarity")
    sigma = float(diameter_px) / (2.0 * np.sqrt(3.0))
    r = int(np.ceil(4 * sigma))
    padded = np.pad(vol, r, mode="reflect")
    total = sum(
        _log_at_centre(padded[a : a + 2 * r + 1, b : b + 2 * r + 1, c : c + 2 * r + 1], sigma)
        for a, b, c in pts
    )
    return float(-np.sign(total) or 1.0)


def estimate_diameter_px(volume: np.ndarray, positives_zyx: np.ndarray) -> tuple[float, float]:
    """``(diameter in voxels, polarity)`` from the scale-normalised LoG at the positives.

    A ball of radius ``r`` gives the strongest ``sigma^2 |LoG_sigma|`` at ``sigma = r / sqrt 3``:
    the diameter is ``2 sqrt(3) sigma*`` for the sigma (1 voxel to the smaller of 16 and an
    eighth of the volume's smallest side, 24 steps) whose mean response over the positives is
    largest; polarity ``+1`` when particles are brighter than their surroundings, ``-1`` when
    darker. (For a non-spherical particle this is the diameter of a ball of about its volume.)
    """
    vol = np.asarray(volume, dtype=np.float32)
    pts = np.rint(np.asarray(positives_zyx, dtype=np.float64)).astype(np.int64).reshape(-1, 3)
    if not len(pts):
        raise ConfigError("at least one positive example is needed to estimate the particle size")
    top = float(np.clip(min(vol.shape) / 8.0, 1.5, 16.0))
    sigmas = np.geomspace(1.0, top, 24)
    h = int(np.ceil(4 * sigmas[-1]))
    padded = np.pad(vol, h, mode="reflect")
    mean = np.zeros(len(sigmas))
    for k, sigma in enumerate(sigmas):
        r = int(np.ceil(4 * sigma))
        for a, b, c in pts + h:
            crop = padded[a - r : a + r + 1, b - r : b + r + 1, c - r : c + r + 1]
            mean[k] += sigma * sigma * _log_at_centre(crop, float(sigma)) / len(pts)
    k = int(np.argmax(np.abs(mean)))
    return float(2 * np.sqrt(3) * sigmas[k]), float(-np.sign(mean[k]) or 1.0)
