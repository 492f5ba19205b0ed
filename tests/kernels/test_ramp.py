"""Ramp filter: background independence (real tilt images sit on a bright background)."""

from __future__ import annotations

import numpy as np

from cryoflow.kernels.ramp import ramp_filter


def test_constant_background_nearly_vanishes() -> None:
    images = np.full((2, 3, 64), 100.0, dtype=np.float32)
    out = ramp_filter(images)
    assert np.abs(out).max() < 1e-2 * 100.0


def test_background_does_not_change_interior_response() -> None:
    rng = np.random.default_rng(0)
    signal = np.zeros((1, 4, 80), dtype=np.float32)
    signal[..., 30:50] = rng.random((1, 4, 20))
    a = ramp_filter(signal)
    b = ramp_filter(signal + 50.0)
    # away from the borders the filtered images agree up to a tiny constant offset
    diff = (b - a)[..., 10:70]
    assert np.abs(diff - diff.mean()).max() < 0.05 * np.abs(a).max()


def test_impulse_response_is_the_ram_lak_kernel() -> None:
    row = np.zeros((1, 1, 41), dtype=np.float32)
    row[0, 0, 20] = 1.0
    out = ramp_filter(row)[0, 0]
    assert np.isclose(out[20], 0.25, atol=1e-6)
    assert np.isclose(out[21], -1.0 / np.pi**2, atol=1e-6)
    assert np.isclose(out[22], 0.0, atol=1e-6)
