"""Classes in a latent space: mixtures, BIC, k-means and the matched accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import ConfigError
from cryoflow.kernels.latent_classes import class_accuracy, classify_latent


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, 150)
    centres = np.array([[0, 0, 0, 0], [4, 0, 0, 1], [0, 5, -1, 0]], float)
    return centres[truth] + rng.normal(size=(150, 4)) * 0.5, truth


def test_bic_finds_three_classes_and_labels_match() -> None:
    z, truth = _blobs()
    c = classify_latent(z)
    assert c.n_classes == 3
    assert class_accuracy(c.labels, truth) == 1.0
    assert np.nanargmin(c.bic) == 2
    sizes = np.bincount(c.labels)
    assert list(sizes) == sorted(sizes, reverse=True)


def test_kmeans_and_given_k() -> None:
    z, truth = _blobs(1)
    assert class_accuracy(classify_latent(z, classes=3, method="kmeans").labels, truth) == 1.0
    assert classify_latent(z, classes=2).n_classes == 2
    with pytest.raises(ConfigError, match="k-means needs"):
        classify_latent(z, method="kmeans")
    with pytest.raises(ConfigError, match="method"):
        classify_latent(z, classes=2, method="spectral")


def test_accuracy_is_permutation_invariant() -> None:
    truth = np.array([0, 0, 1, 1, 2, 2])
    assert class_accuracy(np.array([2, 2, 0, 0, 1, 1]), truth) == 1.0
    assert class_accuracy(np.array([0, 0, 0, 0, 0, 0]), truth) == pytest.approx(1 / 3)
