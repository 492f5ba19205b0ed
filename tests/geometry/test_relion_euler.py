"""The contract's pose as RELION angles: RELION's own matrix and sampling, written out by hand."""

from __future__ import annotations

import numpy as np

from cryoflow.geometry.rotation import matrix_xyz_from_euler, random_euler, relion_euler_from_euler


def _relion_matrix(rot: float, tilt: float, psi: float) -> np.ndarray:
    """RELION's Euler_angles2matrix (src/euler.cpp), entry by entry."""
    a, b, g = np.radians([rot, tilt, psi])
    ca, cb, cg, sa, sb, sg = np.cos(a), np.cos(b), np.cos(g), np.sin(a), np.sin(b), np.sin(g)
    return np.array(
        [
            [cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb],
            [-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb],
            [sb * ca, sb * sa, cb],
        ]
    )


def test_relion_places_a_reference_point_where_the_contract_does() -> None:
    rng = np.random.default_rng(3)
    u = np.array([4.0, -1.5, 2.5])  # a point of the reference, (x, y, z) about the centre
    for euler in random_euler(rng, 20):
        contract_point = matrix_xyz_from_euler(euler) @ u
        # RELION's rotated map at k is the reference at A^-1 k: the reference point u lands at A u
        relion_point = _relion_matrix(*relion_euler_from_euler(euler)) @ u
        np.testing.assert_allclose(relion_point, contract_point, atol=1e-9)
        # the same numbers given to RELION unchanged would place it at R^-1 u instead
        same_numbers = _relion_matrix(*euler) @ u
        np.testing.assert_allclose(same_numbers, matrix_xyz_from_euler(euler).T @ u, atol=1e-9)


def test_the_conversion_is_its_own_inverse_and_keeps_shape() -> None:
    e = random_euler(np.random.default_rng(4), 6).reshape(2, 3, 3)
    back = relion_euler_from_euler(relion_euler_from_euler(e))
    assert back.shape == e.shape
    np.testing.assert_allclose(matrix_xyz_from_euler(back), matrix_xyz_from_euler(e), atol=1e-9)
    hand = matrix_xyz_from_euler([-50.0, -40.0, -30.0])  # (-psi, -tilt, -rot)
    np.testing.assert_allclose(
        matrix_xyz_from_euler(relion_euler_from_euler([30.0, 40.0, 50.0])), hand, atol=1e-9
    )
