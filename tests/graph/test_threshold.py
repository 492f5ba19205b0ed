"""Threshold search (Algorithm 1): one-pass search == naive per-candidate search."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

import cryoflow
from cryoflow.geometry import TiltGeometry
from cryoflow.kernels.backproject import backproject_reference
from cryoflow.kernels.project import project_reference
from cryoflow.kernels.threshold import (
    ThresholdResult,
    parse_candidates,
    select_threshold_reference,
    threshold_counts,
)

ANGLES = np.linspace(-60, 60, 9)
SHAPE, DETECTOR = (12, 10, 14), (10, 16)


def noisy_case(seed, geometry=None):
    """Masks of an ellipsoid corrupted like a segmenter errs, and their vote map."""
    geometry = geometry or TiltGeometry.single_axis(ANGLES)
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    truth = ((z - 5.5) / 3.5) ** 2 + ((y - 4.5) / 3) ** 2 + ((x - 7) / 4.5) ** 2 <= 1
    masks = project_reference(truth, geometry, DETECTOR, mode="any")
    masks &= rng.random(masks.shape) > 0.1  # missed pixels
    masks |= rng.random(masks.shape) > 0.97  # false blobs
    votes = backproject_reference(masks, geometry, SHAPE)
    return votes, masks, geometry, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_equals_naive(seed):
    votes, masks, geometry, _ = noisy_case(seed)
    with dask.config.set(scheduler="sync"):
        fast = cryoflow.select_threshold(votes, masks, ANGLES)
    naive = select_threshold_reference(votes, masks, geometry)
    assert fast.threshold == naive.threshold
    np.testing.assert_array_equal(fast.thresholds, np.arange(9))
    np.testing.assert_array_equal(fast.scores, naive.scores)


def test_fast_equals_naive_general_geometry_and_candidates():
    geometry = TiltGeometry.dual_axis([-45, 0, 45], [-30, 30])
    votes, masks, _, _ = noisy_case(3, geometry)
    candidates = [4, -1, 2.5, 0, 1, 3]
    with dask.config.set(scheduler="sync"):
        fast = cryoflow.select_threshold(
            da.from_array(votes, chunks=(5, 4, 6)), masks, geometry, candidates=candidates
        )
    naive = select_threshold_reference(votes, masks, geometry, candidates)
    np.testing.assert_array_equal(fast.thresholds, [-1, 0, 1, 2.5, 3, 4])
    assert fast.threshold == naive.threshold
    np.testing.assert_array_equal(fast.scores, naive.scores)


def test_clean_masks_are_matched_exactly():
    _, _, geometry, truth = noisy_case(0)
    masks = project_reference(truth, geometry, DETECTOR, mode="any")
    votes = backproject_reference(masks, geometry, SHAPE)
    with dask.config.set(scheduler="sync"):
        result = cryoflow.select_threshold(votes, masks, ANGLES)
    assert result.threshold == ANGLES.size - 1
    assert result.score == pytest.approx(1.0)
    assert np.all(result.scores[:-1] < 1.0)


def test_empty_masks_score_one_and_ties_go_low():
    votes = np.zeros(SHAPE, np.int16)
    masks = np.zeros((ANGLES.size, *DETECTOR), bool)
    with dask.config.set(scheduler="sync"):
        result = cryoflow.select_threshold(votes, masks, ANGLES)
    np.testing.assert_array_equal(result.scores, np.ones(ANGLES.size))
    assert result.threshold == 0.0


def test_counts_from_histogram():
    maxproj = np.array([[[-np.inf, 0, 1, 2, 3]]])
    masks = np.array([[[1, 1, 0, 1, 0]]], bool)
    inter, proj, mask = threshold_counts(maxproj, masks, np.array([-0.5, 0.0, 2.0, 5.0]))
    np.testing.assert_array_equal(proj, [[4, 3, 1, 0]])
    np.testing.assert_array_equal(inter, [[2, 1, 0, 0]])
    np.testing.assert_array_equal(mask, [3])


def test_result_round_trip_and_validation():
    r = ThresholdResult(2.0, np.array([1.0, 2.0]), np.array([0.5, 0.75]))
    back = ThresholdResult.from_dict(r.to_dict())
    assert back.threshold == 2.0 and back.score == 0.75
    np.testing.assert_array_equal(back.scores, r.scores)
    with pytest.raises(ValueError, match="finite"):
        parse_candidates([1.0, np.nan], 3)
    with pytest.raises(AttributeError):
        r.threshold = 3.0  # type: ignore[misc]
