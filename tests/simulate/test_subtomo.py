"""Subtomogram phantoms: the contract's orientation convention, shifts, wedge, SNR, shapes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoflow.errors import ConfigError
from cryoflow.geometry.rotation import matrix_zyx_from_euler
from cryoflow.geometry.symmetry import parse_symmetry
from cryoflow.kernels.wedge import wedge_mask
from cryoflow.simulate.subtomo import (
    cyclic_shape,
    hinge_shape,
    render_shape,
    ribosome_shape,
    simulate_subtomograms,
)


def _com(v: np.ndarray) -> np.ndarray:
    return np.array(ndimage.center_of_mass(np.clip(v, 0, None))) - v.shape[0] // 2


def test_render_follows_the_contract_convention() -> None:
    """The density at offset r is the reference's at R^-1 (r - s): its centre of mass moves to
    M c + s, and a point of the body frame lands at M p + s."""
    shape = ribosome_shape()
    ref = render_shape(shape, 32, 14.0)
    e = [40.0, 70.0, -30.0]
    m = matrix_zyx_from_euler(e)
    s = np.array([1.0, -2.0, 0.5])
    part = render_shape(shape, 32, 14.0, rotation_zyx=m, shift_zyx_px=s)
    np.testing.assert_allclose(_com(part), m @ _com(ref) + s, atol=0.1)
    # the protuberance (body (z, y, x) = (85, 0, -45) A) is where M puts it
    p = np.array([85.0, 0.0, -45.0]) / 14.0
    q = np.rint(m @ p + s).astype(int) + 16
    assert part[tuple(q)] > 0.5


def test_particles_truth_wedge_and_snr() -> None:
    sim = simulate_subtomograms(
        [ribosome_shape()],
        6,
        box=24,
        pixel_size_angstrom=20.0,
        snr=0.5,
        tilt_range_deg=(-60.0, 60.0),
        max_shift_px=2.0,
        seed=3,
    )
    assert sim.volumes.shape == (6, 24, 24, 24) and sim.truth.shape == (1, 24, 24, 24)
    assert np.all(np.linalg.norm(sim.shifts_zyx_px, axis=1) <= 2.0)
    noise = sim.volumes - sim.clean
    ratio = sim.clean.var(axis=(1, 2, 3)) / noise.var(axis=(1, 2, 3))
    np.testing.assert_allclose(ratio, 0.5, rtol=1e-3)
    # noise and signal live inside the wedge (the box is cut from a larger filtered region,
    # so a little leaks across the edge of the wedge)
    w = wedge_mask((24,) * 3, (-60.0, 60.0), rfft=True)
    power = np.abs(np.fft.rfftn(sim.volumes[0])) ** 2
    assert power[~w].sum() < 0.1 * power[w].sum()
    again = simulate_subtomograms(
        [ribosome_shape()], 6, box=24, pixel_size_angstrom=20.0, snr=0.5, seed=3
    )
    np.testing.assert_array_equal(again.volumes, sim.volumes)


def test_labels_choose_shapes() -> None:
    shapes = [hinge_shape(0.0), hinge_shape(40.0)]
    sim = simulate_subtomograms(
        shapes,
        4,
        box=24,
        pixel_size_angstrom=12.0,
        snr=None,
        labels=[0, 1, 1, 0],
        tilt_range_deg=np.array([[-60, 60], [-50, 40], [-60, 60], [-30, 70]]),
    )
    np.testing.assert_array_equal(sim.labels, [0, 1, 1, 0])
    assert np.abs(sim.truth[0] - sim.truth[1]).max() > 0.5  # the arm moved
    np.testing.assert_array_equal(sim.tilt_ranges[1], [-50, 40])


def test_cyclic_shape_has_its_symmetry_only() -> None:
    shape = cyclic_shape(4)
    ref = render_shape(shape, 24, 10.0)
    c4 = parse_symmetry("C4")
    turned = render_shape(shape, 24, 10.0, rotation_zyx=c4.operators_zyx[1])
    assert np.abs(turned - ref).max() < 0.02
    flip = parse_symmetry("D4").operators_zyx[4]  # a two-fold about x: not a symmetry
    assert np.abs(render_shape(shape, 24, 10.0, rotation_zyx=flip) - ref).max() > 0.3
    other = render_shape(shape, 24, 10.0, rotation_zyx=matrix_zyx_from_euler([45.0, 0, 0]))
    assert np.abs(other - ref).max() > 0.5


def test_bad_configs_are_named() -> None:
    with pytest.raises(ConfigError, match="at least one shape"):
        simulate_subtomograms([], 3, box=16, pixel_size_angstrom=10.0)
    with pytest.raises(ConfigError, match="snr"):
        simulate_subtomograms([ribosome_shape()], 3, box=16, pixel_size_angstrom=10.0, snr=-1)
    with pytest.raises(ConfigError, match="labels"):
        simulate_subtomograms(
            [ribosome_shape()], 2, box=16, pixel_size_angstrom=10.0, labels=[0, 3]
        )
    with pytest.raises(ConfigError, match="n >= 1"):
        cyclic_shape(0)
