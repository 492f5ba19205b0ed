"""Trivial non-linear filters: the peers a learned missing-wedge filling must beat.

A non-linear point operation on a wedge-limited tomogram puts power into the missing wedge
(products of measured components land there), and on dense positive structures that power is
correlated with the truth. Both filters take an eager ``(Z, Y, X)`` volume and return float32
of the same shape; they refuse Dask input.

- :func:`blur_threshold`: Gaussian blur, then 1 where above a quantile of the blurred values.
- :func:`rectified_square`: (optionally blurred) ``max(v - median(v), 0) ** 2``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cryoflow.errors import ConfigError
from cryoflow.kernels._guards import eager_volume


def blur_threshold(
    volume: np.ndarray, *, sigma_px: float = 1.5, quantile: float = 0.7
) -> np.ndarray:
    """ndarray of float32, shape (Z, Y, X): ``gaussian(volume, sigma_px) > q``, as 0/1.

    ``q`` is the ``quantile`` of the blurred values (structure denser than the background is
    positive: pass ``-volume`` for dark-on-bright data).
    """
    vol = eager_volume(volume, "blur_threshold", error=ConfigError)
    if not 0.0 < quantile < 1.0 or not sigma_px >= 0:
        raise ConfigError(f"need 0 < quantile < 1 and sigma_px >= 0, got {quantile}, {sigma_px}")
    g = ndimage.gaussian_filter(vol, sigma_px) if sigma_px > 0 else vol
    return (g > np.quantile(g, quantile)).astype(np.float32)


def rectified_square(volume: np.ndarray, *, sigma_px: float = 0.0) -> np.ndarray:
    """ndarray of float32, shape (Z, Y, X): ``max(v - median(v), 0) ** 2`` of the blurred volume."""
    vol = eager_volume(volume, "rectified_square", error=ConfigError)
    if not sigma_px >= 0:
        raise ConfigError(f"sigma_px must be >= 0, got {sigma_px}")
    g = ndimage.gaussian_filter(vol, sigma_px) if sigma_px > 0 else vol
    return (np.maximum(g - np.median(g), 0.0) ** 2).astype(np.float32)
