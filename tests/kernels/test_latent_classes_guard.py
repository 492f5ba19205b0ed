"""The small-class guard of K by BIC: no class smaller than one full Gaussian's parameters."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.kernels.latent_classes import class_accuracy, classify_latent, min_class_size


def test_min_class_size_is_the_parameter_count_of_one_full_gaussian() -> None:
    assert [min_class_size(d) for d in (1, 2, 4, 8)] == [3, 6, 15, 45]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_small_set_of_one_shape_is_one_class(seed: int) -> None:
    # 24 particles of one shape: a curved, noisy cloud in 4 latent dimensions (not a Gaussian,
    # which is what made BIC split such a set into many small classes)
    rng = np.random.default_rng(seed)
    t = rng.uniform(-2, 2, 24)
    z = np.stack([t, t**2, np.sin(2 * t), 0.1 * t], axis=1) + rng.normal(size=(24, 4)) * 0.05
    found = classify_latent(z, seed=seed)
    assert found.n_classes == 1
    assert np.isnan(found.bic[1:]).all()  # K > 1 not admitted


def test_guarded_bic_still_finds_real_classes_and_each_is_large_enough() -> None:
    rng = np.random.default_rng(3)
    truth = np.repeat([0, 1, 2], 20)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    z = centres[truth] + rng.normal(size=(60, 2))
    found = classify_latent(z)
    assert found.n_classes == 3
    assert class_accuracy(found.labels, truth) >= 0.95
    assert np.bincount(found.labels).min() >= min_class_size(2)


def test_a_given_k_is_never_refused_by_the_guard() -> None:
    z = np.random.default_rng(4).normal(size=(24, 4))
    assert classify_latent(z, classes=6).n_classes == 6


def test_one_common_scale_keeps_a_quiet_axis_quiet() -> None:
    # two classes along axis 0; axis 1 is pure noise of a thousandth the spread: per-axis
    # standardisation would stretch the noise to the classes' spread
    rng = np.random.default_rng(5)
    truth = np.repeat([0, 1], 40)
    z = np.stack([truth * 4.0 + rng.normal(size=80), rng.uniform(-1, 1, 80) * 1e-3], axis=1)
    km = classify_latent(z, classes=2, method="kmeans")
    assert class_accuracy(km.labels, truth) >= 0.95
