"""Classes in a latent space: Gaussian mixture (K given or chosen by BIC) or k-means, and the
accuracy of a labelling against a truth.

- ``method="gmm"``: scikit-learn's ``GaussianMixture`` with one covariance shared by all
  classes (``covariance_type="tied"``: conformations differ in their means, while the spread
  about them, from noise and alignment errors, is alike; per-class full covariances, fitted
  from a few dozen points each, followed elongated noise instead), started from the k-means
  partition (below) and refined by one EM run from there. Without ``classes``, ``K`` is the one of ``1 .. max_classes`` with the
  lowest BIC (``-2 log L + p log n``; ``p = K - 1 + K D + D (D + 1) / 2`` parameters).
- ``method="kmeans"``: scikit-learn's ``KMeans`` (``classes`` required: k-means has no
  likelihood for BIC).

**The start** (why not likelihood restarts): on a few dozen points per class the mixture's
likelihood has several optima, and the best one is often not the conformations' split: the
tied covariance whitens the latent space, so a quiet axis with a little structure weighs as
much as the axis that separates the classes. Restarts chosen by likelihood (scikit-learn's
``n_init`` from single k-means or random seeds) found it and lost: ribosome 0.72 and a +-90 deg
continuum 0.57 against k-means' 0.94 / 0.85, and more restarts did worse. The mixture therefore
starts from the best of ``n_init`` k-means runs (Euclidean geometry, the common scale below)
and EM refines that partition (0.91 / 0.86 on the same points); it never searches for another.

**Small classes** (the BIC guard): a mixture whose smallest class (hard labels) holds fewer
particles than one full Gaussian has parameters, ``1 + D + D (D + 1) / 2`` (15 in 4
dimensions), is not admitted when ``K`` is chosen by BIC: such a class has fewer points than
its own mean and covariance would need, and BIC (whose penalty is an approximation for many
points per parameter) then over-splits small sets (24 particles of one shape fell into 6
classes with full covariances). ``K = 1`` is always admitted; a given ``K`` is never refused.

Latent points are centred and divided by one common scale (the rms distance from the mean, over
all axes), so the latent space's geometry is kept: an axis along which the particles hardly
vary (noise) weighs little, rather than being stretched to unit variance like the axis that
separates the conformations. Labels are ordered by class size (class 0 the largest).
Accuracy (:func:`class_accuracy`): the fraction of particles whose label matches the truth
under the best one-to-one matching of labels to true classes (Hungarian algorithm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from cryoflow.errors import ConfigError

METHODS = ("gmm", "kmeans")
#: the mixture's covariance (module docstring)
COVARIANCE = "tied"


@dataclass(frozen=True)
class LatentClasses:
    """labels (n,) in ``0 .. K-1`` (by decreasing size); centres (K, D) in latent units;
    bic (max_classes,) per K = 1.. (NaN where not computed or refused by the small-class
    guard); method."""

    labels: np.ndarray
    centres: np.ndarray
    bic: np.ndarray
    method: str

    @property
    def n_classes(self) -> int:
        return int(self.centres.shape[0])


def _relabel_by_size(labels: np.ndarray, k: int) -> np.ndarray:
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes, kind="stable")
    new = np.empty(k, int)
    new[order] = np.arange(k)
    return new[labels]


def min_class_size(dim: int) -> int:
    """The fewest particles a class may hold when ``K`` is chosen by BIC: the parameter count
    ``1 + D + D (D + 1) / 2`` of one full-covariance Gaussian in ``D`` dimensions."""
    d = int(dim)
    return 1 + d + d * (d + 1) // 2


def _smallest_class(labels: np.ndarray, k: int) -> int:
    return int(np.bincount(labels, minlength=k).min())


def _kmeans(zs: np.ndarray, k: int, n_init: int, seed: int):  # noqa: ANN202 (sklearn KMeans)
    """The best (least inertia) of ``n_init`` k-means runs: the k-means method, and the
    mixture's start."""
    from sklearn.cluster import KMeans

    return KMeans(k, n_init=n_init, random_state=seed).fit(zs)


def classify_latent(
    latent: np.ndarray,
    *,
    classes: int | None = None,
    method: str = "gmm",
    max_classes: int = 8,
    n_init: int = 5,
    seed: int = 0,
) -> LatentClasses:
    """Classes of latent points ``(n, D)`` (module docstring)."""
    from sklearn.mixture import GaussianMixture

    z = np.asarray(latent, dtype=np.float64)
    if z.ndim != 2 or len(z) < 2 or not np.all(np.isfinite(z)):
        raise ConfigError(f"latent points must be a finite (n >= 2, D) array, got shape {z.shape}")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {list(METHODS)}, got {method!r}")
    if classes is not None and not 1 <= int(classes) <= len(z):
        raise ConfigError(f"classes must lie in 1..{len(z)} (the particles), got {classes}")
    if method == "kmeans" and classes is None:
        raise ConfigError("k-means needs --classes K (BIC is defined for the Gaussian mixture)")
    zc = z - z.mean(axis=0)
    rms = float(np.sqrt((zc**2).sum(axis=1).mean()))
    zs = zc / (rms if rms > 0 else 1.0)
    smallest = min_class_size(z.shape[1])
    bic = np.full(max(int(max_classes), 1), np.nan)
    if method == "kmeans":
        labels = _kmeans(zs, int(classes or 1), n_init, seed).labels_.astype(int)
    else:
        top = min(len(bic), max(len(z) // smallest, 1))
        ks = [int(classes)] if classes is not None else list(range(1, top + 1))
        best, best_bic = None, np.inf
        for k in ks:
            start = _kmeans(zs, k, n_init, seed).cluster_centers_  # module docstring: the start
            gm = GaussianMixture(k, covariance_type=COVARIANCE, means_init=start, random_state=seed)
            score = float(gm.fit(zs).bic(zs))
            if k <= len(bic):
                bic[k - 1] = score
            if classes is None and k > 1 and _smallest_class(gm.predict(zs), k) < smallest:
                bic[k - 1] = np.nan  # the guard: a class smaller than its parameter count
                continue
            if best is None or score < best_bic:
                best, best_bic = gm, score
        labels = best.predict(zs).astype(int) if best is not None else np.zeros(len(zs), int)
    if classes is None:
        labels = np.unique(labels, return_inverse=True)[1].reshape(-1)
    k = int(labels.max()) + 1 if classes is None else int(classes)
    labels = _relabel_by_size(labels, k)
    centres = np.stack(
        [
            z[labels == c].mean(axis=0) if np.any(labels == c) else np.full(z.shape[1], np.nan)
            for c in range(k)
        ]
    )
    return LatentClasses(labels, centres, bic, method)


def class_accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    """The fraction of particles labelled as their true class under the best matching."""
    a = np.asarray(labels, dtype=int).reshape(-1)
    t = np.asarray(truth, dtype=int).reshape(-1)
    if a.shape != t.shape or a.size == 0 or a.min() < 0 or t.min() < 0:
        raise ConfigError(
            f"labels and truth must be equal-length non-negative ints, got {a.shape}, {t.shape}"
        )
    table = np.zeros((a.max() + 1, t.max() + 1), int)
    np.add.at(table, (a, t), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum()) / float(a.size)
