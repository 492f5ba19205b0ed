"""Forward projection: reference agreement, adjointness, any == (sum > 0), Dask == in-memory."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import cryoflow
from cryoflow.errors import GeometryError
from cryoflow.geometry import TiltGeometry
from cryoflow.kernels.backproject import backproject_block
from cryoflow.kernels.project import project_block, project_reference

ANGLES = np.array([-60.0, -45.0, -7.5, 0.0, 13.0, 60.0, 90.0])
GEOMETRIES = {
    "single": TiltGeometry.single_axis(ANGLES),
    "rotated": TiltGeometry.single_axis(ANGLES, tilt_axis_deg=31.0),
    "dual": TiltGeometry.dual_axis([-60, 0, 45], [-30, 0, 90]),
    "directions": TiltGeometry.from_directions([150, 90, 40, 110], [0, 30, -70, 200]),
    "u_shifted": TiltGeometry.single_axis(
        ANGLES, shifts_px=np.c_[np.zeros(7), np.linspace(-3, 2.5, 7)]
    ),
}
SHAPE, DETECTOR = (9, 8, 11), (8, 13)


def whole(shape):
    return tuple(slice(0, s) for s in shape)


def volume_of(rng, dtype, shape=SHAPE):
    values = rng.random(shape)
    values[values < 0.5] = 0.0  # sparse, so "any" is not trivially all true
    if dtype is bool:
        return values > 0
    if np.dtype(dtype).kind in "iu":
        return (values * 20).astype(dtype)
    return values.astype(dtype)


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
@pytest.mark.parametrize("mode", ["sum", "any", "max"])
@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_kernel_matches_reference(name, mode, interpolation):
    geometry = GEOMETRIES[name]
    rng = np.random.default_rng(3)
    for dtype in (bool, np.uint8, np.float32):
        vol = volume_of(rng, dtype)
        kw = {"mode": mode, "interpolation": interpolation}
        ref = project_reference(vol, geometry, DETECTOR, **kw)
        out = project_block(vol, geometry, SHAPE, DETECTOR, whole(SHAPE), **kw)
        assert out.dtype == ref.dtype
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_sum_is_adjoint_of_backproject(name, interpolation):
    geometry = GEOMETRIES[name]
    rng = np.random.default_rng(4)
    for shape, detector in ((SHAPE, DETECTOR), ((6, 7, 12), (7, 9))):
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.standard_normal((geometry.n_tilts, *detector)).astype(np.float32)
        kw = {"interpolation": interpolation}
        ax = project_block(x, geometry, shape, detector, whole(shape), mode="sum", **kw)
        aty = backproject_block(y, geometry, shape, detector, whole(shape), **kw)
        lhs = float(np.vdot(ax.astype(np.float64), y))
        rhs = float(np.vdot(x.astype(np.float64), aty))
        assert lhs == pytest.approx(rhs, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_any_is_binarised_sum(name, interpolation):
    geometry = GEOMETRIES[name]
    vol = volume_of(np.random.default_rng(5), np.float32)
    kw = {"interpolation": interpolation}
    total = project_block(vol, geometry, SHAPE, DETECTOR, whole(SHAPE), mode="sum", **kw)
    hit = project_block(vol, geometry, SHAPE, DETECTOR, whole(SHAPE), mode="any", **kw)
    assert hit.dtype == bool and 0 < hit.sum() < hit.size
    np.testing.assert_array_equal(hit, total > 0)


def test_max_projection_is_per_ray_maximum():
    vol = np.zeros((5, 1, 5), np.int16)
    vol[:, 0, 2] = [1, 7, 3, 0, 2]
    out = project_block(
        vol, TiltGeometry.single_axis([0.0]), vol.shape, (1, 7), whole(vol.shape), mode="max"
    )
    np.testing.assert_array_equal(out[0, 0], [-np.inf, 0, 0, 7, 0, 0, -np.inf])


@pytest.mark.parametrize("chunks", [(3, 4, 5), (9, 8, 11), (2, 3, 4)])
@pytest.mark.parametrize("mode", ["sum", "any", "max"])
@pytest.mark.parametrize("name", ["single", "dual"])
def test_dask_matches_in_memory(chunks, mode, name):
    geometry = GEOMETRIES[name]
    vol = volume_of(np.random.default_rng(6), np.uint8)
    expected = project_block(vol, geometry, SHAPE, DETECTOR, whole(SHAPE), mode=mode)
    with dask.config.set(scheduler="sync"):
        out = cryoflow.project(da.from_array(vol, chunks=chunks), geometry, DETECTOR[1], mode)
        assert isinstance(out, xr.DataArray) and out.dims == ("tilt", "y", "x")
        np.testing.assert_array_equal(out["angle"].values, geometry.angles_deg)
        np.testing.assert_array_equal(out.values, expected)


def test_tree_reduction_with_small_fan_in():
    from cryoflow.graph.project import project_graph

    geometry = GEOMETRIES["single"]
    vol = volume_of(np.random.default_rng(8), np.float32)
    expected = project_block(vol, geometry, SHAPE, DETECTOR, whole(SHAPE), mode="sum")
    graph = project_graph(
        da.from_array(vol, chunks=(2, 8, 2)),
        geometry,
        DETECTOR,
        mode="sum",
        split_every=2,
        row_chunks=3,
    )
    assert graph.chunks == ((7,), (3, 3, 2), (13,))
    with dask.config.set(scheduler="sync"):
        np.testing.assert_allclose(graph.compute(), expected, rtol=1e-5, atol=1e-5)


def test_api_validates():
    vol = np.zeros(SHAPE, np.float32)
    with pytest.raises(ValueError, match="mode"):
        cryoflow.project(vol, ANGLES, 13, "mean")
    with pytest.raises(GeometryError, match="width"):
        cryoflow.project(vol, ANGLES, 0)
    with pytest.raises(GeometryError, match="3-D"):
        cryoflow.project(vol[0], ANGLES, 13)
    with pytest.raises(TypeError, match="Dask"):
        project_block(da.from_array(vol), GEOMETRIES["single"], SHAPE, DETECTOR, whole(SHAPE))
