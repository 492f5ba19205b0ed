"""The blob-detector peer and one-to-one pick matching on a small synthetic volume."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.kernels.blob_peer import blob_f1, blob_peaks
from cryoflow.kernels.match import match_pairs, match_picks


def _balls(shape, centres_zyx, radius):
    g = np.indices(shape).reshape(3, -1).T.astype(float)
    v = np.zeros(int(np.prod(shape)), np.float32)
    for c in centres_zyx:
        v[np.linalg.norm(g - c, axis=1) <= radius] = 1.0
    return v.reshape(shape)


def test_match_pairs_is_one_to_one_and_agrees_with_match_picks() -> None:
    truth = np.array([[0.0, 0, 0], [10, 0, 0], [20, 0, 0]])
    picks = np.array([[0.5, 0, 0], [0.2, 0, 0], [19, 0, 0], [40, 0, 0]])
    pi, ti = match_pairs(picks, truth, 2.0)
    assert len(pi) == len(ti) == 2 and len(set(pi)) == 2 and len(set(ti)) == 2
    assert set(ti) == {0, 2} and 3 not in pi
    s = match_picks(picks, truth, 2.0)
    assert (s.tp, s.fp, s.fn) == (2, 2, 1)
    assert [len(a) for a in match_pairs(np.zeros((0, 3)), truth, 2.0)] == [0, 0]


def test_blob_peaks_find_balls_and_f1_counts_per_tomogram() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[8.0, 10, 10], [8, 10, 30], [8, 30, 20], [20, 25, 25]])
    vol = _balls((28, 40, 40), centres, 3.0) + 0.05 * rng.normal(size=(28, 40, 40))
    peaks = blob_peaks(vol.astype(np.float32), 6.0, +1.0)
    assert {"x", "y", "z", "score"} <= set(peaks.columns)
    truth_xyz = centres[:, ::-1]
    f = blob_f1({"a": peaks}, {"a": truth_xyz}, {"a": truth_xyz[:2]}, 2.0)
    assert f["best_f1"] == pytest.approx(1.0) and f["example_threshold_f1"] > 0.5
    # a second tomogram with no blobs: its truths are missed, the threshold is shared
    empty = blob_peaks((0.05 * rng.normal(size=(28, 40, 40))).astype(np.float32), 6.0, 1.0)
    two = blob_f1({"a": peaks, "b": empty}, {"a": truth_xyz, "b": truth_xyz}, {}, 2.0)
    assert two["best_f1"] == pytest.approx(2 * 4 / (2 * 4 + 4))  # b's four truths missed
    assert two["example_threshold_f1"] == 0.0  # no example: no threshold, no pick
    with pytest.raises(TypeError):
        import dask.array as da

        blob_peaks(da.zeros((8, 8, 8)), 4.0, 1.0)
