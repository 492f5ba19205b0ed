"""FSC: identical maps give 1, independent noise ~0; crossings; low-pass; masks."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.kernels.fsc import FSCCurve, fsc, lowpass
from cryoflow.kernels.masks import auto_mask, mask_radius_px, spherical_mask


def test_identical_maps_correlate_fully() -> None:
    v = np.random.default_rng(0).normal(size=(24, 24, 24))
    c = fsc(v, v)
    np.testing.assert_allclose(c.fsc[1:], 1.0, atol=1e-9)
    assert c.resolution_px(0.143) == 2.0 and c.resolution_angstrom(0.5, 7.0) == 14.0
    assert len(c.frequency) == 13 and c.frequency[-1] == 0.5


def test_independent_noise_is_uncorrelated() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 32, 32, 32))
    c = fsc(a, b)
    # shell i holds ~4 pi i^2 independent components: |FSC| ~ 1/sqrt(2 pi i^2)
    shells = np.arange(4, 17)
    assert np.all(np.abs(c.fsc[shells]) < 4.0 / np.sqrt(2 * np.pi * shells**2))
    assert c.resolution_px(0.5) > 8.0  # crosses at once


def test_crossing_is_interpolated() -> None:
    curve = FSCCurve(np.arange(9) / 16, np.array([1, 1, 0.9, 0.7, 0.3, 0.1, 0, 0, 0]), 16)
    assert curve.resolution_px(0.5) == pytest.approx(16 / 3.5)
    assert curve.resolution_px(0.143) == pytest.approx(16 / (4 + 0.157 / 0.2))


def test_lowpass_keeps_low_and_removes_high_frequencies() -> None:
    rng = np.random.default_rng(2)
    v = rng.normal(size=(32, 32, 32)).astype(np.float32)
    lp = lowpass(v, 8.0)
    c = fsc(lp, v)
    assert c.fsc[1:3].min() > 0.999 and np.abs(np.fft.rfftn(lp))[8:24, 8:24, 8:].max() < 1e-3
    with pytest.raises(GeometryError, match="period > 0"):
        lowpass(v, 0.0)


def test_masked_fsc_and_shapes() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(size=(16, 16, 16))
    m = spherical_mask(16, 5, 2)
    assert fsc(v, v, m).fsc[1:].min() > 0.999
    with pytest.raises(GeometryError, match="two cubic maps"):
        fsc(v, v[:8])
    with pytest.raises(TypeError, match="lazy Dask"):
        fsc(da.zeros((8, 8, 8)), np.zeros((8, 8, 8)))


def test_masks() -> None:
    m = spherical_mask(24, 6.0, 3.0)
    assert m[12, 12, 12] == 1.0 and m[12, 12, 18] == 1.0 and m[12, 12, 22] == 0.0
    assert 0.0 < m[12, 12, 20] < 1.0
    assert mask_radius_px(m) == pytest.approx(7.5, abs=0.6)
    z, y, x = np.mgrid[:24, :24, :24] - 12
    blob = np.exp(-((z - 3.0) ** 2 + y**2 + (x + 2.0) ** 2) / 8.0)
    blob[1:3, 1:3, 1:3] = 0.5  # a far speck is not part of the mask
    am = auto_mask(blob)
    assert am[15, 12, 10] == 1.0 and am[2, 2, 2] == 0.0
    assert np.all((am >= 0) & (am <= 1)) and 0 < np.mean((am > 0) & (am < 1))
    np.testing.assert_array_equal(
        auto_mask(np.zeros((16, 16, 16))) > 0.5, spherical_mask(16, 16 / 2 - 4, 3) > 0.5
    )
