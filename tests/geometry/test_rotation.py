"""The contract's Euler convention, checked against SciPy and against a rendered density."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryoflow.errors import GeometryError
from cryoflow.geometry.rotation import (
    XYZ_TO_ZYX,
    angular_distance_deg,
    euler_from_matrix_xyz,
    euler_from_matrix_zyx,
    matrix_xyz_from_euler,
    matrix_zyx_from_euler,
    random_euler,
)


def test_matrix_is_scipy_zyz_intrinsic_degrees() -> None:
    e = [30.0, 50.0, -70.0]
    want = Rotation.from_euler("ZYZ", e, degrees=True).as_matrix()
    np.testing.assert_allclose(matrix_xyz_from_euler(e), want)
    # a hand-worked case: rot=90 about z maps x to y
    np.testing.assert_allclose(matrix_xyz_from_euler([90, 0, 0]) @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_zyx_form_acts_on_reversed_vectors() -> None:
    rng = np.random.default_rng(0)
    e = random_euler(rng, 5)
    v_xyz = rng.normal(size=3)
    for m_xyz, m_zyx in zip(matrix_xyz_from_euler(e), matrix_zyx_from_euler(e), strict=True):
        np.testing.assert_allclose(m_zyx @ v_xyz[::-1], (m_xyz @ v_xyz)[::-1])
    np.testing.assert_array_equal(XYZ_TO_ZYX @ XYZ_TO_ZYX, np.eye(3))


def test_round_trip_through_matrices() -> None:
    rng = np.random.default_rng(1)
    e = random_euler(rng, 20)
    back = euler_from_matrix_xyz(matrix_xyz_from_euler(e))
    assert angular_distance_deg(matrix_xyz_from_euler(back), matrix_xyz_from_euler(e)).max() < 1e-6
    back_zyx = euler_from_matrix_zyx(matrix_zyx_from_euler(e))
    assert (
        angular_distance_deg(matrix_xyz_from_euler(back_zyx), matrix_xyz_from_euler(e)).max() < 1e-6
    )


def test_angular_distance_hand_worked() -> None:
    a = matrix_xyz_from_euler([0, 0, 0])
    b = matrix_xyz_from_euler([0, 30, 0])
    assert angular_distance_deg(a, b) == pytest.approx(30.0)
    assert angular_distance_deg(b, b) == pytest.approx(0.0, abs=1e-6)


def test_density_convention_reference_to_tomogram() -> None:
    """A blob at reference offset r0 appears in the tomogram at R r0 (contract)."""
    e = [40.0, 70.0, 10.0]
    r0_xyz = np.array([6.0, 0.0, 0.0])
    moved = matrix_xyz_from_euler(e) @ r0_xyz
    # density(r) = ref(R^-1 r): the reference peak at r0 is seen where R^-1 r = r0
    np.testing.assert_allclose(
        Rotation.from_euler("ZYZ", e, degrees=True).inv().apply(moved), r0_xyz, atol=1e-12
    )


def test_bad_angles_are_refused() -> None:
    with pytest.raises(GeometryError, match="length 3"):
        matrix_xyz_from_euler([1.0, 2.0])
    with pytest.raises(GeometryError, match="finite"):
        matrix_xyz_from_euler([np.nan, 0, 0])
