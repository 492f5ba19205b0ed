"""Image standardisation and training-time augmentation (eager NumPy, seeded Generators).

Augmentations act on a batch of boxes ``(N, h, w)`` with their masks ``(N, h, w)``: the eight
rotations/flips of the square (masks follow), additive Gaussian noise and a random contrast
change (gain and offset; masks unchanged).
"""

from __future__ import annotations

import numpy as np

from cryoflow.kernels._guards import eager_stack, refuse_lazy


def standardize(images: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance float32 copy of each image.

    Parameters
    ----------
    images : ndarray of shape (N, Y, X)

    Returns
    -------
    ndarray of shape (N, Y, X), float32
    """
    a = eager_stack(images, "images", "(N, Y, X)")
    mean = a.mean(axis=(1, 2), keepdims=True)
    std = a.std(axis=(1, 2), keepdims=True)
    return ((a - mean) / np.maximum(std, 1e-6)).astype(np.float32)


def augment(
    boxes: np.ndarray,
    masks: np.ndarray,
    rng: np.random.Generator,
    *,
    noise_sigma: float = 0.3,
    contrast_range: tuple[float, float] = (0.7, 1.4),
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly rotated/flipped, noisier, contrast-changed copies of ``boxes`` and their masks.

    Parameters
    ----------
    boxes : ndarray of shape (N, h, w), float
        Standardised image boxes; rotations by 90 degrees need ``h == w``.
    masks : ndarray of shape (N, h, w)
        Masks moved together with the boxes.
    rng : numpy.random.Generator
        The only source of randomness.
    noise_sigma : float
        Upper bound of the added Gaussian noise's standard deviation (in image std units).
    contrast_range : (float, float)
        Range of the multiplicative gain; an offset in ``[-0.2, 0.2]`` is added too.

    Returns
    -------
    (ndarray of shape (N, h, w) float32, ndarray of shape (N, h, w) same dtype as masks)
    """
    refuse_lazy(boxes, "boxes")
    refuse_lazy(masks, "masks")
    x = np.asarray(boxes, dtype=np.float32)
    m = np.asarray(masks)
    if x.shape != m.shape or x.ndim != 3:
        raise ValueError(f"boxes and masks must share shape (N, h, w), got {x.shape}, {m.shape}")
    out_x = np.empty_like(x)
    out_m = np.empty_like(m)
    square = x.shape[1] == x.shape[2]
    for i in range(x.shape[0]):
        # 1. one of the square's symmetries (rotations only when the box is square)
        k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
        xi, mi = np.rot90(x[i], k), np.rot90(m[i], k)
        if rng.random() < 0.5:
            xi, mi = xi[:, ::-1], mi[:, ::-1]
        # 2. contrast: gain and offset
        gain = rng.uniform(*contrast_range)
        offset = rng.uniform(-0.2, 0.2)
        # 3. additive Gaussian noise of a random strength
        sigma = rng.uniform(0.0, noise_sigma)
        out_x[i] = gain * xi + offset + sigma * rng.standard_normal(xi.shape, dtype=np.float32)
        out_m[i] = mi
    return out_x, out_m
