"""Blended tiles: a partition of unity, footprints that hold their regions, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.geometry.tiles import TileGrid


@pytest.mark.parametrize(
    ("shape", "block", "margin", "blend"),
    [
        ((40, 56, 72), 16, 16, 4),
        ((33, 17, 50), 16, 8, 8),
        ((8, 8, 8), 8, 0, 0),
        ((21, 64, 9), 8, 4, 3),
    ],
)
def test_weights_sum_to_one_and_regions_nest(shape, block, margin, blend) -> None:
    grid = TileGrid(shape, block, margin, blend)
    total = np.zeros(shape)
    cover = np.zeros(shape, dtype=int)
    for idx in grid.indices():
        core, fp, region = grid.core(idx), grid.footprint(idx), grid.region(idx)
        for c, f, r, n in zip(core, fp, region, shape, strict=True):
            assert 0 <= f.start <= r.start <= c.start < c.stop <= r.stop <= f.stop <= n
            assert c.start - f.start == min(margin, c.start)  # the margin, clipped at 0
        w = grid.weights(idx)
        assert w.shape == tuple(s.stop - s.start for s in region)
        assert w.min() > 0 and w.max() <= 1
        total[region] += w
        cover[core] += 1
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    np.testing.assert_array_equal(cover, 1)  # the cores partition the volume
    assert tuple(sum(c) for c in grid.chunks) == tuple(shape)


def test_seam_ramps_are_linear_and_symmetric() -> None:
    grid = TileGrid((8, 8, 32), 16, 8, 4)
    left, right = grid.weights((0, 0, 0))[0, 0], grid.weights((0, 0, 1))[0, 0]
    # left region [0, 20), right region [12, 32): the seam at 16 blends over [12, 20)
    np.testing.assert_allclose(left[12:20], (19.5 - np.arange(12, 20)) / 8, atol=1e-6)
    np.testing.assert_allclose(left[12:20] + right[:8], 1.0, atol=1e-6)
    np.testing.assert_allclose(left[:12], 1.0)


def test_short_last_core_gets_a_narrower_seam() -> None:
    grid = TileGrid((8, 8, 37), 16, 8, 8)  # cores 16, 16, 5: the last seam blends over 2 each side
    assert grid.region((0, 0, 2))[2] == slice(30, 37)
    assert grid.region((0, 0, 1))[2] == slice(8, 34)


@pytest.mark.parametrize(("block", "margin", "blend"), [(0, 0, 0), (8, 9, 0), (8, 4, 5), (8, 8, 5)])
def test_bad_tiles_are_refused(block, margin, blend) -> None:
    with pytest.raises(ConfigError, match="block"):
        TileGrid((16, 16, 16), block, margin, blend)


def test_bad_shape_is_refused() -> None:
    with pytest.raises(GeometryError, match="shape"):
        TileGrid((16, 16), 8, 0, 0)  # type: ignore[arg-type]
