"""Polarity of the examples measured at the particle's own scale (models/pickscale.py)."""

from __future__ import annotations

import numpy as np

from cryoflow.models.pickscale import polarity_at_scale


def _hollow() -> tuple[np.ndarray, np.ndarray]:
    """Bright 6-voxel balls, each inside a brighter crowded shell (radius 6..10): at large
    scales the centre is a hollow, at the ball's own scale a peak."""
    rng = np.random.default_rng(3)
    n = 64
    z, y, x = np.mgrid[:n, :n, :n]
    vol = rng.normal(0, 0.05, (n, n, n)).astype(np.float32)
    centres = np.array([[20, 20, 20], [44, 44, 44], [20, 44, 32]])
    for c in centres:
        r = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2)
        vol[r <= 3] += 1.0
        vol[(r >= 6) & (r <= 10)] += 2.0
    return vol, centres


def test_polarity_at_scale_sees_the_particle_not_its_neighbourhood() -> None:
    vol, centres = _hollow()
    assert polarity_at_scale(vol, centres, 6.0) == 1.0
    assert polarity_at_scale(-vol, centres, 6.0) == -1.0
