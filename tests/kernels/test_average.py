"""Fourier-space averaging: complementary wedges fill each other, sums add as a tree."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.geometry.rotation import euler_from_matrix_zyx, matrix_zyx_from_euler
from cryoflow.kernels.average import HalfSums, accumulate_batch, reconstruct
from cryoflow.kernels.fsc import fsc
from cryoflow.kernels.wedge import apply_wedge
from cryoflow.simulate.subtomo import render_shape, ribosome_shape

BOX, PX = 24, 20.0


def _pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shape seen twice through a +-45 wedge: as is, and turned 90 degrees about y."""
    shape = ribosome_shape()
    e = np.array([[10.0, 35.0, 20.0], [10.0, 35.0, 20.0]])
    turn = matrix_zyx_from_euler([0.0, 90.0, 0.0])  # about y: swaps the x and z directions
    m = matrix_zyx_from_euler(e[0])
    e[1] = euler_from_matrix_zyx(turn @ m)
    # as in a tomogram: the wedge acts on a larger region, the box is cut out of it
    cut = slice(BOX // 2, BOX // 2 + BOX)
    parts = np.stack(
        [
            apply_wedge(
                render_shape(shape, 2 * BOX, PX, rotation_zyx=matrix_zyx_from_euler(x)),
                (-45.0, 45.0),
            )[cut, cut, cut]
            for x in e
        ]
    )
    return parts, e, render_shape(shape, BOX, PX)


def test_complementary_wedges_fill_the_wedge() -> None:
    parts, e, truth = _pair()
    tr = np.array([[-45.0, 45.0]] * 2)
    one = accumulate_batch(parts[:1], e[:1], np.zeros((1, 3)), tr[:1], np.zeros(1, int))
    both = accumulate_batch(parts, e, np.zeros((2, 3)), tr, np.zeros(2, int))
    k = np.sqrt(
        sum(
            g**2
            for g in np.meshgrid(
                np.fft.fftfreq(BOX), np.fft.fftfreq(BOX), np.fft.rfftfreq(BOX), indexing="ij"
            )
        )
    )
    inside = k < 0.45
    # the two wedges cover every direction: each component measured once or twice
    w = both.weight[0][inside]
    assert w.min() >= 1.0 and w.max() <= 2.0
    assert one.weight[0][inside].min() == 0.0  # one particle alone leaves a wedge empty
    avg1 = reconstruct(one.data[0], one.weight[0], 1)
    avg2 = reconstruct(both.data[0], both.weight[0], 2)
    f1 = fsc(avg1, truth).fsc[1:7]
    f2 = fsc(avg2, truth).fsc[1:7]
    # measured: 0.99 0.99 0.97 0.95 0.92 0.71 (filled) vs one particle's wedge-limited copy
    assert f2.min() > 0.65 and f2[:5].min() > 0.9  # filled: the truth up to interpolation
    assert np.all(f2 > f1) and f1.min() < 0.6


def test_shifts_are_undone() -> None:
    shape = ribosome_shape()
    s = np.array([[1.5, -0.75, 2.25]])
    e = np.array([[30.0, 60.0, 10.0]])
    m = matrix_zyx_from_euler(e[0])
    part = render_shape(shape, BOX, PX, rotation_zyx=m, shift_zyx_px=s[0])[None]
    full = np.array([[-90.0, 90.0]])
    sums = accumulate_batch(part, e, s, full, np.zeros(1, int))
    avg = reconstruct(sums.data[0], sums.weight[0], 1)
    truth = render_shape(shape, BOX, PX)
    assert np.abs(avg - truth).max() < 0.05 * truth.max()
    wrong = accumulate_batch(part, e, -s, full, np.zeros(1, int))  # the sign matters
    assert np.abs(reconstruct(wrong.data[0], wrong.weight[0], 1) - truth).max() > 0.3


def test_sums_add_associatively_in_any_grouping() -> None:
    rng = np.random.default_rng(0)
    parts = rng.normal(size=(5, 12, 12, 12)).astype(np.float32)
    e = rng.uniform(-180, 180, (5, 3))
    s = rng.uniform(-1, 1, (5, 3))
    tr = np.array([[-60.0, 60.0], [-50.0, 40.0], [-60.0, 60.0], [-30.0, 70.0], [-60.0, 60.0]])
    h = np.array([0, 1, 1, 0, 1])

    def batch(sl: slice) -> HalfSums:
        return accumulate_batch(parts[sl], e[sl], s[sl], tr[sl], h[sl])

    whole = batch(slice(0, 5))
    a, b, c = batch(slice(0, 2)), batch(slice(2, 3)), batch(slice(3, 5))
    for total in ((a + b) + c, a + (b + c), (c + a) + b, HalfSums.zeros(12) + whole):
        np.testing.assert_allclose(total.data, whole.data, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(total.weight, whole.weight)
        np.testing.assert_array_equal(total.count, [2, 3])


def test_symmetry_adds_every_copy() -> None:
    rng = np.random.default_rng(1)
    part = rng.normal(size=(1, 12, 12, 12)).astype(np.float32)
    e = np.array([[20.0, 50.0, 70.0]])
    tr = np.array([[-60.0, 60.0]])
    c3 = accumulate_batch(part, e, np.zeros((1, 3)), tr, np.zeros(1, int), symmetry="C3")
    # the same particle added with the three equivalent orientations R g
    from cryoflow.geometry.rotation import euler_from_matrix_xyz, matrix_xyz_from_euler
    from cryoflow.geometry.symmetry import parse_symmetry

    eq = euler_from_matrix_xyz(parse_symmetry("C3").expand_xyz(matrix_xyz_from_euler(e))[0])
    by_hand = accumulate_batch(
        np.repeat(part, 3, 0), eq, np.zeros((3, 3)), np.repeat(tr, 3, 0), np.zeros(3, int)
    )
    np.testing.assert_allclose(c3.data, by_hand.data, rtol=1e-5, atol=1e-4)
    assert c3.count[0] == 3


def test_bad_input_is_named() -> None:
    with pytest.raises(GeometryError, match="one orientation, shift, tilt range and half id"):
        accumulate_batch(
            np.zeros((2, 8, 8, 8)),
            np.zeros((1, 3)),
            np.zeros((2, 3)),
            np.zeros((2, 2)),
            np.zeros(2, int),
        )
    with pytest.raises(GeometryError, match="half ids must be 0 or 1"):
        accumulate_batch(
            np.zeros((1, 8, 8, 8)),
            np.zeros((1, 3)),
            np.zeros((1, 3)),
            np.array([[-60.0, 60.0]]),
            np.array([2]),
        )
    with pytest.raises(GeometryError, match="boxes 8 and 10"):
        HalfSums.zeros(8) + HalfSums.zeros(10)
