"""SO(3) grids: unit quaternions, the stated step/covering figures, local lattices."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from cryoflow.errors import GeometryError
from cryoflow.geometry.rotation import angular_distance_deg
from cryoflow.geometry.so3_grid import (
    grid_for_step,
    local_grid,
    local_offsets,
    n_for_step,
    step_deg,
    super_fibonacci_quaternions,
)


def _distance_to_grid_deg(grid_xyz: np.ndarray, test_xyz: np.ndarray) -> np.ndarray:
    q = Rotation.from_matrix(grid_xyz).as_quat()
    tree = cKDTree(np.concatenate([q, -q]))  # q and -q are one rotation
    d, _ = tree.query(Rotation.from_matrix(test_xyz).as_quat())
    return np.degrees(4.0 * np.arcsin(np.clip(d / 2.0, 0.0, 1.0)))


def test_quaternions_are_unit_and_distinct() -> None:
    q = super_fibonacci_quaternions(500)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    m = Rotation.from_quat(q).as_matrix()
    d = angular_distance_deg(m[:-1], m[1:])
    assert d.min() > 1.0


def test_step_and_count_round_trip() -> None:
    for step in (10.0, 15.0, 20.0, 30.0):
        n = n_for_step(step)
        assert step_deg(n) <= step < step_deg(n - 1)
    assert n_for_step(15.0) == 4401 and n_for_step(20.0) == 1857


@pytest.mark.parametrize("step", [20.0, 30.0])
def test_covering_radius_is_as_documented(step: float) -> None:
    grid = grid_for_step(step)
    rng = np.random.default_rng(0)
    test = Rotation.random(4000, random_state=rng).as_matrix()
    d = _distance_to_grid_deg(grid, test)
    assert d.max() <= 0.92 * step  # covering radius 0.84-0.9 x step
    assert 0.4 * step <= np.median(d) <= 0.6 * step
    # uniform: every octant-like cell of the sphere of axes gets its share
    axes = Rotation.from_matrix(grid).as_rotvec()
    frac_pos_z = np.mean(axes[:, 2] > 0)
    assert 0.45 < frac_pos_z < 0.55


def test_local_offsets_cover_the_ball() -> None:
    off = local_offsets(2.0, 6.0)
    np.testing.assert_allclose(off[0], np.eye(3))
    mags = np.degrees(Rotation.from_matrix(off).magnitude())
    assert mags.max() <= 6.0 + 1e-6
    assert len(off) == pytest.approx(4 / 3 * np.pi * 27, rel=0.15)
    rng = np.random.default_rng(1)
    axis = rng.normal(size=(500, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    small = Rotation.from_rotvec(np.radians(axis * rng.uniform(0, 4.0, (500, 1)))).as_matrix()
    d = _distance_to_grid_deg(off, small)
    assert d.max() <= np.sqrt(3) / 2 * 2.0 + 0.05


def test_local_grid_is_around_each_centre() -> None:
    rng = np.random.default_rng(2)
    centres = Rotation.random(3, random_state=rng).as_matrix()
    g = local_grid(centres, 3.0, 7.0)
    assert g.shape[:1] == (3,) and g.shape[2:] == (3, 3)
    for i in range(3):
        d = angular_distance_deg(centres[i][None], g[i])
        assert d.max() <= 7.0 + 1e-6 and d[0] < 1e-6


def test_bad_grids_are_refused() -> None:
    with pytest.raises(GeometryError, match="n >= 1"):
        super_fibonacci_quaternions(0)
    with pytest.raises(GeometryError, match=r"\(0, 180\]"):
        n_for_step(0.0)
    with pytest.raises(GeometryError, match="step > 0"):
        local_offsets(0.0, 3.0)
    with pytest.raises(GeometryError, match=r"\(n, 3, 3\)"):
        local_grid(np.eye(3), 1.0, 2.0)
