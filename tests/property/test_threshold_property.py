"""Property: the one-pass threshold search equals the naive search on random inputs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cryoflow.geometry import TiltGeometry
from cryoflow.kernels.project import project_block
from cryoflow.kernels.threshold import (
    parse_candidates,
    select_threshold_block,
    select_threshold_reference,
)


@st.composite
def cases(draw):
    n = draw(st.integers(1, 5))
    angles = draw(st.lists(st.floats(-90, 90, allow_nan=False), min_size=n, max_size=n))
    z, y, x = (draw(st.integers(1, 6)) for _ in range(3))
    u = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    votes = rng.integers(0, n + 1, size=(z, y, x)).astype(np.int16)
    votes[rng.random(votes.shape) < 0.5] = 0
    masks = rng.random((n, y, u)) < draw(st.floats(0, 1))
    return TiltGeometry.single_axis(angles), votes, masks


@settings(max_examples=40, deadline=None)
@given(cases(), st.sampled_from(["nearest", "linear"]))
def test_fast_search_equals_naive(case, interpolation):
    geometry, votes, masks = case
    shape = votes.shape
    maxproj = project_block(
        votes,
        geometry,
        shape,
        masks.shape[1:],
        tuple(slice(0, s) for s in shape),
        mode="max",
        interpolation=interpolation,
    )
    cands = parse_candidates(None, geometry.n_tilts)
    fast = select_threshold_block(maxproj, masks, cands)
    naive = select_threshold_reference(votes, masks, geometry, interpolation=interpolation)
    assert fast.threshold == naive.threshold
    np.testing.assert_array_equal(fast.scores, naive.scores)
