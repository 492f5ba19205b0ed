"""Candidate voxels of the picker: blob-response maxima, exact per block with a halo."""

from __future__ import annotations

from itertools import product

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from cryoflow.errors import ConfigError
from cryoflow.kernels.candidates import blob_response, candidate_voxels, response_radius


def _balls(shape, centres, radius, rng):
    z, y, x = np.indices(shape)
    v = 0.05 * rng.normal(size=shape)
    for c in centres:
        v += ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= radius**2
    return v.astype(np.float32)


def test_finds_every_ball_centre_and_not_the_background() -> None:
    rng = np.random.default_rng(1)
    centres = np.array([[10, 12, 14], [20, 30, 9], [12, 34, 30], [24, 10, 34]])
    vol = _balls((32, 44, 44), centres, 4, rng)
    pts, resp = candidate_voxels(vol, 8.0, +1.0, 0.05, radius=response_radius(8.0, 9))
    d = np.linalg.norm(pts[:, None] - centres[None], axis=2)
    assert np.all(d.min(axis=0) <= 1.0)  # every ball has a candidate at its centre
    assert np.all(d.min(axis=1) <= 2.0)  # and nothing else passes the threshold
    assert np.all(resp >= 0.05)
    # the other polarity sees no bright ball as a candidate
    dark, _ = candidate_voxels(vol, 8.0, -1.0, 0.05, radius=response_radius(8.0, 9))
    assert not np.any(np.linalg.norm(dark[:, None] - centres[None], axis=2) <= 1.0)


def test_blocks_with_a_halo_decide_their_core_as_the_whole_volume() -> None:
    rng = np.random.default_rng(2)
    vol = ndimage.gaussian_filter(rng.normal(size=(30, 37, 41)), 2.0).astype(np.float32)
    h, d, block = 6, 9.0, 11
    radius = response_radius(d, h)
    whole, _ = candidate_voxels(vol, d, 1.0, 0.0, radius=radius)
    padded = np.pad(vol, h)
    found = []
    for start in product(*(range(0, n, block) for n in vol.shape)):
        stop = [min(a + block, n) for a, n in zip(start, vol.shape, strict=True)]
        piece = padded[tuple(slice(a, b + 2 * h) for a, b in zip(start, stop, strict=True))]
        pts, _ = candidate_voxels(piece, d, 1.0, 0.0, radius=radius, margin=h)
        found.append(pts - h + np.asarray(start))
    got = np.concatenate(found)
    assert len(got) == len(np.unique(got, axis=0))  # no voxel decided by two blocks
    assert sorted(map(tuple, got)) == sorted(map(tuple, whole))


def test_response_is_the_cut_log_and_errors_are_clear() -> None:
    rng = np.random.default_rng(3)
    vol = rng.normal(size=(16, 16, 16)).astype(np.float32)
    sigma = 6.0 / (2 * np.sqrt(3))
    ref = -ndimage.gaussian_laplace(vol, sigma, mode="constant", truncate=4 / sigma)
    assert np.allclose(blob_response(vol, 6.0, 1.0, 4), ref, atol=1e-5)
    assert response_radius(20.0, 17) == 15 and response_radius(4.0, 40) == 5
    with pytest.raises(ConfigError, match="halo"):
        response_radius(8.0, 2)
    with pytest.raises(ConfigError, match="margin"):
        candidate_voxels(vol, 6.0, 1.0, 0.0, radius=5, margin=5)
    with pytest.raises(TypeError):
        candidate_voxels(da.from_array(vol), 6.0, 1.0, 0.0, radius=3)
