"""Point groups Cn/Dn: group axioms, conventions, symmetric distances, frame-aligned errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.geometry.orientation_error import orientation_errors_deg
from cryoflow.geometry.rotation import XYZ_TO_ZYX
from cryoflow.geometry.symmetry import parse_symmetry


def _contains(ops: np.ndarray, m: np.ndarray) -> bool:
    return bool(np.any(np.abs(ops - m).max(axis=(1, 2)) < 1e-9))


@pytest.mark.parametrize("name, size", [("C1", 1), ("C4", 4), ("c7", 7), ("D2", 4), ("D6", 12)])
def test_operators_form_a_group(name: str, size: int) -> None:
    g = parse_symmetry(name)
    ops = g.operators_xyz
    assert len(g) == size == len(ops)
    np.testing.assert_allclose(ops[0], np.eye(3), atol=1e-12)
    for a in ops:
        np.testing.assert_allclose(a @ a.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(a) == pytest.approx(1.0)
        for b in ops:
            assert _contains(ops, a @ b)


def test_conventions_axis_z_and_twofold_x() -> None:
    c4 = parse_symmetry("C4").operators_xyz
    np.testing.assert_allclose(c4[1] @ [1, 0, 0], [0, 1, 0], atol=1e-12)  # 90 deg about z
    d3 = parse_symmetry("D3").operators_xyz
    assert _contains(d3, np.diag([1.0, -1.0, -1.0]))  # two-fold about x
    g = parse_symmetry("D3")
    np.testing.assert_allclose(g.operators_zyx, XYZ_TO_ZYX @ g.operators_xyz @ XYZ_TO_ZYX)


def test_symmetric_distance() -> None:
    rng = np.random.default_rng(0)
    r = Rotation.random(10, random_state=rng).as_matrix()
    g = parse_symmetry("C6")
    equiv = r @ g.operators_xyz[2]
    np.testing.assert_allclose(g.distance_deg(r, equiv), 0.0, atol=1e-6)
    plain = parse_symmetry("C1").distance_deg(r, equiv)
    assert np.all(plain > 100)
    other = Rotation.random(10, random_state=rng).as_matrix()
    assert np.all(g.distance_deg(r, other) <= parse_symmetry("C1").distance_deg(r, other) + 1e-9)
    assert g.expand_xyz(r).shape == (10, 6, 3, 3)


def test_parse_errors_list_what_is_allowed() -> None:
    for bad in ("C0", "O", "I2", "D", "x3"):
        with pytest.raises(ConfigError, match="C<n> or D<n>"):
            parse_symmetry(bad)


def test_errors_up_to_a_global_frame() -> None:
    rng = np.random.default_rng(3)
    true = Rotation.random(50, random_state=rng).as_matrix()
    frame = Rotation.random(random_state=rng).as_matrix()
    jitter = Rotation.from_rotvec(np.radians(2.0) * rng.normal(size=(50, 3)) / np.sqrt(3))
    est = jitter.as_matrix() @ true @ frame.T  # R_est = R_true G^-1, plus a small error
    err, g = orientation_errors_deg(est, true, align_frame=True)
    assert np.median(err) < 4.0
    raw, _ = orientation_errors_deg(est, true)
    assert np.median(raw) > 20.0
    with pytest.raises(GeometryError, match="one shape"):
        orientation_errors_deg(est[:3], true)
