"""Real-space signs of the missing wedge: z-elongation of balls, membranes facing the beam."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.kernels.wedge import apply_wedge
from cryoflow.kernels.wedge_shapes import membrane_contrast, membrane_normals, z_elongation


def _balls(shape=(48, 48, 48), seed=0):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    vol = np.zeros(shape, np.float32)
    centres, radii = [], []
    for c in [(16, 16, 16), (32, 32, 30), (16, 34, 32), (33, 14, 15)]:
        r = rng.uniform(3.0, 4.0)
        vol[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r] = 1.0
        centres.append(c)
        radii.append(r)
    return vol, np.asarray(centres), np.asarray(radii)


def test_balls_are_round_and_the_wedge_stretches_them_along_z() -> None:
    vol, centres, radii = _balls()
    truth = z_elongation(vol, centres, radii)
    wedged = z_elongation(apply_wedge(vol, (-60, 60)), centres, radii)
    np.testing.assert_allclose(truth, 1.0, atol=0.1)
    assert np.all(wedged > 1.25)
    # a narrower range stretches more
    narrow = z_elongation(apply_wedge(vol, (-40, 40)), centres, radii)
    assert np.median(narrow) > np.median(wedged)


def test_object_on_the_border_or_absent_is_nan() -> None:
    vol, centres, radii = _balls()
    out = z_elongation(vol, np.array([[0, 10, 10], [24, 24, 40]]), [3.0, 3.0])
    assert np.isnan(out[0]) and np.isnan(out[1])  # border; flat background


def _shell(shape=(48, 48, 48), r=16.0, t=1.5):
    zz, yy, xx = np.indices(shape) - (np.asarray(shape)[:, None, None, None] - 1) / 2
    d = np.sqrt(zz**2 + yy**2 + xx**2)
    return np.abs(d - r) <= t / 2 + 0.5


def test_sphere_normals_point_radially() -> None:
    mask = _shell()
    normals = membrane_normals(mask)
    pos = np.argwhere(mask) - (np.asarray(mask.shape) - 1) / 2
    radial = pos / np.linalg.norm(pos, axis=1, keepdims=True)
    assert np.median(np.abs((normals * radial).sum(axis=1))) > 0.95


def test_wedge_erases_membranes_facing_the_beam() -> None:
    mask = _shell()
    vol = mask.astype(np.float32)
    truth = membrane_contrast(vol, mask)
    assert truth["facing_beam"] == pytest.approx(truth["side_on"], rel=0.05)
    assert truth["n_facing_beam"] > 100 and truth["n_side_on"] > 100
    wedged = membrane_contrast(apply_wedge(vol, (-60, 60)), mask)
    assert wedged["facing_beam"] < 0.5 * wedged["side_on"]


def test_errors() -> None:
    vol, centres, radii = _balls()
    with pytest.raises(TypeError, match="lazy"):
        z_elongation(da.from_array(vol), centres, radii)
    with pytest.raises(GeometryError, match="differs"):
        membrane_contrast(vol, vol[:-1] > 0)
