"""Classes in a latent space: Gaussian mixture (K given or chosen by BIC) or k-means, and the
accuracy of a labelling against a truth.

- ``method="gmm"``: scikit-learn's ``GaussianMixture`` with full covariances, ``n_init``
  restarts from k-means++ seeds. Without ``classes``, ``K`` is the one of ``1 .. max_classes``
  with the lowest BIC (``-2 log L + p log n``; a mixture of ``K`` full Gaussians in ``D``
  dimensions has ``p = K - 1 + K D + K D (D + 1) / 2`` parameters).
- ``method="kmeans"``: scikit-learn's ``KMeans`` (``classes`` required: k-means has no
  likelihood for BIC).

Latent points are standardised (each axis to zero mean, unit variance) first, so no axis wins by
its scale alone; labels are ordered by class size (class 0 the largest).
Accuracy (:func:`class_accuracy`): the fraction of particles whose label matches the truth
under the best one-to-one matching of labels to true classes (Hungarian algorithm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from cryoflow.errors import ConfigError

METHODS = ("gmm", "kmeans")


@dataclass(frozen=True)
class LatentClasses:
    """labels (n,) in ``0 .. K-1`` (by decreasing size); centres (K, D) in latent units;
    bic (max_classes,) per K = 1.. (NaN where not computed); method."""

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
    from sklearn.cluster import KMeans
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
    sd = z.std(axis=0)
    zs = (z - z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    bic = np.full(max(int(max_classes), 1), np.nan)
    if method == "kmeans":
        km = KMeans(int(classes or 1), n_init=n_init, random_state=seed).fit(zs)
        labels = km.labels_.astype(int)
    else:
        ks = [int(classes)] if classes is not None else list(range(1, min(len(bic), len(z)) + 1))
        best, best_bic = None, np.inf
        for k in ks:
            gm = GaussianMixture(k, covariance_type="full", n_init=n_init, random_state=seed)
            score = float(gm.fit(zs).bic(zs))
            if k <= len(bic):
                bic[k - 1] = score
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
