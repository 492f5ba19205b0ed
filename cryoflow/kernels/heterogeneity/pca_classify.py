"""Eager PCA + k-means classification of aligned particles (``--method pca``).

The passes a distributed run maps, run here batch by batch in one process:

1. (if no average is given) the consensus average of the aligned particles
   (:func:`consensus_round`: the averaging sums and finish);
2. ``1 + power_iterations`` sketch passes over wedge-filled features
   (:func:`~.features.features_batch`, :func:`~.pca.sketch_batch`), one projection pass
   (:func:`~.pca.project_batch`), :func:`~.pca.finish_pca`;
3. k-means on the leading ``n_components`` principal coordinates, ``K`` given or by BIC
   (:func:`~.kmeans.cluster`); the eigenvolumes as maps (:func:`~.features.features_to_volumes`).

Features are computed once and kept when they fit in ``keep_features_bytes`` (else recomputed
every pass, so memory stays bounded by the batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from cryoflow.errors import ConfigError
from cryoflow.kernels.align import AlignResult
from cryoflow.kernels.finish import RoundOutcome, finish_round
from cryoflow.kernels.heterogeneity.features import (
    feature_dimension,
    features_batch,
    features_to_volumes,
)
from cryoflow.kernels.heterogeneity.groups import tree_sum
from cryoflow.kernels.heterogeneity.kmeans import Clusters, cluster
from cryoflow.kernels.heterogeneity.pca import (
    PcaBasis,
    ProjectionSums,
    SketchSums,
    coordinates,
    finish_pca,
    initial_probe,
    project_batch,
    sketch_batch,
    sketch_range,
)
from cryoflow.kernels.refine import accumulate_all


@dataclass(frozen=True)
class PcaParams:
    """Settings of a PCA classification (lengths in voxels).

    ``n_classes`` None: ``K`` by BIC up to ``max_classes``; ``n_components``: principal
    coordinates the classes are made from (None: ``max(2, K - 1)``, the ``K - 1`` that can
    separate ``K`` class means, at least two; 2 with ``K`` by BIC); ``n_eigen``: components kept (eigenvolumes);
    ``oversampling``, ``power_iterations``: the randomized sketch; ``highpass_px``: the
    features' high-pass period (None: DC only).
    """

    n_classes: int | None = 2
    max_classes: int = 6
    n_components: int | None = None
    n_eigen: int = 6
    oversampling: int = 10
    power_iterations: int = 1
    highpass_px: float | None = None
    batch_size: int = 32
    keep_features_bytes: int = 256 * 2**20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_classes is not None and int(self.n_classes) < 1:
            raise ConfigError(f"n_classes must be >= 1 or None (BIC), got {self.n_classes}")
        if not 1 <= self.components <= int(self.n_eigen):
            raise ConfigError(
                f"need 1 <= n_components <= n_eigen, got {self.components} and {self.n_eigen}"
            )
        if int(self.power_iterations) < 0 or int(self.oversampling) < 0:
            raise ConfigError("power_iterations and oversampling must be >= 0")
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def components(self) -> int:
        """The number of principal coordinates the classes are made from."""
        if self.n_components is not None:
            return int(self.n_components)
        return 2 if self.n_classes is None else max(2, int(self.n_classes) - 1)


@dataclass(frozen=True)
class PcaResult:
    """``clusters`` (labels per particle, ``K``, the BIC curve); ``basis`` the components;
    ``coords`` (n, n_eigen) principal coordinates; ``eigenvolumes`` (n_eigen, B, B, B) and
    ``mean_volume`` (B, B, B) as maps (band-limited, under the mask)."""

    clusters: Clusters
    basis: PcaBasis
    coords: np.ndarray
    eigenvolumes: np.ndarray
    mean_volume: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        """ndarray (n,): each particle's class."""
        return self.clusters.labels


def consensus_round(
    particles: np.ndarray,
    tilt_ranges: np.ndarray,
    alignment: AlignResult,
    half_ids: np.ndarray,
    *,
    voxel_size_angstrom: float,
    mask: np.ndarray | None,
    symmetry: str = "C1",
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> RoundOutcome:
    """The consensus average, half maps, FSC and mask of aligned particles (one pass)."""
    sums = accumulate_all(
        particles,
        alignment,
        tilt_ranges,
        half_ids,
        symmetry=symmetry,
        batch_size=batch_size,
        device=device,
    )
    return finish_round(sums, voxel_size_angstrom=voxel_size_angstrom, mask=mask)


def classify_pca(
    particles: np.ndarray,
    tilt_ranges: np.ndarray,
    *,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    average: np.ndarray,
    mask: np.ndarray,
    resolution_px: float,
    params: PcaParams | None = None,
    device: str | torch.device = "cpu",
) -> PcaResult:
    """Classify aligned particles (n, B, B, B) by PCA + k-means (see module docstring).

    ``euler_deg``/``shifts_zyx_px`` (n, 3) the consensus alignment, ``tilt_ranges`` (n, 2),
    ``average`` and ``mask`` (B, B, B) the consensus map and the mask the PCA looks in,
    ``resolution_px`` the features' band limit.
    """
    p = params if params is not None else PcaParams()
    vols = np.asarray(particles, dtype=np.float32)
    n, box = vols.shape[0], vols.shape[-1]
    tr = np.asarray(tilt_ranges, dtype=float).reshape(-1, 2)
    e = np.asarray(euler_deg, dtype=float).reshape(-1, 3)
    s = np.asarray(shifts_zyx_px, dtype=float).reshape(-1, 3)
    dim = feature_dimension(box, resolution_px, p.highpass_px)
    width = min(int(p.n_eigen) + int(p.oversampling), dim, max(n - 1, 1))
    if width < int(p.n_eigen):
        raise ConfigError(
            f"{n} particles cannot give {p.n_eigen} principal components; lower n_eigen"
        )
    bs = int(p.batch_size)

    def batch(lo: int) -> np.ndarray:
        sl = slice(lo, lo + bs)
        return features_batch(
            vols[sl],
            e[sl],
            s[sl],
            tr[sl],
            average=average,
            mask=mask,
            resolution_px=resolution_px,
            highpass_px=p.highpass_px,
            device=device,
        )

    source: Callable[[int], np.ndarray] = batch
    if n * dim * 4 <= int(p.keep_features_bytes):
        kept = np.concatenate([batch(lo) for lo in range(0, n, bs)])

        def source(lo: int) -> np.ndarray:
            return kept[lo : lo + bs]

    probe = initial_probe(dim, width, p.seed)
    sketch: SketchSums | None = None
    for _ in range(1 + int(p.power_iterations)):
        parts = [sketch_batch(source(lo), probe) for lo in range(0, n, bs)]
        sketch = tree_sum(parts)
        probe = sketch_range(sketch, probe)
    assert sketch is not None
    projected, sums = zip(
        *(project_batch(source(lo), probe) for lo in range(0, n, bs)), strict=True
    )
    proj: ProjectionSums = tree_sum(list(sums))
    basis = finish_pca(sketch, proj, probe, p.n_eigen)
    coords = coordinates(basis, np.concatenate(projected))
    clusters = cluster(
        coords[:, : p.components], p.n_classes, max_classes=p.max_classes, seed=p.seed
    )
    eig = features_to_volumes(basis.components, box, resolution_px, p.highpass_px)
    mean = features_to_volumes(basis.mean, box, resolution_px, p.highpass_px)[0]
    return PcaResult(clusters, basis, coords, eig, mean)
