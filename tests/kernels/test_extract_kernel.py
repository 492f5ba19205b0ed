"""Boxes: centre voxel B // 2 at rint of the position; padding outside the volume."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.kernels.extract import box_starts, crop_boxes, inside_fraction


def reference_box(vol: np.ndarray, xyz: np.ndarray, box: int, pad: object) -> np.ndarray:
    """Slicing a padded copy of the volume: the independent reading of the rule."""
    m = 64
    padded = np.pad(vol.astype(np.float32), m, mode="constant", constant_values=np.nan)
    s = np.rint(np.asarray(xyz, float)[::-1]).astype(int) - box // 2 + m
    out = padded[s[0] : s[0] + box, s[1] : s[1] + box, s[2] : s[2] + box].copy()
    inside = np.isfinite(out)
    fill = (
        (out[inside].astype(np.float64).mean() if inside.any() else 0.0) if pad == "mean" else pad
    )
    out[~inside] = np.float32(fill if inside.any() else 0.0)
    return out


@pytest.mark.parametrize("box", [5, 6])
@pytest.mark.parametrize("pad", ["mean", -3.0])
def test_boxes_equal_slicing(box: int, pad: object) -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(11, 13, 17)).astype(np.float32)
    xyz = np.array(
        [[8.0, 6.0, 5.0], [0.4, 0.6, 0.0], [16.5, 12.49, 10.51], [20.0, -3.0, 4.0], [40, 40, 40]]
    )
    got = crop_boxes(vol, xyz, box, pad=pad)
    for i, c in enumerate(xyz):
        assert np.array_equal(got[i], reference_box(vol, c, box, pad)), i
    assert got.dtype == np.float32
    assert np.all(got[4] == 0)  # entirely outside


def test_centre_voxel_is_the_particle() -> None:
    vol = np.zeros((9, 9, 9), np.float32)
    vol[4, 2, 6] = 1.0
    for box in (4, 5):
        b = crop_boxes(vol, np.array([[6.2, 1.8, 4.0]]), box, pad=0.0)[0]
        assert b[box // 2, box // 2, box // 2] == 1.0
    assert box_starts(np.array([[6.2, 1.8, 4.0]]), 4).tolist() == [[2, 0, 4]]


def test_inside_fraction_and_errors() -> None:
    starts = np.array([[0, 0, 0], [-2, 0, 0], [100, 0, 0]])
    assert inside_fraction(starts, 4, (10, 10, 10)).tolist() == [1.0, 0.5, 0.0]
    with pytest.raises(GeometryError):
        crop_boxes(np.zeros((4, 4, 4)), np.zeros((1, 3)), 2, pad="median")
    with pytest.raises(TypeError):
        crop_boxes(da.zeros((4, 4, 4)), np.zeros((1, 3)), 2)
