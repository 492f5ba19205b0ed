"""Local maxima: the rule against a brute-force reading of it, ties, thresholds, cores."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from cryoflow.errors import GeometryError
from cryoflow.kernels.centroids import centroids, component_moments, merge_moments
from cryoflow.kernels.peaks import ball, local_maxima


def brute_force(
    vol: np.ndarray, min_distance: float, threshold: float
) -> set[tuple[int, int, int]]:
    """The module's rule, read literally: greatest (score, -flat index) in the ball."""
    shape = vol.shape
    pts = np.argwhere(np.ones(shape, bool))
    found = set()
    for p in pts:
        v = vol[tuple(p)]
        if not v >= threshold:
            continue
        d = np.linalg.norm(pts - p, axis=1) <= min_distance + 1e-9
        others = pts[d]
        vals = vol[tuple(others.T)]
        flat = np.ravel_multi_index(tuple(others.T), shape)
        mine = np.ravel_multi_index(tuple(p), shape)
        better = (vals > v) | ((vals == v) & (flat < mine))
        if not better.any():
            found.add(tuple(int(c) for c in p))
    return found


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("min_distance", [1.0, 2.5])
def test_matches_brute_force_with_ties(seed: int, min_distance: float) -> None:
    rng = np.random.default_rng(seed)
    vol = rng.integers(0, 4, size=(7, 8, 9)).astype(np.float32)  # many ties
    got = local_maxima(vol, min_distance=min_distance, threshold=1.0)
    assert set(map(tuple, got[["z", "y", "x"]].to_numpy().tolist())) == brute_force(
        vol, min_distance, 1.0
    )
    assert np.array_equal(got["score"].to_numpy(), vol[tuple(got[["z", "y", "x"]].to_numpy().T)])


def test_peaks_are_more_than_min_distance_apart() -> None:
    rng = np.random.default_rng(3)
    vol = ndimage.gaussian_filter(rng.normal(size=(20, 20, 20)), 1.0)
    got = local_maxima(vol, min_distance=3.0, threshold=-np.inf)[["z", "y", "x"]].to_numpy()
    d = np.linalg.norm(got[:, None] - got[None], axis=2) + np.eye(len(got)) * 99
    assert len(got) > 3 and d.min() > 3.0


def test_plateau_gives_one_peak_and_threshold_drops() -> None:
    vol = np.zeros((9, 9, 9), np.uint8)
    vol[3:6, 3:6, 3:6] = 255  # a saturated blob
    vol[0, 0, 8] = 40
    got = local_maxima(vol, min_distance=3, threshold=50)
    assert got[["z", "y", "x"]].to_numpy().tolist() == [[3, 3, 3]]  # smallest flat index wins
    assert got["score"].tolist() == [255.0]


def test_core_and_origin_report_volume_coordinates() -> None:
    vol = np.zeros((10, 10, 10))
    vol[2, 3, 4] = 5.0
    vol[8, 8, 8] = 4.0
    core = (slice(0, 5), slice(0, 10), slice(0, 10))
    got = local_maxima(
        vol, min_distance=1, threshold=1, origin=(100, 0, 0), core=core, volume_shape=(200, 10, 10)
    )
    assert got[["z", "y", "x"]].to_numpy().tolist() == [[102, 3, 4]]


def test_refuses_lazy_and_bad_distance() -> None:
    with pytest.raises(TypeError):
        local_maxima(da.zeros((4, 4, 4)), min_distance=1, threshold=0)
    with pytest.raises(GeometryError):
        ball(-1)


def test_centroids_add_up_across_blocks() -> None:
    labels = np.zeros((6, 6, 6), np.int64)
    labels[1:5, 2, 2] = 7
    labels[0, 0, 0] = 3
    w = np.arange(labels.size, dtype=float).reshape(labels.shape)
    whole = centroids(component_moments(labels, w))
    parts = merge_moments(
        [component_moments(labels[:3], w[:3]), component_moments(labels[3:], w[3:], (3, 0, 0))]
    )
    split = centroids(parts)
    assert np.allclose(
        whole[["z", "y", "x", "score"]].to_numpy(), split[["z", "y", "x", "score"]].to_numpy()
    )
    row = split[split["label"] == 7].iloc[0]
    assert (row["z"], row["y"], row["x"], row["n_voxels"]) == (2.5, 2.0, 2.0, 4)
