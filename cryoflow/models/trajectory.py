"""Volumes decoded along the main axes of the latent space (a conformational trajectory).

The latent points are centred and their principal axes found (SVD); along axis ``j`` (standard
deviation ``sd_j``) the points ``mean + t sd_j u_j`` for ``t`` evenly spaced in
``[-span_sd, +span_sd]`` are decoded (:func:`cryoflow.models.embed.decode_latent`) to volumes on
the particle box. Each volume is a full, wedge-filled map: the decoder learnt it from particles
whose wedges lie in every direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryoflow.errors import ConfigError
from cryoflow.models.embed import Embedder, decode_latent
from cryoflow.models.embed_train import TrainedEmbedding
from cryoflow.models.loader import ModelHandle


@dataclass(frozen=True)
class Trajectory:
    """axes (n_axes, D) unit vectors; sd (n_axes,) spread along each; steps (n_steps,) in
    standard deviations; points (n_axes, n_steps, D); volumes (n_axes, n_steps, B, B, B)."""

    axes: np.ndarray
    sd: np.ndarray
    steps: np.ndarray
    points: np.ndarray
    volumes: np.ndarray


def latent_axes(latent: np.ndarray, n_axes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean (D,), axes (n_axes, D), sd (n_axes,))``: principal axes of latent points (n, D)."""
    z = np.asarray(latent, dtype=np.float64)
    if z.ndim != 2 or len(z) < 2 or not 1 <= int(n_axes) <= z.shape[1]:
        raise ConfigError(
            f"need latent points (n >= 2, D) and 1 <= n_axes <= D, got {z.shape}, {n_axes}"
        )
    mean = z.mean(axis=0)
    _, s, vt = np.linalg.svd(z - mean, full_matrices=False)
    sd = s / np.sqrt(len(z) - 1)
    return mean, vt[: int(n_axes)], sd[: int(n_axes)]


def latent_trajectory(
    model: Embedder | TrainedEmbedding | ModelHandle,
    latent: np.ndarray,
    *,
    n_axes: int = 2,
    n_steps: int = 7,
    span_sd: float = 2.0,
) -> Trajectory:
    """Decode ``n_steps`` points along each of the ``n_axes`` main latent axes (module doc)."""
    if int(n_steps) < 2 or not span_sd > 0:
        raise ConfigError(f"need n_steps >= 2 and span_sd > 0, got {n_steps}, {span_sd}")
    mean, axes, sd = latent_axes(latent, n_axes)
    steps = np.linspace(-float(span_sd), float(span_sd), int(n_steps))
    points = mean[None, None] + steps[None, :, None] * (sd[:, None, None] * axes[:, None, :])
    flat = points.reshape(-1, points.shape[-1])
    vols = decode_latent(model, flat.astype(np.float32))
    return Trajectory(
        axes.astype(np.float32),
        sd.astype(np.float32),
        steps.astype(np.float32),
        points.astype(np.float32),
        vols.reshape(*points.shape[:2], *vols.shape[1:]),
    )
