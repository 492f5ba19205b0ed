"""Missing-wedge masks: the contract's rule, checked against projections of a phantom."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.geometry.rotation import matrix_zyx_from_euler
from cryoflow.kernels.wedge import apply_wedge, fourier_grid, parse_tilt_range, wedge_mask


def test_hand_worked_components() -> None:
    shape = (16, 16, 16)
    m = wedge_mask(shape, (-60, 60))
    assert m[0, 0, 0] and m[0, 5, 0]  # DC and the ky axis
    assert m[0, 0, 3]  # along kx: tilt 0
    assert not m[3, 0, 0]  # along kz: needs tilt 90
    assert m[1, 0, 2]  # atan(1/2) = 26.6 deg
    assert not m[4, 0, 1]  # atan(4) = 76 deg
    assert m[-1, 0, 2] and m[1, 0, -2]  # negative angles, folded
    full = wedge_mask(shape, (-90, 90))
    assert full.all()


def test_asymmetric_range_is_not_mirrored() -> None:
    m = wedge_mask((16, 16, 16), (-20, 60))
    # angle +45 (kz = kx) is inside, -45 is outside
    assert m[2, 0, 2] and not m[-2, 0, 2]


def test_rfft_mask_is_the_full_mask_halved() -> None:
    shape = (12, 10, 14)
    full = wedge_mask(shape, (-45, 55))
    half = wedge_mask(shape, (-45, 55), rfft=True)
    np.testing.assert_array_equal(half, full[..., : shape[2] // 2 + 1])
    assert fourier_grid(shape, rfft=True).shape == (3, 12, 10, 8)


def test_rotated_mask_is_the_mask_at_rotated_frequencies() -> None:
    shape = (16, 16, 16)
    m = matrix_zyx_from_euler([0, 90, 0])  # tilt 90 about y swaps x and z (up to sign)
    rotated = wedge_mask(shape, (-30, 30), rotation_zyx=m)
    # a component along kz in the reference frame is along kx in the tomogram: measured
    assert rotated[3, 0, 0] and not rotated[0, 0, 3]
    assert rotated.sum() == wedge_mask(shape, (-30, 30)).sum()


def test_wedge_is_what_the_projections_see() -> None:
    """A volume filtered by the wedge projects exactly like the original at every tilt inside."""
    rng = np.random.default_rng(0)
    n = 24
    vol = np.zeros((n, n, n), np.float32)
    vol[8:15, 6:18, 9:13] = 1.0
    vol += rng.normal(scale=0.1, size=vol.shape).astype(np.float32)
    filtered = apply_wedge(vol, (-90, 90))
    np.testing.assert_allclose(filtered, vol, atol=1e-5)
    # zero tilt sees sums along z: the (kz = 0) plane, which any range containing 0 keeps
    narrow = apply_wedge(vol, (-30, 30))
    np.testing.assert_allclose(narrow.sum(axis=0), vol.sum(axis=0), atol=1e-3)
    # but the wedge removes power: the x-projection (tilt 90) differs
    assert np.abs(narrow.sum(axis=2) - vol.sum(axis=2)).max() > 0.5


def test_errors_name_the_problem() -> None:
    with pytest.raises(GeometryError, match="-90 <= min <= max <= 90"):
        parse_tilt_range((60, -60))
    with pytest.raises(GeometryError, match="two numbers"):
        parse_tilt_range((1,))
    with pytest.raises(TypeError, match="lazy Dask"):
        apply_wedge(da.zeros((4, 4, 4)), (-60, 60))
