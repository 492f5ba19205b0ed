"""Ramp filtering against a literal convolution loop (no FFT): the Ram-Lak kernel applied to
each edge-padded row, as the module docstring states it."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest

from cryoflow.kernels.ramp import parse_filter, ramp_filter


def ram_lak(k: int) -> float:
    if k == 0:
        return 0.25
    return -1.0 / (math.pi * k) ** 2 if k % 2 else 0.0


def loop_ramp(images: np.ndarray) -> np.ndarray:
    """Each row edge-padded to n (the next power of two >= 2U, at least 64), centred, and
    convolved circularly over n samples with h(k), k in (-n/2, n/2]."""
    n_tilts, V, U = images.shape
    n = max(64, 1 << math.ceil(math.log2(2 * U)))
    left = (n - U) // 2
    out = np.zeros(images.shape)
    for t in range(n_tilts):
        for v in range(V):
            row = [float(images[t, v, min(max(j - left, 0), U - 1)]) for j in range(n)]
            for u in range(U):
                i = u + left
                total = 0.0
                for j in range(n):
                    m = (i - j) % n
                    total += row[j] * ram_lak(m if m <= n // 2 else m - n)
                out[t, v, u] = total
    return out


@pytest.mark.parametrize("shape", [(2, 3, 20), (1, 2, 33), (1, 1, 64)])
def test_ramp_filter_equals_the_convolution_loop(shape) -> None:
    rng = np.random.default_rng(sum(shape))
    images = (rng.random(shape) * 10 + 5).astype(np.float32)  # on a bright background
    got = ramp_filter(images)
    assert got.shape == shape and got.dtype == np.float32
    np.testing.assert_allclose(got, loop_ramp(images), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        ramp_filter(images.astype(np.int16)),
        ramp_filter(images.astype(np.int16).astype(np.float32)),
    )


def test_ramp_filter_refuses_dask_and_wrong_shapes() -> None:
    with pytest.raises(TypeError, match="images is a kernel .* lazy Dask array"):
        ramp_filter(da.zeros((1, 2, 8)))
    with pytest.raises(ValueError, match=r"^images must be \(n_tilts, V, U\), got shape \(2, 8\)$"):
        ramp_filter(np.zeros((2, 8)))


def test_parse_filter() -> None:
    assert parse_filter("ramp") == "ramp" and parse_filter("none") == "none"
    with pytest.raises(
        ValueError, match=r"^filter must be one of \('ramp', 'none'\), got 'shepp'$"
    ):
        parse_filter("shepp")
