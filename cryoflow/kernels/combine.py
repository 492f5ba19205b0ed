"""Multi-feature combination: each pixel takes the best-scoring feature above its threshold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryoflow.kernels._guards import refuse_lazy


def combine_features(probabilities: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Label map from per-feature probability maps.

    A pixel takes label ``f + 1`` for the feature ``f`` with the highest probability among the
    features whose probability exceeds their own threshold; ``0`` (background) when none does.
    Ties go to the lower feature index.

    Parameters
    ----------
    probabilities : ndarray of shape (F, ...), uint8 (0..255) or float (0..1)
        One probability map per feature, all the same shape (e.g. ``(F, tilt, y, x)``).
    thresholds : sequence of F floats in [0, 1]
        Per-feature thresholds on the probability scale.

    Returns
    -------
    ndarray of shape (...), uint8 (F <= 254) with values ``0..F``.
    """
    refuse_lazy(probabilities, "probabilities")
    p = np.asarray(probabilities)
    thr = np.asarray(thresholds, dtype=np.float64)
    if p.ndim < 1 or thr.shape != (p.shape[0],):
        raise ValueError(
            f"need one threshold per feature: {p.shape[0] if p.ndim else 0} maps, {thr.shape} thresholds"
        )
    if not 1 <= p.shape[0] <= 254:
        raise ValueError(f"1..254 features are supported, got {p.shape[0]}")
    if np.any((thr < 0) | (thr > 1)):
        raise ValueError(f"thresholds must lie in [0, 1], got {thr.tolist()}")
    scale = 255.0 if p.dtype == np.uint8 else 1.0
    score = p.astype(np.float32) / np.float32(scale)
    above = score > thr.reshape((-1,) + (1,) * (p.ndim - 1))
    masked = np.where(above, score, -1.0)
    best = np.argmax(masked, axis=0)  # first index wins ties
    return np.where(above.any(axis=0), best + 1, 0).astype(np.uint8)
