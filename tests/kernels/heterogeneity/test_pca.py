"""The randomized PCA over batches, wedge-filled features, k-means with K by BIC."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.geometry.rotation import random_euler
from cryoflow.kernels.heterogeneity.features import (
    feature_dimension,
    features_batch,
    features_to_volumes,
)
from cryoflow.kernels.heterogeneity.groups import tree_sum
from cryoflow.kernels.heterogeneity.kmeans import cluster
from cryoflow.kernels.heterogeneity.pca import (
    coordinates,
    finish_pca,
    initial_probe,
    project_batch,
    sketch_batch,
    sketch_range,
)
from cryoflow.kernels.heterogeneity.subtract import place_in_poses
from cryoflow.kernels.masks import spherical_mask
from cryoflow.simulate.subtomo import render_shape, ribosome_shape


def _randomized(x: np.ndarray, k: int, power: int, batch: int = 25):  # type: ignore[no-untyped-def]
    probe = initial_probe(x.shape[1], k + 8, seed=1)
    for _ in range(1 + power):
        sk = tree_sum([sketch_batch(x[i : i + batch], probe) for i in range(0, len(x), batch)])
        probe = sketch_range(sk, probe)
    proj, sums = zip(
        *(project_batch(x[i : i + batch], probe) for i in range(0, len(x), batch)), strict=True
    )
    basis = finish_pca(sk, tree_sum(list(sums)), probe, k)
    return basis, coordinates(basis, np.concatenate(proj))


def test_randomized_pca_over_batches_matches_the_exact_decomposition() -> None:
    rng = np.random.default_rng(0)
    n, d, k = 300, 400, 3
    loadings = rng.normal(size=(k, d)) * np.array([10.0, 6.0, 4.0])[:, None]
    x = rng.normal(size=(n, k)) @ loadings + rng.normal(size=(n, d)) + 5.0
    basis, coords = _randomized(x, k, power=1)
    assert len(basis.variances) == k
    xc = x - x.mean(axis=0)
    vals, vecs = np.linalg.eigh(xc.T @ xc / n)
    top = vecs[:, ::-1][:, :k]
    np.testing.assert_allclose(basis.variances, vals[::-1][:k], rtol=0.02)
    # the same subspace: every component lies in the exact top-k span
    overlap = np.linalg.norm(top.T @ basis.components.T, axis=0)
    assert overlap.min() > 0.99
    np.testing.assert_allclose(coords, xc @ basis.components.T, atol=1e-6)
    assert basis.explained_ratio.sum() == pytest.approx(vals[::-1][:k].sum() / vals.sum(), 1e-3)
    with pytest.raises(GeometryError):
        sketch_batch(x[:, :10], initial_probe(d, 5))
    with pytest.raises(ConfigError):
        initial_probe(4, 5)


def test_wedge_filled_features_carry_no_variance_from_the_wedges() -> None:
    box, px, n = 16, 24.0, 8
    truth = render_shape(ribosome_shape(), box, px)
    rng = np.random.default_rng(3)
    euler = random_euler(rng, n)
    shifts = rng.uniform(-1, 1, (n, 3))
    tr = np.tile([-60.0, 60.0], (n, 1))
    parts = place_in_poses(truth, euler, shifts, tr)  # one map, many poses and wedges
    mask = spherical_mask(box, box / 2 - 2, 2)
    kw = dict(mask=mask, resolution_px=3.0)
    filled = features_batch(parts, euler, shifts, tr, average=truth, **kw)
    # the same particles, "filled" with nothing (average zero): their wedges differ
    empty = features_batch(parts, euler, shifts, tr, average=np.zeros_like(truth), **kw)
    spread = lambda f: float(np.linalg.norm(f - f.mean(0)) / np.linalg.norm(f.mean(0)))  # noqa: E731
    assert spread(filled) < 0.25 < 0.75 < spread(empty)
    assert filled.shape == (n, feature_dimension(box, 3.0))
    # back to a map: the band-limited, masked truth
    back = features_to_volumes(filled.mean(0), box, 3.0)[0]
    assert np.corrcoef(back.ravel(), (truth * mask).ravel())[0, 1] > 0.9


def test_kmeans_with_k_by_bic() -> None:
    rng = np.random.default_rng(5)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    sizes = [50, 30, 20]
    x = np.concatenate([c + rng.normal(size=(s, 2)) for c, s in zip(centres, sizes, strict=True)])
    truth = np.repeat([0, 1, 2], sizes)
    found = cluster(x, None, max_classes=5)
    assert found.n_classes == 3 and len(found.bic) == 5
    np.testing.assert_array_equal(found.labels, truth)  # ordered by size, largest first
    one = cluster(rng.normal(size=(80, 2)), None, max_classes=4)
    assert one.n_classes == 1
    assert cluster(x, 2).n_classes == 2
    with pytest.raises(ConfigError):
        cluster(x, 0)
