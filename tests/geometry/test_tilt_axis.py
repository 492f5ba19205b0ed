"""Tilt axes and filter directions from per-tilt matrices; binned geometry."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.geometry import TiltGeometry
from cryoflow.geometry.binning import bin_geometry
from cryoflow.geometry.tilt_axis import (
    axis_angle_on_detector_deg,
    filter_directions,
    tilt_axes,
)
from cryoflow.kernels.backproject import detector_positions

ANGLES = np.arange(-60.0, 61.0, 15.0)


def test_contract_geometry_filters_along_rows() -> None:
    g = TiltGeometry.single_axis(ANGLES, shifts_px=np.ones((ANGLES.size, 2)))
    np.testing.assert_allclose(tilt_axes(g), np.tile([0.0, 1.0, 0.0], (ANGLES.size, 1)), atol=1e-12)
    np.testing.assert_allclose(
        filter_directions(g), np.tile([0.0, 1.0], (ANGLES.size, 1)), atol=1e-12
    )
    np.testing.assert_allclose(axis_angle_on_detector_deg(g), 0.0, atol=1e-9)


@pytest.mark.parametrize("axis", [-85.3, -30.0, 12.5, 85.3, 90.0])
def test_rotated_axis_filters_across_it(axis) -> None:
    g = TiltGeometry.single_axis(ANGLES, tilt_axis_deg=axis)
    a = np.deg2rad(axis)
    d = filter_directions(g)
    # across the axis: (dv, du) = +-(sin a, cos a); the axis image is (cos a, -sin a)
    np.testing.assert_allclose(np.abs(d @ [np.sin(a), np.cos(a)]), 1.0, atol=1e-9)
    assert np.allclose(axis_angle_on_detector_deg(g), (axis + 90) % 180 - 90, atol=1e-9)
    np.testing.assert_allclose(np.abs(tilt_axes(g)[:, 1]), 1.0, atol=1e-9)  # still volume y


def test_dual_axis_gets_one_axis_per_series() -> None:
    g = TiltGeometry.dual_axis(ANGLES, ANGLES, second_axis_deg=90.0)
    d = filter_directions(g)
    n = ANGLES.size
    np.testing.assert_allclose(np.abs(d[:n]), np.tile([0.0, 1.0], (n, 1)), atol=1e-9)
    np.testing.assert_allclose(np.abs(d[n:]), np.tile([1.0, 0.0], (n, 1)), atol=1e-9)


def test_paper_directions_with_phi_zero_are_the_contract_case() -> None:
    g = TiltGeometry.from_directions(90.0 + ANGLES, np.zeros_like(ANGLES))
    np.testing.assert_allclose(
        np.abs(filter_directions(g)), np.tile([0.0, 1.0], (ANGLES.size, 1)), atol=1e-9
    )


def test_per_tilt_in_plane_rotation_turns_each_direction() -> None:
    # an alignment that rotates every image differently (as an IMOD .xf can)
    base = TiltGeometry.single_axis(ANGLES)
    rot = np.linspace(-10, 10, ANGLES.size)
    mats = []
    for m, r in zip(base.matrix_array, np.deg2rad(rot), strict=True):
        c, s = np.cos(r), np.sin(r)
        mats.append(np.array([[c, s], [-s, c]]) @ m)  # (v, u) rotated by r
    g = TiltGeometry(
        base.angles_deg, tuple(map(tuple, map(lambda x: map(tuple, x), mats))), base.shifts_px
    )
    d = filter_directions(g)
    expect = np.stack([np.sin(np.deg2rad(rot)), np.cos(np.deg2rad(rot))], axis=1)
    np.testing.assert_allclose(np.abs(np.sum(d * expect, axis=1)), 1.0, atol=1e-9)
    np.testing.assert_allclose(axis_angle_on_detector_deg(g), rot, atol=1e-9)


def test_a_single_tilt_falls_back_to_y() -> None:
    g = TiltGeometry.single_axis([20.0], tilt_axis_deg=40.0)
    assert np.allclose(np.abs(tilt_axes(g)), [[0.0, 1.0, 0.0]], atol=1e-9)


@pytest.mark.parametrize("size", [(32, 32), (33, 34), (35, 31)])
def test_binned_geometry_maps_every_voxel_to_its_binned_pixel(size) -> None:
    # binning f x f maps unbinned pixel coordinate p to (p - (f-1)/2) / f; a binned voxel is
    # the point f times its centred coordinate in the unbinned volume (same centre)
    V, U = size
    f = 2
    rng = np.random.default_rng(4)
    g = TiltGeometry.single_axis(
        ANGLES, tilt_axis_deg=20.0, shifts_px=rng.normal(size=(ANGLES.size, 2))
    )
    Zb, Yb, Xb = 6, V // f, U // f
    gb = bin_geometry(g, (V, U), f)
    block = (slice(0, Zb), slice(0, Yb), slice(0, Xb))
    pv_b, pu_b = detector_positions(gb, (Zb, Yb, Xb), (V // f, U // f), block)
    # the same points in the unbinned volume: centred coordinates times f
    z = (np.arange(Zb) - (Zb - 1) / 2) * f
    y = (np.arange(Yb) - (Yb - 1) / 2) * f
    x = (np.arange(Xb) - (Xb - 1) / 2) * f
    m, s = g.matrix_array, g.shift_array
    pts = np.stack(np.meshgrid(z, y, x, indexing="ij"), axis=-1)  # (Zb, Yb, Xb, 3)
    raw = np.einsum("nij,zyxj->nzyxi", m, pts) + s[:, None, None, None, :]
    raw_v, raw_u = raw[..., 0] + (V - 1) / 2, raw[..., 1] + (U - 1) / 2
    np.testing.assert_allclose(pv_b, (raw_v - (f - 1) / 2) / f, atol=1e-9)
    np.testing.assert_allclose(pu_b, (raw_u - (f - 1) / 2) / f, atol=1e-9)
