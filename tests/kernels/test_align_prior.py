"""The Gaussian orientation prior of ``align_batch`` (``SearchParams.prior_sigma_deg``).

Small: 20^3 boxes, 6 particles, local searches only.
"""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import ConfigError
from cryoflow.geometry.rotation import angular_distance_deg, matrix_xyz_from_euler
from cryoflow.kernels.align import RoundReferences, SearchParams, align_batch
from cryoflow.kernels.fsc import lowpass
from cryoflow.kernels.masks import spherical_mask
from cryoflow.simulate.subtomo import ribosome_shape, simulate_subtomograms

BOX = 20
LEVELS = ((6.0, 18.0), (2.0, 6.0))


def _phantom(snr: float, seed: int):
    return simulate_subtomograms(
        [ribosome_shape()], 6, box=BOX, pixel_size_angstrom=18.0, snr=snr, seed=seed
    )


def _refs(sim) -> RoundReferences:
    return RoundReferences(lowpass(sim.truth[0], 3.0)[None], spherical_mask(BOX, 8.0, 2.0), 3.0)


def _offset(euler: np.ndarray, deg: float, seed: int) -> np.ndarray:
    """Each orientation turned by ``deg`` about a random axis (the starting priors)."""
    from scipy.spatial.transform import Rotation

    from cryoflow.geometry.rotation import euler_from_matrix_xyz

    axes = np.random.default_rng(seed).normal(size=(len(euler), 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    turn = Rotation.from_rotvec(np.radians(deg) * axes).as_matrix()
    return euler_from_matrix_xyz(matrix_xyz_from_euler(euler) @ turn)


def _angles(found: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return angular_distance_deg(matrix_xyz_from_euler(found), matrix_xyz_from_euler(ref))


def test_a_strong_prior_keeps_noise_at_its_anchor_and_none_lets_it_wander() -> None:
    sim = _phantom(1.0, 3)
    rng = np.random.default_rng(5)
    noise = rng.normal(size=sim.volumes.shape).astype(np.float32)  # no signal at all
    refs, anchor = _refs(sim), sim.euler_deg
    free = align_batch(
        noise, sim.tilt_ranges, refs, SearchParams(None, LEVELS, 2.0), priors_euler_deg=anchor
    )
    held = align_batch(
        noise,
        sim.tilt_ranges,
        refs,
        SearchParams(None, LEVELS, 2.0, prior_sigma_deg=0.5),
        priors_euler_deg=anchor,
    )
    assert np.median(_angles(free.euler_deg, anchor)) > 5.0  # the free search fits the noise
    assert np.all(_angles(held.euler_deg, anchor) < 1.0)


def test_a_moderate_prior_gives_way_to_strong_data_and_a_tight_one_pulls() -> None:
    from cryoflow.simulate.subtomo import hinge_shape

    sim = simulate_subtomograms(
        [hinge_shape(20.0)], 6, box=BOX, pixel_size_angstrom=16.0, snr=20.0, seed=4
    )
    refs = RoundReferences(lowpass(sim.truth[0], 2.5)[None], spherical_mask(BOX, 8.0, 2.0), 2.5)
    start = _offset(sim.euler_deg, 10.0, 6)  # the search starts 10 degrees off the truth
    found = {}
    for sigma in (None, 10.0):
        found[sigma] = align_batch(
            sim.volumes,
            sim.tilt_ranges,
            refs,
            SearchParams(None, LEVELS, 6.0, prior_sigma_deg=sigma),
            priors_euler_deg=start,
            priors_shifts_zyx_px=sim.shifts_zyx_px,
        ).euler_deg
    free, prior = (np.median(_angles(found[k], sim.euler_deg)) for k in (None, 10.0))
    assert free < 5.0 and prior < free + 1.0  # well measured: the data win over the prior
    # a tight prior about an anchor apart from the start pulls the result to the anchor
    pulled = align_batch(
        sim.volumes,
        sim.tilt_ranges,
        refs,
        SearchParams(None, LEVELS, 6.0, prior_sigma_deg=0.3),
        priors_euler_deg=sim.euler_deg,
        priors_shifts_zyx_px=sim.shifts_zyx_px,
        anchor_euler_deg=start,
    ).euler_deg
    assert np.median(_angles(pulled, start)) < 0.5 * np.median(_angles(found[None], start))


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan")])
def test_bad_prior_sigma_is_refused(sigma: float) -> None:
    with pytest.raises(ConfigError, match="prior_sigma_deg"):
        SearchParams(None, LEVELS, 2.0, prior_sigma_deg=sigma)
