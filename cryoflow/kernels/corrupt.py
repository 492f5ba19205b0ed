"""Corrupt true 2D masks the way a 2D segmenter errs (seeded, eager NumPy).

Used to make realistic inputs for the paper's Algorithm 1 from simulator truth. Three kinds
of error, each with a named strength:

1. ragged borders: every pixel within ``border_px`` of the mask boundary (inside or outside)
   is flipped with probability ``border_flip``;
2. missed pixels: clumps of the mask are dropped where a smooth random field
   (Gaussian-filtered white noise, ``clump_sigma_px``) falls in its lowest ``miss_fraction``
   quantile;
3. false blobs: ``false_blobs`` discs of radius ``blob_radius_px`` (+-50 %) are added per tilt
   at uniformly random positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cryoflow.kernels._guards import refuse_lazy

__all__ = ["DEMO_ERRORS", "MaskErrors", "corrupt_masks"]


@dataclass(frozen=True)
class MaskErrors:
    """The strengths of the three kinds of error (see the module docstring).

    ``false_blobs`` is the mean number of blobs per tilt (Poisson).
    """

    border_px: int = 1
    border_flip: float = 0.3
    miss_fraction: float = 0.05
    clump_sigma_px: float = 1.5
    false_blobs: float = 1.0
    blob_radius_px: float = 2.0


DEMO_ERRORS = MaskErrors()  # the strengths the demo and the tests corrupt with


def corrupt_masks(
    masks: np.ndarray, *, seed: int = 0, errors: MaskErrors = DEMO_ERRORS
) -> np.ndarray:
    """Return a corrupted copy of per-tilt binary masks.

    Parameters
    ----------
    masks : ndarray of shape (n_tilts, Y, U), bool
    seed : int
        Seed of the local RNG; the same seed gives the same corruption.
    errors : MaskErrors
        Error strengths (default :data:`DEMO_ERRORS`).

    Returns
    -------
    ndarray of shape (n_tilts, Y, U), bool
    """
    refuse_lazy(masks, "corrupt_masks")
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (n_tilts, Y, U), got {masks.shape}")
    rng = np.random.default_rng(seed)
    e = errors
    n, Y, U = masks.shape
    out = masks.copy()
    yy, xx = np.mgrid[0:Y, 0:U]
    for t in range(n):
        m = masks[t]
        # 1. ragged borders
        if e.border_px > 0 and e.border_flip > 0:
            band = ndimage.binary_dilation(m, iterations=e.border_px) & ~ndimage.binary_erosion(
                m, iterations=e.border_px, border_value=1
            )
            flip = band & (rng.random((Y, U)) < e.border_flip)
            out[t] ^= flip
        # 2. missed clumps
        if e.miss_fraction > 0 and m.any():
            field = ndimage.gaussian_filter(rng.standard_normal((Y, U)), e.clump_sigma_px)
            cut = np.quantile(field[m], e.miss_fraction)
            out[t] &= ~(m & (field <= cut))
        # 3. false blobs
        for _ in range(rng.poisson(e.false_blobs)):
            cy, cx = rng.uniform(0, Y), rng.uniform(0, U)
            r = e.blob_radius_px * rng.uniform(0.5, 1.5)
            out[t] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return out
