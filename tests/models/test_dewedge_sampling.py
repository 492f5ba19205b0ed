"""Training boxes come from every tomogram and favour structure over empty background."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.models.dewedge_sampling import (
    WedgeTomogram,
    build_pool,
    cut_boxes,
    normalisation,
    sample_centres,
    standardise_and_bin,
)


def _half_structured(seed=0, shape=(24, 48, 64)) -> np.ndarray:
    """Blobs in x < 32, flat noise in x >= 32."""
    rng = np.random.default_rng(seed)
    vol = rng.normal(scale=0.3, size=shape).astype(np.float32)
    zz, yy, xx = np.indices(shape)
    for _ in range(25):
        c = rng.uniform([3, 3, 3], [shape[0] - 3, shape[1] - 3, 28])
        vol[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 6.0] += 2.0
    return vol


def test_sampling_prefers_structure() -> None:
    vol = _half_structured()
    centres = sample_centres(vol, 16, 200, np.random.default_rng(0))
    assert centres.shape == (200, 3)
    assert np.mean(centres[:, 2] < 32) > 0.8  # most boxes centred on the blob half
    # every box fits
    lo, hi = 8, np.asarray(vol.shape) - 8
    assert (centres >= lo).all() and (centres <= hi).all()
    boxes = cut_boxes(vol, centres[:5], 16)
    c = centres[0] - 8
    np.testing.assert_array_equal(
        boxes[0], vol[c[0] : c[0] + 16, c[1] : c[1] + 16, c[2] : c[2] + 16]
    )


def test_flat_volume_is_sampled_uniformly_and_small_volume_refused() -> None:
    centres = sample_centres(np.zeros((16, 32, 32), np.float32), 8, 50, np.random.default_rng(1))
    assert len(centres) == 50
    with pytest.raises(GeometryError, match="does not fit"):
        sample_centres(np.zeros((8, 32, 32), np.float32), 16, 5, np.random.default_rng(1))


def test_pool_draws_from_every_tomogram_with_halves() -> None:
    a, b = _half_structured(1), _half_structured(2)
    tomos = [
        WedgeTomogram("t1", (-60, 60), a, a + 0.1),
        WedgeTomogram("t2", (-50, 55), b),
    ]
    pool = build_pool(tomos, 16, 7, np.random.default_rng(0))
    assert pool.first.shape == (14, 16, 16, 16)
    np.testing.assert_array_equal(np.bincount(pool.tomogram), [7, 7])
    assert pool.tilt_ranges_deg == ((-60.0, 60.0), (-50.0, 55.0))
    # standardised per half; the second tomogram has no partner: its boxes come twice
    np.testing.assert_allclose(pool.first[7:], pool.second[7:])
    assert not np.allclose(pool.first[:7], pool.second[:7])


def test_standardise_and_bin() -> None:
    v = np.arange(4 * 6 * 9, dtype=np.float32).reshape(4, 6, 9)
    loc, scale = normalisation(v)
    out = standardise_and_bin(v, loc, scale, 2)
    assert out.shape == (2, 3, 4)
    np.testing.assert_allclose(out[0, 0, 0], ((v[:2, :2, :2] - loc) / scale).mean(), rtol=1e-5)


def test_bad_input_refused() -> None:
    v = np.zeros((16, 16, 16), np.float32)
    with pytest.raises(GeometryError, match="halves differ"):
        WedgeTomogram("t", (-60, 60), v, v[:-1])
    with pytest.raises(GeometryError, match="tilt range"):
        WedgeTomogram("t", (60, -60), v)
    with pytest.raises(TypeError, match="lazy"):
        WedgeTomogram("t", (-60, 60), da.from_array(v))
    with pytest.raises(ConfigError, match="at least one"):
        build_pool([], 8, 4, np.random.default_rng(0))
