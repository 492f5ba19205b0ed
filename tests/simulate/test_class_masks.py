"""The per-class 2D truth masks projected several classes per pass equal one class at a time."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.geometry import TiltGeometry
from cryoflow.simulate.tilts import _pixel_count_bound, class_masks2d, project_general


def _labels(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 7, size=(12, 10, 16)).astype(np.uint8)
    lab[rng.random(lab.shape) < 0.5] = 0
    lab[:, :, :4] = 3  # full columns: the most voxels a pixel can receive
    return lab


def _one_by_one(lab: np.ndarray, geometry: TiltGeometry, ids: dict[str, int], width: int):
    return {
        n: project_general(lab == c, geometry, width, mode="any", interpolation="nearest")
        for n, c in ids.items()
    }


GEOMETRIES = {
    "single-axis": TiltGeometry.single_axis(np.arange(-60.0, 61.0, 15.0)),
    "90 degrees": TiltGeometry.single_axis(np.array([-90.0, 0.0, 90.0])),
    "rotated axis": TiltGeometry.single_axis(np.arange(-60.0, 61.0, 30.0), tilt_axis_deg=20.0),
}


@pytest.mark.parametrize("kind", sorted(GEOMETRIES))
def test_grouped_masks_equal_per_class(kind: str) -> None:
    geometry = GEOMETRIES[kind]
    lab = _labels(1)
    ids = {f"c{k}": k for k in range(1, 7)}
    width = 20
    got = class_masks2d(lab, geometry, ids, width)
    want = _one_by_one(lab, geometry, ids, width)
    assert set(got) == set(want)
    for n in ids:
        assert got[n].dtype == bool and got[n].shape == want[n].shape
        np.testing.assert_array_equal(got[n], want[n], err_msg=n)
        assert want[n].any()


def test_count_bound_holds() -> None:
    lab = np.ones((9, 4, 13), dtype=np.uint8)
    for geometry in GEOMETRIES.values():
        counts = project_general(lab, geometry, 17, mode="sum", interpolation="nearest")
        assert _pixel_count_bound(lab, geometry, 17) >= counts.max()
