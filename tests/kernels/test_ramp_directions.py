"""The ramp filter across any tilt-axis direction: one kernel, one padding rule, three paths."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from cryoflow.kernels.ramp import padded_length, ramp_at, ramp_filter, ramp_response


@pytest.fixture
def images() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.random((2, 24, 40)) + 10.0).astype(np.float32)  # on a bright background


def test_padding_rule() -> None:
    assert padded_length(1) == 64 and padded_length(32) == 64 and padded_length(33) == 128
    assert padded_length(4096) == 8192


def test_response_at_grid_points_is_the_kernels_dft() -> None:
    response, n_pad = ramp_response(40)
    f = np.arange(response.size) / n_pad
    np.testing.assert_allclose(ramp_at(f, n_pad), response, rtol=0, atol=1e-12)
    # a ramp: |f| away from DC, a small positive value at DC (no DC hole)
    assert 0 < response[0] < 0.01
    np.testing.assert_allclose(response[8:], f[8:], atol=0.005)
    assert ramp_at(np.array([0.7]), n_pad)[0] == pytest.approx(0.7, abs=0.005)


def test_default_is_along_rows(images) -> None:
    rows = np.tile([0.0, 1.0], (2, 1))
    np.testing.assert_array_equal(ramp_filter(images), ramp_filter(images, rows))


def test_columns_path_is_the_rows_path_transposed(images) -> None:
    cols = ramp_filter(images, np.tile([1.0, 0.0], (2, 1)))
    rows_t = ramp_filter(np.ascontiguousarray(images.transpose(0, 2, 1))).transpose(0, 2, 1)
    np.testing.assert_allclose(cols, rows_t, atol=1e-4)


@pytest.mark.parametrize("direction", [(1e-6, 1.0), (1.0, 1e-6)])
def test_two_d_path_agrees_with_the_one_d_paths(images, direction) -> None:
    d = np.tile(direction, (2, 1))
    axis_aligned = np.tile(np.round(direction), (2, 1))
    general = ramp_filter(images, d)  # 2-D FFT path
    exact = ramp_filter(images, axis_aligned)  # 1-D path
    scale = np.abs(exact).max()
    assert np.abs(general - exact).max() < 2e-3 * scale


@pytest.mark.parametrize("angle", [0.0, 30.0, 85.3, 90.0, 135.0])
def test_constant_background_vanishes_in_every_direction(angle) -> None:
    a = np.deg2rad(angle)
    images = np.full((1, 20, 30), 100.0, np.float32)
    out = ramp_filter(images, np.array([[np.sin(a), np.cos(a)]]))
    assert np.abs(out).max() < 1e-2 * 100.0


def test_filters_lines_along_the_direction_only() -> None:
    # an image constant along v filtered along u equals the 1-D filter of its profile; the
    # same image filtered along v (across the constant direction) is ~0
    rng = np.random.default_rng(0)
    profile = rng.random(48).astype(np.float32)
    image = np.broadcast_to(profile, (1, 16, 48)).copy()
    along_u = ramp_filter(image, np.array([[0.0, 1.0]]))
    np.testing.assert_allclose(along_u[0, 5], ramp_filter(profile[None, None])[0, 0], atol=1e-5)
    along_v = ramp_filter(image, np.array([[1.0, 0.0]]))  # constant lines: only the DC gain
    dc_gain = ramp_response(16)[0][0]
    np.testing.assert_allclose(along_v, dc_gain * image, atol=1e-6)


def test_rotated_direction_is_equivariant_under_rot90() -> None:
    # filtering along (sin a, cos a) then rotating by 90 degrees equals rotating first and
    # filtering along the rotated direction (exact: rot90 resamples nothing)
    rng = np.random.default_rng(1)
    image = rng.random((1, 32, 32)).astype(np.float32)
    a = np.deg2rad(30.0)
    d = np.array([[np.sin(a), np.cos(a)]])  # (dv, du)
    rot = np.rot90(image, k=1, axes=(1, 2))  # new[v, u] = old[u, N-1-v]: (dv, du) -> (-du, dv)
    d_rot = np.array([[-d[0, 1], d[0, 0]]])
    lhs = np.rot90(ramp_filter(image, d), k=1, axes=(1, 2))
    rhs = ramp_filter(np.ascontiguousarray(rot), d_rot)
    np.testing.assert_allclose(lhs, rhs, atol=1e-4)


def test_refuses_lazy_input_and_bad_directions(images) -> None:
    with pytest.raises(TypeError, match="lazy Dask array"):
        ramp_filter(da.from_array(images))
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        ramp_filter(images, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="non-zero"):
        ramp_filter(images, np.zeros((2, 2)))
