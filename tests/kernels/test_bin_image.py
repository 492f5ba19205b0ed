"""Tilt-image binning against a literal loop: each output pixel is the mean of its bin."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import InputFileError
from cryoflow.kernels.binning import bin_image


def loop_bin(images: np.ndarray, factor: int) -> np.ndarray:
    n, y, x = images.shape
    out = np.zeros((n, y // factor, x // factor))
    for t in range(n):
        for i in range(y // factor):
            for j in range(x // factor):
                total = 0.0
                for a in range(factor):
                    for b in range(factor):
                        total += float(images[t, i * factor + a, j * factor + b])
                out[t, i, j] = total / factor**2
    return out


@pytest.mark.parametrize("factor", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
def test_bin_image_is_the_mean_of_each_bin(factor, dtype):
    rng = np.random.default_rng(factor)
    images = (rng.random((2, 7, 10)) * 100).astype(dtype)  # edges that do not fill a bin
    got = bin_image(images, factor)
    assert got.dtype == np.float32
    assert got.shape == (2, 7 // factor, 10 // factor)
    np.testing.assert_allclose(got, loop_bin(images, factor), rtol=1e-6)


def test_bin_image_by_hand():
    images = np.array([[[1, 2, 9], [3, 6, 9]]], np.float32)  # (1, 2, 3)
    # one 2x2 bin: (1 + 2 + 3 + 6) / 4 = 3; the last column does not fill a bin
    np.testing.assert_array_equal(bin_image(images, 2), [[[3.0]]])


def test_bin_image_names_non_finite_tilts():
    images = np.zeros((3, 4, 4), np.float32)
    images[1, 2, 3] = np.nan
    with pytest.raises(InputFileError, match=r"non-finite pixels in tilt image\(s\) \[6\]"):
        bin_image(images, 2, first_tilt=5)
