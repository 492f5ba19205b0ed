"""Fourier-space rotation checked against scipy.ndimage and against exact permutations."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from cryoflow.errors import GeometryError
from cryoflow.geometry.rotation import matrix_zyx_from_euler, random_euler
from cryoflow.kernels.fourier_rotate import rotate_volumes


def _blob(box: int) -> np.ndarray:
    z, y, x = np.mgrid[:box, :box, :box] - box // 2
    v = np.exp(-((z - 3) ** 2 / 20 + (y + 2) ** 2 / 8 + (x - 5) ** 2 / 4))
    v += 0.5 * np.exp(-((z + 4) ** 2 + (y - 4) ** 2 + x**2) / 6)
    return v.astype(np.float32)


def _scipy_rotate(v: np.ndarray, m_zyx: np.ndarray) -> np.ndarray:
    c = np.full(3, v.shape[0] // 2, dtype=float)
    # out[o] = v[M^T (o - c) + c]: out(r) = v(M^-1 r) about the centre
    return ndimage.affine_transform(v, m_zyx.T, offset=c - m_zyx.T @ c, order=3)


@pytest.mark.parametrize("pad, tol", [(2, 0.02), (3, 0.01)])
def test_matches_scipy_on_a_blob(pad: int, tol: float) -> None:
    v = _blob(32)
    rng = np.random.default_rng(0)
    for e in random_euler(rng, 3):
        m = matrix_zyx_from_euler(e)
        want = _scipy_rotate(v, m)
        got = rotate_volumes(v, m, pad=pad)
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < tol


def test_quarter_turn_is_a_permutation() -> None:
    v = _blob(24)
    m = matrix_zyx_from_euler([90.0, 0.0, 0.0])  # +90 deg about z: x -> y
    got = rotate_volumes(v, m)
    # out(r) = v(M^-1 r); M^-1 takes (x, y, z) to (y, -x, z), so out[z, y, x] = v[z, -x, y]
    c = 12
    z, y, x = np.mgrid[:24, :24, :24]
    want = v[z, (2 * c - x) % 24, y]
    assert np.abs(got - want).max() < 0.03 * v.max()


def test_centre_of_mass_turns_with_the_matrix_and_batches_agree() -> None:
    v = _blob(32)
    rng = np.random.default_rng(1)
    e = random_euler(rng, 4)
    m = matrix_zyx_from_euler(e)
    batch = rotate_volumes(np.stack([v] * 4), m)
    com0 = np.array(ndimage.center_of_mass(v)) - 16
    for i in range(4):
        np.testing.assert_allclose(batch[i], rotate_volumes(v, m[i]), atol=1e-5)
        com = np.array(ndimage.center_of_mass(np.clip(batch[i], 0, None))) - 16
        np.testing.assert_allclose(com, m[i] @ com0, atol=0.3)  # faint ghosts pull it in


def test_composition() -> None:
    v = _blob(32)
    a = matrix_zyx_from_euler([20.0, 40.0, 60.0])
    b = matrix_zyx_from_euler([-30.0, 70.0, 10.0])
    two = rotate_volumes(rotate_volumes(v, a), b)
    one = rotate_volumes(v, b @ a)
    assert np.linalg.norm(two - one) / np.linalg.norm(one) < 0.03


def test_refuses_bad_input() -> None:
    with pytest.raises(TypeError, match="lazy Dask"):
        rotate_volumes(da.zeros((8, 8, 8)), np.eye(3))
    with pytest.raises(GeometryError, match="cubic boxes"):
        rotate_volumes(np.zeros((2, 8, 8, 6)), np.eye(3))
    with pytest.raises(GeometryError, match="one per volume"):
        rotate_volumes(np.zeros((3, 8, 8, 8)), np.stack([np.eye(3)] * 2))
