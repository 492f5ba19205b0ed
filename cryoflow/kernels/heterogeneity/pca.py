"""PCA over batches with bounded memory: a randomized range finder on the covariance.

The covariance of ``n`` feature vectors of length ``D`` (:mod:`.features`) is ``D x D``
(a 64^3 box at a 3-voxel band: ``D ~ 40 000``, 13 GB), so it is never formed. Instead
(Halko, Martinsson & Tropp 2011, algorithm 4.4, on ``C = E[x x^T] - mu mu^T``):

1. *sketch pass*: every batch returns :class:`SketchSums`, ``sum x``, ``sum x (x^T Omega)``
   and ``sum |x|^2`` for a probe ``Omega`` (D, l), ``l = components + oversampling``; the
   sums add as a tree; ``Y = C Omega`` from them (:func:`sketch_range`), and its orthonormal
   basis ``Q`` (D, l) is the next probe (``power_iterations`` more sketch passes sharpen it
   where the spectrum decays slowly, as it does under noise);
2. *projection pass*: every batch returns ``x Q`` per particle (n_b, l) and
   :class:`ProjectionSums`; :func:`finish_pca` diagonalises the small ``Q^T C Q`` (l, l)
   into the eigenvalues and eigenvectors ``V = Q U`` (the eigenvolumes), and every
   particle's coordinates are ``(x Q - mu Q) U`` (:func:`coordinates`), no further pass.

Memory per task: the batch, ``D x l`` and ``l x l``; the number of particles adds only
tasks and an ``(n, l)`` table. Passes over the data: ``2 + power_iterations``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.kernels.sums import FieldSums


@dataclass(frozen=True)
class SketchSums(FieldSums):
    """``total`` (D,) ``sum x``; ``product`` (D, l) ``sum x (x^T Omega)``; ``power`` the sum
    of ``|x|^2``; ``count`` the particles. Float64; ``a + b`` is associative."""

    total: np.ndarray
    product: np.ndarray
    power: float
    count: int


@dataclass(frozen=True)
class ProjectionSums(FieldSums):
    """``total`` (l,) ``sum Q^T x``; ``gram`` (l, l) ``sum (Q^T x)(Q^T x)^T``; ``count``."""

    total: np.ndarray
    gram: np.ndarray
    count: int


def initial_probe(dim: int, width: int, seed: int = 0) -> np.ndarray:
    """ndarray (D, l) float64: a seeded Gaussian probe ``Omega``."""
    if int(width) < 1 or int(dim) < int(width):
        raise ConfigError(
            f"a PCA sketch needs 1 <= width <= the feature length, got width {width} for "
            f"length {dim}"
        )
    return np.random.default_rng(seed).standard_normal((int(dim), int(width)))


def _check(features: np.ndarray, basis: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != basis.shape[0]:
        raise GeometryError(
            f"features must be (n, {basis.shape[0]}) for a ({basis.shape[0]}, l) probe, got "
            f"{x.shape}"
        )
    return x


def sketch_batch(features: np.ndarray, probe: np.ndarray) -> SketchSums:
    """:class:`SketchSums` of a batch ``features`` (n, D) for ``probe`` (D, l)."""
    x = _check(features, probe)
    return SketchSums(x.sum(axis=0), x.T @ (x @ probe), float((x * x).sum()), len(x))


def sketch_range(sums: SketchSums, probe: np.ndarray) -> np.ndarray:
    """ndarray (D, l): an orthonormal basis of ``C Omega`` (the next probe, or ``Q``)."""
    if sums.count < 2:
        raise GeometryError(f"a PCA needs at least 2 particles, got {sums.count}")
    mu = sums.total / sums.count
    y = sums.product / sums.count - np.outer(mu, mu @ probe)
    q, _ = np.linalg.qr(y)
    return q


def project_batch(features: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, ProjectionSums]:
    """``x Q`` (n, l) per particle and the batch's :class:`ProjectionSums` for ``Q`` (D, l)."""
    x = _check(features, basis)
    p = x @ basis
    return p, ProjectionSums(p.sum(axis=0), p.T @ p, len(p))


@dataclass(frozen=True)
class PcaBasis:
    """The principal components: ``components`` (L, D) unit eigenvectors (feature space),
    ``variances`` (L,) their eigenvalues, descending; ``mean`` (D,); ``total_variance`` the
    trace of the covariance; ``rotation`` (l, L) ``U`` and ``mean_projection`` (l,) ``Q^T mu``
    (what :func:`coordinates` needs)."""

    components: np.ndarray
    variances: np.ndarray
    mean: np.ndarray
    total_variance: float
    rotation: np.ndarray
    mean_projection: np.ndarray

    @property
    def explained_ratio(self) -> np.ndarray:
        """ndarray (L,): each component's share of the total variance."""
        return self.variances / max(self.total_variance, 1e-30)


def finish_pca(
    sketch: SketchSums, projection: ProjectionSums, basis: np.ndarray, n_components: int
) -> PcaBasis:
    """The ``n_components`` leading components from the last sketch and the projection pass."""
    if projection.count != sketch.count or projection.count < 2:
        raise GeometryError(
            f"the sketch and the projection must cover the same >= 2 particles, got "
            f"{sketch.count} and {projection.count}"
        )
    n = projection.count
    mu = sketch.total / n
    mq = projection.total / n
    small = projection.gram / n - np.outer(mq, mq)
    vals, vecs = np.linalg.eigh(0.5 * (small + small.T))
    order = np.argsort(vals)[::-1][: int(n_components)]
    u = vecs[:, order]
    total = sketch.power / n - float(mu @ mu)
    return PcaBasis((basis @ u).T, np.maximum(vals[order], 0.0), mu, total, u, mq)


def coordinates(pca: PcaBasis, projected: np.ndarray) -> np.ndarray:
    """ndarray (n, L): principal coordinates from ``x Q`` (n, l) of :func:`project_batch`."""
    p = np.asarray(projected, dtype=np.float64)
    return (p - pca.mean_projection) @ pca.rotation
