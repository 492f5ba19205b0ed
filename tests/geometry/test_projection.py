"""TiltGeometry and chunk footprints: physical invariants on synthetic phantoms."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.geometry import TiltGeometry, as_geometry, chunk_footprint
from cryoflow.kernels.backproject import axis_taps, backproject_block, detector_positions
from cryoflow.kernels.project import project_block

ANGLES = [-60.0, -45.0, -13.0, 0.0, 27.5, 60.0, 90.0]
# Nearest-neighbour rounding (numpy.rint, half to even) is not shift-invariant at exact ties
# (pos = k + 0.5), which +-45 and +-60 degrees produce on half-integer grids; shift tests use
# angles that give no ties.
SHIFT_ANGLES = [-57.3, -41.1, -13.0, 0.0, 27.5, 52.9]


def whole(shape):
    return tuple(slice(0, s) for s in shape)


def fp_sum(volume, geometry, detector, interpolation="nearest"):
    return project_block(
        volume,
        geometry,
        volume.shape,
        detector,
        whole(volume.shape),
        mode="sum",
        interpolation=interpolation,
    )


GEOMETRIES = {
    "single": TiltGeometry.single_axis(ANGLES),
    "rotated": TiltGeometry.single_axis(ANGLES, tilt_axis_deg=23.0),
    "dual": TiltGeometry.dual_axis([-60, 0, 45], [-30, 0, 90]),
    "directions": TiltGeometry.from_directions([150, 90, 40, 110], [0, 30, -70, 200]),
}


def test_single_axis_matrix_is_the_contract():
    g = TiltGeometry.single_axis([30.0])
    t = np.deg2rad(30.0)
    np.testing.assert_array_equal(g.matrix_array[0], [[0, 1, 0], [np.sin(t), 0, np.cos(t)]])
    assert g.is_simple
    assert not TiltGeometry.single_axis([30.0], tilt_axis_deg=5).is_simple


def test_from_directions_reproduces_single_axis():
    t = np.array(ANGLES)
    a = TiltGeometry.from_directions(90.0 + t, np.zeros_like(t))
    b = TiltGeometry.single_axis(t)
    np.testing.assert_allclose(a.matrix_array, b.matrix_array, atol=1e-12)
    np.testing.assert_allclose(a.angles_deg, b.angles_deg, atol=1e-9)


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_rows_are_orthonormal(name):
    m = GEOMETRIES[name].matrix_array
    gram = np.einsum("nij,nkj->nik", m, m)
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(2), gram.shape), atol=1e-12)


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_centre_voxel_lands_on_centre_pixel(name, interpolation):
    geometry = GEOMETRIES[name]
    volume = np.zeros((9, 11, 13), np.float32)
    volume[4, 5, 6] = 1.0
    proj = fp_sum(volume, geometry, (11, 15), interpolation)
    for t in range(geometry.n_tilts):
        assert proj[t, 5, 7] == pytest.approx(1.0)
        assert proj[t].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_one_pixel_shift_moves_projection_by_one_pixel(interpolation):
    rng = np.random.default_rng(0)
    volume = np.zeros((8, 10, 12), np.float32)
    volume[2:6, 2:8, 3:9] = rng.random((4, 6, 6))
    base = TiltGeometry.single_axis(SHIFT_ANGLES)
    n = base.n_tilts
    for shift, axis in (((0.0, 1.0), 2), ((1.0, 0.0), 1)):
        moved = base.with_shifts(np.tile(shift, (n, 1)))
        a = fp_sum(volume, base, (10, 24), interpolation)
        b = fp_sum(volume, moved, (10, 24), interpolation)
        np.testing.assert_allclose(np.roll(a, 1, axis=axis), b, atol=1e-5)


@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_one_pixel_shift_moves_backprojection_by_one_pixel(interpolation):
    rng = np.random.default_rng(1)
    images = np.zeros((6, 12, 20), np.float32)
    images[:, 2:10, 4:16] = rng.random((6, 8, 12))
    base = TiltGeometry.single_axis(SHIFT_ANGLES)
    shape = (8, 12, 14)  # X and U both even: no ties at 0 degrees
    for shift, axis in (((0.0, 1.0), 2), ((1.0, 0.0), 1)):
        moved = base.with_shifts(np.tile(shift, (6, 1)))
        kw = {"interpolation": interpolation}
        a = backproject_block(images, base, shape, (12, 20), whole(shape), **kw)
        b = backproject_block(
            np.roll(images, 1, axis=axis), moved, shape, (12, 20), whole(shape), **kw
        )
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_dual_axis_second_series_is_rotated_image():
    rng = np.random.default_rng(2)
    volume = rng.random((6, 9, 9)).astype(np.float32)
    g = TiltGeometry.dual_axis([0.0], [0.0], second_axis_deg=90.0)
    assert g.axis_id == (0, 1)
    proj = fp_sum(volume, g, (9, 9))
    # second detector: v' = x, u' = -y  ->  image transposed, then flipped along u
    np.testing.assert_allclose(proj[1], proj[0].T[:, ::-1], atol=1e-5)


def test_serialisation_round_trip():
    for g in GEOMETRIES.values():
        assert TiltGeometry.from_dict(g.to_dict()) == g
    with pytest.raises(GeometryError):
        TiltGeometry.from_dict({"kind": "other"})


def test_invalid_geometry_raises():
    with pytest.raises(GeometryError, match="shifts_px"):
        TiltGeometry.single_axis([0, 10], shifts_px=np.zeros((3, 2)))
    with pytest.raises(GeometryError, match="finite"):
        TiltGeometry.single_axis([0, np.nan])
    with pytest.raises(GeometryError, match="parallel"):
        TiltGeometry.from_directions([0.0], [90.0])
    with pytest.raises(GeometryError, match="1-D"):
        as_geometry(np.zeros((2, 2)))


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_footprint_holds_every_tap(name):
    geometry = GEOMETRIES[name]
    shape, detector = (10, 12, 14), (12, 17)
    rng = np.random.default_rng(3)
    for _ in range(5):
        lo = rng.integers(0, [8, 10, 12])
        hi = lo + rng.integers(1, 4, size=3)
        block = tuple(slice(int(a), int(min(b, s))) for a, b, s in zip(lo, hi, shape, strict=True))
        fp = chunk_footprint(geometry, shape, detector, block)
        pv, pu = detector_positions(geometry, shape, detector, block)
        for t in range(geometry.n_tilts):
            for iv, wv in axis_taps(pv[t], detector[0], "linear"):
                for iu, wu in axis_taps(pu[t], detector[1], "linear"):
                    on = wv * wu > 0
                    if not on.any():
                        continue
                    assert fp.v[0] <= iv[on].min() and iv[on].max() < fp.v[1]
                    assert fp.u[t][0] <= iu[on].min() and iu[on].max() < fp.u[t][1]
