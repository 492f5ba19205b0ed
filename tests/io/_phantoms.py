"""Small seeded phantoms shared by the tilt-axis and alignment tests."""

from __future__ import annotations

import numpy as np

BACKGROUND = 5.0  # a bright image background, as microscopes record


def phantom(shape: tuple[int, int, int], radius: float) -> np.ndarray:
    """Seeded ellipsoids inside a disc of ``radius`` (y, x) about the centre; no symmetry."""
    rng = np.random.default_rng(7)
    Z, Y, X = shape
    z, y, x = np.ogrid[:Z, :Y, :X]
    vol = np.zeros(shape, np.float32)
    for _ in range(10):
        r_pos, phi = rng.uniform(0, radius - 4), rng.uniform(0, 2 * np.pi)
        c = (
            rng.uniform(0.35 * Z, 0.65 * Z),
            Y / 2 + r_pos * np.sin(phi),
            X / 2 + r_pos * np.cos(phi),
        )
        r = rng.uniform([1.5, 2.0, 2.0], [3.0, 4.0, 5.0])
        inside = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1
        vol += np.float32(rng.uniform(0.5, 1.5)) * inside
    return vol


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])
