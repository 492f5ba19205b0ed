"""FSC, its resolution crossing, the low-pass and the FSC weighting against independent
oracles: full complex FFTs and a per-frequency loop over the shells (no Hermitian weighting,
no shared helper), and curves worked by hand."""

from __future__ import annotations

import itertools

import dask.array as da
import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.kernels.fsc import FSCCurve, fsc, fsc_weighted, lowpass


def _freq(box: int, index: int) -> float:
    """Cycles/voxel of FFT index ``index`` along an axis of length ``box``."""
    return (index if index <= (box - 1) // 2 else index - box) / box


def _radius(box: int, z: int, y: int, x: int) -> float:
    return float(np.sqrt(_freq(box, z) ** 2 + _freq(box, y) ** 2 + _freq(box, x) ** 2))


def _fsc_loop(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """FSC from the full FFTs, one frequency at a time."""
    box = a.shape[0]
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    n = box // 2 + 1
    cross, pa, pb = np.zeros(n), np.zeros(n), np.zeros(n)
    for z, y, x in itertools.product(range(box), repeat=3):
        shell = int(np.rint(_radius(box, z, y, x) * box))
        if shell >= n:
            continue
        cross[shell] += (fa[z, y, x] * np.conj(fb[z, y, x])).real
        pa[shell] += abs(fa[z, y, x]) ** 2
        pb[shell] += abs(fb[z, y, x]) ** 2
    return np.array(
        [c / np.sqrt(p * q) if p * q > 0 else 0.0 for c, p, q in zip(cross, pa, pb, strict=True)]
    )


@pytest.mark.parametrize("box", [6, 7])
def test_fsc_equals_the_full_fft_shell_loop(box: int) -> None:
    rng = np.random.default_rng(box)
    a = rng.normal(size=(box,) * 3)
    b = a + rng.normal(scale=1.5, size=a.shape)
    curve = fsc(a, b)
    assert curve.box == box
    np.testing.assert_allclose(curve.frequency, np.arange(box // 2 + 1) / box)
    np.testing.assert_allclose(curve.fsc, _fsc_loop(a, b), atol=1e-12)
    mask = rng.uniform(0.0, 1.0, size=a.shape)
    np.testing.assert_allclose(fsc(a, b, mask).fsc, _fsc_loop(a * mask, b * mask), atol=1e-12)
    np.testing.assert_allclose(fsc(a, a).fsc, 1.0, atol=1e-12)  # a map with itself
    np.testing.assert_allclose(fsc(a, -a).fsc, -1.0, atol=1e-12)


def test_fsc_refuses_pairs_that_are_not_two_cubes_of_one_shape() -> None:
    cube = np.zeros((4, 4, 4))
    for other in [np.zeros((4, 4, 5)), np.zeros((5, 5, 5)), np.zeros((4, 4))]:
        with pytest.raises(GeometryError, match="two cubic maps"):
            fsc(cube, other)
    with pytest.raises(GeometryError, match="two cubic maps"):
        fsc(np.zeros((4, 4, 5)), np.zeros((4, 4, 5)))
    with pytest.raises(GeometryError, match="two cubic maps"):
        fsc(cube, cube, mask=np.ones((4, 4, 5)))


def test_resolution_crossings_worked_by_hand() -> None:
    box = 6
    curve = FSCCurve(np.arange(4) / box, np.array([1.0, 0.8, 0.4, 0.1]), box)
    # first below 0.5 at shell 2; 0.8 -> 0.4 crosses 0.5 three quarters of the way: shell 1.75
    assert curve.resolution_px(0.5) == pytest.approx(6 / 1.75)
    assert curve.resolution_angstrom(0.5, 2.5) == pytest.approx(2.5 * 6 / 1.75)
    # 1.0 -> 0.8 crosses 0.9 half way: shell 0.5
    assert curve.resolution_px(0.9) == pytest.approx(6 / 0.5)
    # a value equal to the threshold is not below it: the first shell below is 3, reached
    # at t = 0 from shell 2 (a period of 6 / 2 voxels)
    at = FSCCurve(np.arange(4) / box, np.array([1.0, 0.5, 0.5, 0.2]), box)
    assert at.resolution_px(0.5) == pytest.approx(3.0)
    # never below: Nyquist
    assert curve.resolution_px(0.05) == 2.0
    assert FSCCurve(np.arange(4) / box, np.ones(4), box).resolution_angstrom(0.143, 3.0) == 6.0
    # below from the first shell on: no resolution at all (a period far beyond the box)
    low = FSCCurve(np.arange(4) / box, np.array([0.3, 0.1, 0.0, 0.0]), box)
    assert low.resolution_px(0.5) >= 1e5 * box
    flat = FSCCurve(np.arange(4) / box, np.array([0.3, 0.3, 0.0, 0.0]), box)
    assert flat.resolution_px(0.5) >= 1e5 * box
    # shell 0 is never a crossing: below the threshold there, the search starts at shell 1
    dip = FSCCurve(np.arange(4) / box, np.array([0.3, 0.9, 0.1, 0.6]), box)
    assert dip.resolution_px(0.5) == pytest.approx(6 / 1.5)


def _raised_cosine(r: float, resolution_px: float, edge_shells: float, box: int) -> float:
    cut = 1.0 / max(resolution_px, 2.0)
    half = edge_shells / (2.0 * box)
    if half == 0:
        return 0.0 if r > cut else 1.0
    if r <= cut - half:
        return 1.0
    if r >= cut + half:
        return 0.0
    return 0.5 * (1.0 + np.cos(np.pi * (r - (cut - half)) / (2.0 * half)))


def _filter_loop(v: np.ndarray, weight) -> np.ndarray:
    """``v`` with FFT component ``(z, y, x)`` multiplied by ``weight(z, y, x)`` (full FFT)."""
    box = v.shape[0]
    f = np.fft.fftn(v.astype(np.float64))
    for z, y, x in itertools.product(range(box), repeat=3):
        f[z, y, x] *= weight(z, y, x)
    return np.fft.ifftn(f).real


@pytest.mark.parametrize(
    ("box", "resolution_px", "edge_shells"),
    [(8, 4.0, 2.0), (9, 3.0, 2.0), (8, 1.5, 2.0), (8, 4.0, 0.0), (7, 2.5, 3.0)],
)
def test_lowpass_equals_a_per_frequency_raised_cosine(box, resolution_px, edge_shells) -> None:
    v = np.random.default_rng(box).normal(size=(box,) * 3).astype(np.float32)
    out = lowpass(v, resolution_px, edge_shells=edge_shells)
    assert out.shape == v.shape and out.dtype == np.float32

    def weight(z, y, x):
        return _raised_cosine(_radius(box, z, y, x), resolution_px, edge_shells, box)

    np.testing.assert_allclose(out, _filter_loop(v, weight), atol=2e-5)


def test_lowpass_refuses_non_cubes_and_periods_that_are_not_positive() -> None:
    with pytest.raises(GeometryError, match="cubic"):
        lowpass(np.zeros((4, 4, 5), np.float32), 4.0)
    with pytest.raises(GeometryError, match="cubic"):
        lowpass(np.zeros((4, 4), np.float32), 4.0)
    for bad in [0.0, -3.0, float("nan")]:
        with pytest.raises(GeometryError, match="period > 0"):
            lowpass(np.zeros((4, 4, 4), np.float32), bad)


@pytest.mark.parametrize("box", [8, 9])
def test_fsc_weighting_equals_the_per_shell_formula_then_the_lowpass(box: int) -> None:
    rng = np.random.default_rng(2)
    v = rng.normal(size=(box,) * 3).astype(np.float32)
    values = np.array([1.0, 0.9, 0.6, -0.2, 1.4])  # clipped to [0, 1] before weighting
    curve = FSCCurve(np.arange(box // 2 + 1) / box, values, box)
    out = fsc_weighted(v, curve, 3.0)
    assert out.shape == v.shape and out.dtype == np.float32

    def weight(z, y, x):
        shell = min(int(np.rint(_radius(box, z, y, x) * box)), box // 2)
        f = min(max(values[shell], 0.0), 1.0)
        return np.sqrt(2.0 * f / (1.0 + f))

    weighted = _filter_loop(v, weight).astype(np.float32)

    def cosine(z, y, x):
        return _raised_cosine(_radius(box, z, y, x), 3.0, 2.0, box)

    np.testing.assert_allclose(out, _filter_loop(weighted, cosine), atol=2e-5)
    # float64 input is taken as float32
    np.testing.assert_array_equal(fsc_weighted(v.astype(np.float64) + 1e-12, curve, 3.0), out)


def test_every_kernel_refuses_lazy_input_naming_itself() -> None:
    lazy = da.zeros((4, 4, 4), chunks=2)
    curve = FSCCurve(np.arange(3) / 4, np.ones(3), 4)
    with pytest.raises(TypeError, match="fsc_weighted is a kernel"):
        fsc_weighted(lazy, curve, 3.0)
    with pytest.raises(TypeError, match="lowpass is a kernel"):
        lowpass(lazy, 3.0)
    with pytest.raises(TypeError, match="fsc is a kernel"):
        fsc(lazy, np.zeros((4, 4, 4)))
    with pytest.raises(TypeError, match="fsc is a kernel"):
        fsc(np.zeros((4, 4, 4)), lazy)
