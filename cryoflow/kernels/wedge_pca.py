"""The linear peer of the autoencoder: PCA + k-means on the same wedge-aware inputs.

The particles go through exactly the autoencoder's preparation
(:func:`cryoflow.kernels.conformation_input.prepare_batch`: reference frame, band, per-particle
scale, the unmeasured components filled with the consensus average, soft mask), so the only
difference left between the two is linear versus learned: the flattened inputs are centred, the
top ``n_components`` principal axes kept (scikit-learn ``PCA``, randomised SVD), and k-means
(:func:`cryoflow.kernels.latent_classes.classify_latent`) run on the coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryoflow.errors import ConfigError
from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.latent_classes import LatentClasses, classify_latent


@dataclass(frozen=True)
class PCAClasses:
    """coords (n, n_components) PCA coordinates; explained (n_components,) variance ratios;
    classes the k-means result on the coordinates."""

    coords: np.ndarray
    explained: np.ndarray
    classes: LatentClasses


def wedge_pca_classes(
    inputs: np.ndarray,
    n_classes: int,
    *,
    n_components: int = 4,
    mask: np.ndarray | None = None,
    seed: int = 0,
) -> PCAClasses:
    """PCA + k-means of prepared inputs ``(n, 1, b, b, b)`` (or ``(n, b, b, b)``).

    ``mask`` (b, b, b): only voxels where it is > 0 are used (default all).
    """
    from sklearn.decomposition import PCA

    refuse_lazy(inputs, "wedge_pca_classes")
    x = np.asarray(inputs, dtype=np.float64)
    x = x.reshape(len(x), -1)
    if mask is not None:
        x = x[:, np.asarray(mask).reshape(-1) > 0]
    if len(x) < 2 or not 1 <= int(n_components) <= min(x.shape):
        raise ConfigError(
            f"PCA needs >= 2 particles and 1 <= n_components <= {min(x.shape)}, got {len(x)} "
            f"particles and {n_components} components"
        )
    pca = PCA(int(n_components), svd_solver="randomized", random_state=seed)
    coords = pca.fit_transform(x - x.mean(axis=0))
    classes = classify_latent(coords, classes=int(n_classes), method="kmeans", seed=seed)
    return PCAClasses(coords.astype(np.float32), pca.explained_variance_ratio_, classes)
