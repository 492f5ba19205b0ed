"""Tiny synthetic 'tilt images' for the model tests: bright discs of varying size in noise.

Kept apart from the simulator so the model tests isolate the networks; the pipeline tests use
the real simulator.
"""

from __future__ import annotations

import numpy as np


def blob_images(
    n: int, rng: np.random.Generator, size: int = 48, n_blobs: int = 3, contrast: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, size, size)`` float32 and masks ``(n, size, size)`` bool.

    Discs (the feature) are bright; rings of the same brightness (a decoy feature) are not
    in the mask, so a network must use shape, not brightness alone.
    """
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(0.0, 1.0, (n, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        for _ in range(n_blobs):
            cy, cx = rng.uniform(6, size - 6, 2)
            r = rng.uniform(3, 5.5)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            masks[i] |= disc
        cy, cx = rng.uniform(8, size - 8, 2)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        ring = (d2 < 7.0**2) & (d2 > 5.5**2) & ~masks[i]
        images[i] += contrast * (masks[i] | ring)
    return images, masks
