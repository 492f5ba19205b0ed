"""Peaks of a block cut from a larger volume (an origin, a core, plateaus whose tie-break needs
the whole volume's flat index) against a brute force over the whole volume, and the empty
table's columns."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.kernels.peaks import PEAK_COLUMNS, ball, local_maxima


def _brute_force(vol: np.ndarray, min_distance: float, threshold: float) -> set[tuple]:
    """Every voxel above the threshold that beats every voxel within the distance in the
    order (score, -flat index): one comparison per pair."""
    shape = vol.shape
    flat = np.arange(vol.size).reshape(shape)
    r = int(np.floor(min_distance))
    out = set()
    for v in itertools.product(*(range(n) for n in shape)):
        if not vol[v] >= threshold:
            continue
        best = True
        for d in itertools.product(range(-r, r + 1), repeat=3):
            u = tuple(a + b for a, b in zip(v, d, strict=True))
            if u == v or not all(0 <= a < n for a, n in zip(u, shape, strict=True)):
                continue
            if sum(x * x for x in d) > min_distance**2:
                continue
            if (vol[u], -flat[u]) > (vol[v], -flat[v]):
                best = False
                break
        if best:
            out.add(v)
    return out


def test_a_block_with_an_origin_and_a_core_finds_the_whole_volumes_peaks() -> None:
    rng = np.random.default_rng(8)
    vol = rng.integers(0, 12, size=(10, 11, 12)).astype(np.float64)  # ties in most balls
    truth = _brute_force(vol, 2.0, 2.0)
    # the block around z 4..8, y 3..9, x 5..11 with a halo of 2 (clipped to the volume)
    z0, y0, x0 = 2, 1, 3
    block = vol[z0:10, y0:11, x0:12]
    core = (slice(2, 6), slice(2, 8), slice(2, 8))
    got = local_maxima(
        block, min_distance=2.0, threshold=2.0, origin=(z0, y0, x0), core=core,
        volume_shape=vol.shape,
    )  # fmt: skip
    found = {tuple(int(c) for c in row) for row in got[["z", "y", "x"]].to_numpy()}
    inside = {p for p in truth if 4 <= p[0] < 8 and 3 <= p[1] < 9 and 5 <= p[2] < 11}
    assert found == inside and inside
    np.testing.assert_array_equal(got["score"].to_numpy(), [vol[p] for p in sorted(inside)])


@pytest.mark.parametrize(
    "block",
    [np.zeros((4, 4, 4)), np.full((3, 3, 3), np.nan), np.zeros((0, 4, 4))],
    ids=["below-threshold", "no-score", "empty"],
)
def test_no_peak_is_an_empty_table_with_the_columns(block) -> None:
    got = local_maxima(block, min_distance=1.5, threshold=0.5)
    assert list(got.columns) == PEAK_COLUMNS and len(got) == 0
    assert [str(t) for t in got.dtypes] == ["int64", "int64", "int64", "float64"]


def test_balls_by_hand_and_distances_that_are_refused() -> None:
    assert ball(0).tolist() == [[[True]]]  # min_distance 0: every voxel above the threshold
    assert ball(0.5).tolist() == [[[True]]]
    assert ball(1).sum() == 7 and ball(1.5).sum() == 19 and ball(np.sqrt(3)).sum() == 27
    for bad in [-1.0, float("nan"), float("inf")]:
        with pytest.raises(GeometryError, match="min_distance must be a finite number >= 0"):
            ball(bad)
