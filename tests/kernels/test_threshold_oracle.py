"""Algorithm 1 (threshold auto-selection) against a brute force sharing nothing with it.

The brute force projects ``votes > T`` with the per-voxel loop of ``_voxel_loops`` for every
candidate and scores it with its own IoU written on Python sets of pixels; it uses neither
cryoflow's projectors nor ``iou_from_counts``/``result_from_counts``.
"""

from __future__ import annotations

import dask
import numpy as np
import pytest

import cryoflow
from cryoflow.geometry import TiltGeometry
from tests.kernels._voxel_loops import loop_backproject, loop_project

SHAPE = (5, 6, 7)
DETECTOR_U = 9


def _pixels(image: np.ndarray) -> set[tuple[int, int]]:
    return {(int(v), int(u)) for v, u in zip(*np.nonzero(image), strict=True)}


def _set_iou(a: set, b: set) -> float:
    """|a & b| / |a | b|, and 1 when both are empty (the contract's rule)."""
    union = a | b
    return 1.0 if not union else len(a & b) / len(union)


def brute_force(votes, masks, geometry, candidates, interpolation="nearest"):
    """(best T, scores): every T projected and scored; ties go to the lowest T."""
    detector = masks.shape[1:]
    scores = []
    for threshold in candidates:
        fp = loop_project(
            (votes > threshold).astype(float), geometry, detector, "any", interpolation
        )
        per_tilt = [_set_iou(_pixels(masks[t]), _pixels(fp[t] > 0)) for t in range(len(masks))]
        scores.append(sum(per_tilt) / len(per_tilt))
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return candidates[best], scores


def _case(seed: int, geometry: TiltGeometry):
    """Noisy masks of a blob (missed pixels and false blobs), and their vote map."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    blob = ((z - 2) / 1.8) ** 2 + ((y - 2.5) / 2.2) ** 2 + ((x - 3) / 2.5) ** 2 <= 1
    masks = loop_project(blob.astype(float), geometry, (SHAPE[1], DETECTOR_U), "any", "nearest")
    masks = (masks > 0) & (rng.random(masks.shape) > 0.15)
    masks |= rng.random(masks.shape) > 0.93
    votes = np.rint(loop_backproject(masks, geometry, SHAPE, "nearest")).astype(np.int16)
    return votes, masks


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_select_threshold_equals_the_brute_force(seed):
    angles = [-50.0, -25.0, 0.0, 20.0, 45.0, 60.0]
    geometry = TiltGeometry.single_axis(angles)
    votes, masks = _case(seed, geometry)
    with dask.config.set(scheduler="sync"):
        result = cryoflow.select_threshold(votes, masks, angles)
    best, scores = brute_force(votes, masks, geometry, list(range(len(angles))))
    np.testing.assert_array_equal(result.thresholds, np.arange(len(angles)))
    np.testing.assert_allclose(result.scores, scores, rtol=1e-12)
    assert result.threshold == best
    assert len(set(np.round(scores, 9))) > 1  # the candidates are told apart


def test_general_geometry_custom_candidates_and_linear_taps():
    geometry = TiltGeometry.single_axis([-40.0, 0.0, 35.0, 55.0], tilt_axis_deg=12.0)
    votes, masks = _case(5, geometry)
    candidates = [3.0, -0.5, 1.0, 2.0, 0.0]
    with dask.config.set(scheduler="sync"):
        result = cryoflow.select_threshold(
            votes, masks, geometry, candidates=candidates, interpolation="linear"
        )
    ordered = sorted(candidates)
    best, scores = brute_force(votes, masks, geometry, ordered, "linear")
    np.testing.assert_array_equal(result.thresholds, ordered)
    np.testing.assert_allclose(result.scores, scores, rtol=1e-12)
    assert result.threshold == best


def test_hand_worked_scores_empty_masks_and_ties():
    """One voxel row and two tilts, scored by hand."""
    votes = np.zeros((3, 1, 3), np.int16)
    votes[1, 0, :] = [2, 1, 0]  # middle z row
    masks = np.zeros((2, 1, 3), bool)
    masks[0, 0, :2] = True  # tilt 0 sees x = 0, 1
    # tilt 90 sees z: the middle row projects onto u = 1 (any x with votes > T)
    masks[1, 0, 1] = True
    # T = 0: fp0 = {0, 1}, fp1 = {1} -> IoU 1, 1 -> score 1
    # T = 1: fp0 = {0}, fp1 = {1}    -> IoU 1/2, 1 -> 0.75
    with dask.config.set(scheduler="sync"):
        result = cryoflow.select_threshold(votes, masks, [0.0, 90.0])
    np.testing.assert_allclose(result.scores, [1.0, 0.75])
    assert result.threshold == 0
    empty = cryoflow.select_threshold(np.zeros((3, 1, 3), np.int16), masks * False, [0.0, 90.0])
    np.testing.assert_array_equal(empty.scores, [1.0, 1.0])  # both empty: IoU 1 on every tilt
    assert empty.threshold == 0  # a tie goes to the lowest candidate


def test_counts_edges_single_pixel_union_and_single_candidate():
    import dask.array as da

    from cryoflow.kernels.threshold import (
        iou_from_counts,
        parse_candidates,
        threshold_counts,
    )

    # one mask pixel, projected exactly: intersection 1, union 1 -> IoU 1
    np.testing.assert_array_equal(
        iou_from_counts(np.array([[1]]), np.array([[1]]), np.array([1])), [[1.0]]
    )
    np.testing.assert_array_equal(parse_candidates([2.5], 4), [2.5])
    masks = np.zeros((1, 2, 2), bool)
    with pytest.raises(TypeError, match="maxproj is a kernel .* lazy Dask array"):
        threshold_counts(da.zeros((1, 2, 2)), masks, np.array([0.0]))
    with pytest.raises(TypeError, match="masks is a kernel .* lazy Dask array"):
        threshold_counts(np.zeros((1, 2, 2)), da.zeros((1, 2, 2)), np.array([0.0]))
    with pytest.raises(ValueError, match=r"got \(1, 2, 3\) and \(1, 2, 2\)"):
        threshold_counts(np.zeros((1, 2, 3)), masks, np.array([0.0]))
