"""Back-projection: kernel == NumPy reference == contract; Dask == in-memory; cluster run."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from dask.core import get_dependencies

import cryoflow
from cryoflow.errors import GeometryError
from cryoflow.geometry import TiltGeometry, chunk_footprint
from cryoflow.graph.sources import stored_source
from cryoflow.kernels.backproject import backproject_block, backproject_reference

ANGLES = np.array([-60.0, -45.0, -7.5, 0.0, 13.0, 60.0, 90.0])
GEOMETRIES = {
    "rotated": TiltGeometry.single_axis(ANGLES, tilt_axis_deg=-17.0),
    "dual": TiltGeometry.dual_axis([-60, 0, 45], [-30, 0, 90]),
    "directions": TiltGeometry.from_directions([150, 90, 40, 110], [0, 30, -70, 200]),
    "shifted": TiltGeometry.single_axis(ANGLES, shifts_px=np.linspace(-2.5, 3, 14).reshape(7, 2)),
    "u_shifted": TiltGeometry.single_axis(
        ANGLES, shifts_px=np.c_[np.zeros(7), np.linspace(-3, 2.5, 7)]
    ),
}


def whole(shape):
    return tuple(slice(0, s) for s in shape)


def phantom(rng, shape, dtype):
    values = rng.random(shape)
    if dtype is bool:
        return values > 0.55
    if np.dtype(dtype).kind in "iu":
        return (values * 40).astype(dtype)
    return values.astype(dtype)


def contract_backproject(images, angles_deg, shape):
    """CONTRACT.md written out literally, voxel by voxel column."""
    n, Y, U = images.shape
    Z, _, X = shape
    out = np.zeros(shape, dtype=np.int64 if images.dtype.kind in "biu" else np.float64)
    xc = np.arange(X) - (X - 1) / 2
    for t, a in enumerate(np.deg2rad(angles_deg)):
        for z in range(Z):
            zc = z - (Z - 1) / 2
            u = np.rint(xc * np.cos(a) + zc * np.sin(a) + (U - 1) / 2).astype(int)
            on = (u >= 0) & (u < U)
            out[z][:, on] += images[t][:, u[on]]
    return out


def assert_same(actual, expected):
    assert actual.dtype == expected.dtype
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)
    else:
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize(
    ("shape", "detector"),
    [((7, 9, 10), (9, 12)), ((8, 6, 11), (6, 11)), ((5, 4, 16), (4, 9)), ((12, 3, 7), (3, 20))],
)
@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int16, np.float32])
def test_single_axis_matches_contract(shape, detector, dtype):
    rng = np.random.default_rng(sum(shape))
    images = phantom(rng, (ANGLES.size, *detector), dtype)
    expected = contract_backproject(images, ANGLES, shape)
    out = backproject_block(images, TiltGeometry.single_axis(ANGLES), shape, detector, whole(shape))
    if dtype is bool:
        assert out.dtype == np.int16
    if out.dtype.kind == "f":
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    else:
        assert out.dtype.kind == "i"
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("name", ["single", *sorted(GEOMETRIES)])
@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
@pytest.mark.parametrize("dtype", [bool, np.uint8, np.float32])
def test_kernel_matches_reference(name, interpolation, dtype):
    geometry = GEOMETRIES.get(name, TiltGeometry.single_axis(ANGLES))
    rng = np.random.default_rng(7)
    shape, detector = (9, 8, 11), (8, 13)
    images = phantom(rng, (geometry.n_tilts, *detector), dtype)
    ref = backproject_reference(images, geometry, shape, interpolation=interpolation)
    kw = {"interpolation": interpolation}
    assert_same(backproject_block(images, geometry, shape, detector, whole(shape), **kw), ref)
    # a block from a crop of the detector (its footprint) gives the same voxels
    block = (slice(2, 7), slice(1, 5), slice(3, 9))
    fp = chunk_footprint(geometry, shape, detector, block)
    (v0, v1), (u0, u1) = fp.v, fp.u_union
    if name == "single":
        assert (v1 - v0) * (u1 - u0) < images[0].size
    crop = images[:, v0:v1, u0:u1]
    out = backproject_block(crop, geometry, shape, detector, block, (v0, u0), **kw)
    assert_same(out, ref[block])


def test_binary_linear_is_any_tap_vote():
    # one true pixel between two voxel positions: both neighbours count one vote, not a fraction
    geometry = TiltGeometry.single_axis([0.0], shifts_px=[[0.0, 0.5]])
    images = np.zeros((1, 1, 4), bool)
    images[0, 0, 2] = True
    out = backproject_block(
        images, geometry, (1, 1, 4), (1, 4), whole((1, 1, 4)), interpolation="linear"
    )
    np.testing.assert_array_equal(out.ravel(), [0, 1, 1, 0])


def test_kernel_refuses_dask_and_missing_footprint():
    images = np.zeros((7, 8, 13), np.float32)
    geometry = TiltGeometry.single_axis(ANGLES)
    with pytest.raises(TypeError, match="Dask"):
        backproject_block(da.from_array(images), geometry, (9, 8, 11), (8, 13), whole((9, 8, 11)))
    with pytest.raises(ValueError, match="crop"):
        backproject_block(
            images[:, :, 4:6], geometry, (9, 8, 11), (8, 13), whole((9, 8, 11)), (0, 4)
        )


@pytest.mark.parametrize("chunks", [(3, 4, 5), (9, 8, 11), (2, 8, 3), (9, 1, 11)])
@pytest.mark.parametrize("name", ["single", "dual"])
@pytest.mark.parametrize("view", [True, False])
def test_dask_matches_in_memory(chunks, name, view):
    geometry = GEOMETRIES.get(name, TiltGeometry.single_axis(ANGLES))
    rng = np.random.default_rng(11)
    shape, detector = (9, 8, 11), (8, 13)
    images = phantom(rng, (geometry.n_tilts, *detector), bool)
    expected = backproject_block(images, geometry, shape, detector, whole(shape))
    # input chunking unrelated to the output's; a view of a Zarr array is read by row slabs,
    # anything computed (or from NumPy) through a Dask rechunk
    stack = da.from_array(zarr.array(images, chunks=(2, 3, 5)) if view else images, (2, 3, 5))
    assert (stored_source(stack) is None) != view
    with dask.config.set(scheduler="sync"):
        out = cryoflow.backproject(stack, geometry, shape, chunks=chunks)
        assert isinstance(out, xr.DataArray) and out.dims == ("z", "y", "x")
        assert out.data.name.startswith("backproject-")
        assert out.chunks[0][0] == min(chunks[0], shape[0])
        np.testing.assert_array_equal(out.values, expected)


def test_blocks_depend_only_on_their_footprint():
    geometry = TiltGeometry.single_axis(np.linspace(-30, 30, 5))
    images = da.zeros((5, 32, 40), chunks=(5, 4, 40), dtype=np.float32)
    out = cryoflow.backproject(images, geometry, (8, 32, 40), chunks=(8, 4, 40))
    graph = dict(out.data.__dask_graph__())
    seen, todo = set(), [(out.data.name, 0, 3, 0)]
    while todo:
        key = todo.pop()
        if key not in seen:
            seen.add(key)
            todo.extend(get_dependencies(graph, key))
    inputs = sorted(k[2] for k in seen if isinstance(k, tuple) and k[0] == images.name)
    assert inputs == [2, 3, 4]  # rows 12:16 (+1 margin) read from 3 of the 8 row chunks


def test_stored_tilt_series_is_read_by_row_slabs(tmp_path):
    from cryoflow.io import store as S

    geometry = GEOMETRIES["rotated"]
    rng = np.random.default_rng(3)
    shape, detector = (9, 24, 13), (24, 13)
    images = phantom(rng, (geometry.n_tilts, *detector), np.float32)
    S.create_dataset(tmp_path / "d.zarr")
    S.write_tilt_series(tmp_path / "d.zarr", "ts", images, geometry, 1.0)
    stack = S.open_tilt_series(tmp_path / "d.zarr", "ts")
    assert stored_source(stack.data) is not None
    assert stored_source(stack.data > 0) is None
    out = cryoflow.backproject(stack, geometry, shape, chunks=(5, 8, 6))
    graph = dict(out.data.__dask_graph__())
    slabs = [k for k in graph if isinstance(k, tuple) and "-rows-" in k[0]]
    assert len(slabs) == 3  # 24 rows in slabs of one block's 8 rows; no per-tilt tasks
    assert len(graph) == 1 + len(slabs) + out.data.npartitions  # source, slabs, blocks
    expected = backproject_block(images, geometry, shape, detector, whole(shape))
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(out.values, expected)


def test_names_are_deterministic():
    images = np.ones((7, 8, 13), np.float32)
    a = cryoflow.backproject(images, ANGLES, (9, 8, 11))
    b = cryoflow.backproject(images, ANGLES, (9, 8, 11))
    c = cryoflow.backproject(images, ANGLES, (9, 8, 11), interpolation="linear")
    assert a.data.name == b.data.name != c.data.name


def test_api_validates_shapes():
    images = np.zeros((7, 8, 13), bool)
    with pytest.raises(GeometryError, match="7 tilts"):
        cryoflow.backproject(images, ANGLES[:5], (9, 8, 11))
    with pytest.raises(GeometryError, match="rows"):
        cryoflow.backproject(images, ANGLES, (9, 9, 11))
    with pytest.raises(GeometryError, match="shape"):
        cryoflow.backproject(images, ANGLES, (9, 8))
    with pytest.raises(GeometryError, match="3-D"):
        cryoflow.backproject(images[0], ANGLES, (9, 8, 11))
    with pytest.raises(ValueError, match="interpolation"):
        cryoflow.backproject(images, ANGLES, (9, 8, 11), interpolation="cubic")


def test_xarray_input_and_local_cluster():
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(5)
    images = phantom(rng, (7, 8, 13), np.float32)
    stack = xr.DataArray(images.transpose(1, 0, 2), dims=("y", "tilt", "x"))
    ref = backproject_reference(images, TiltGeometry.single_axis(ANGLES), (9, 8, 11))
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        out = cryoflow.backproject(stack, ANGLES, (9, 8, 11), chunks=(5, 4, 6))
        values = client.compute(out.data).result()
    np.testing.assert_allclose(values, ref, rtol=1e-5, atol=1e-4)
