"""Boxes against an oracle that pads the whole volume with NaN, slices, and fills the NaNs
(the mean of the box's real voxels, or the constant): every box is checked on its own, in
any order, on the in-memory path and piece by piece."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.kernels.extract import box_starts, crop_boxes, pad_outside, paste_region


def _oracle(volume: np.ndarray, xyz, box: int, pad) -> np.ndarray:
    m = 48  # wider than any box reaches past the volume here
    padded = np.pad(volume.astype(np.float64), m, constant_values=np.nan)
    out = []
    for x, y, z in xyz:
        sz, sy, sx = (int(np.rint(v)) - box // 2 + m for v in (z, y, x))
        b = padded[sz : sz + box, sy : sy + box, sx : sx + box].copy()
        inside = ~np.isnan(b)
        if not inside.any():
            b[:] = 0.0
        else:
            b[~inside] = b[inside].mean() if pad == "mean" else pad
        out.append(b.astype(np.float32))
    return np.stack(out)


# inside, over the low border, inside, entirely outside, over the high border, inside
XYZ = [(8, 8, 8), (1, 9, 7), (9.4, 7.6, 8.2), (-30, 5, 5), (14, 8, 15), (7, 7, 9)]


@pytest.mark.parametrize("pad", ["mean", -2.5])
def test_every_box_in_any_order_equals_the_padded_slice(pad) -> None:
    vol = np.random.default_rng(1).normal(size=(16, 17, 15)).astype(np.float32) + 3.0
    for order in (range(6), range(5, -1, -1), [3, 0, 1, 5, 2, 4]):
        coords = np.array([XYZ[i] for i in order], dtype=float)
        got = crop_boxes(vol, coords, 6, pad=pad)
        np.testing.assert_allclose(got, _oracle(vol, coords, 6, pad), rtol=0, atol=1e-6)


def test_pieces_pasted_in_any_order_then_padded_equal_the_whole() -> None:
    vol = np.random.default_rng(2).normal(size=(16, 17, 15)).astype(np.float32)
    coords = np.array(XYZ, dtype=float)
    starts = box_starts(coords, 6)
    out = np.zeros((len(coords), 6, 6, 6), np.float32)
    pieces = [(z, y) for z in (0, 8) for y in (0, 9)]
    for z, y in reversed(pieces):  # each piece overlaps some boxes and misses others
        piece = vol[z : z + 8, y : y + 9]
        paste_region(out, starts, 6, piece, (z, y, 0))
    pad_outside(out, starts, 6, vol.shape, "mean")
    np.testing.assert_allclose(out, _oracle(vol, coords, 6, "mean"), rtol=0, atol=1e-6)


def test_a_bad_pad_is_refused_naming_it() -> None:
    vol = np.zeros((4, 4, 4), np.float32)
    with pytest.raises(GeometryError, match="pad must be 'mean' or a number, got 'median'"):
        crop_boxes(vol, np.array([[1.0, 1.0, 1.0]]), 2, pad="median")
    with pytest.raises(GeometryError, match="pad must be finite, got inf"):
        crop_boxes(vol, np.array([[1.0, 1.0, 1.0]]), 2, pad=float("inf"))
