"""Embedding and decoding with a trained conformation autoencoder: pure per-batch functions.

:func:`embed_batch` maps a batch of aligned particles to latent points; it depends on nothing
but its arguments and the network (no batch statistics: a particle gets the same point in any
batch), so a pipeline can scatter batches over a cluster with the network loaded once per
worker (:class:`cryoflow.models.loader.ModelHandle` + ``ModelPlugin``; pass the handle).
:func:`decode_latent` maps latent points back to volumes on the particle box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryoflow.errors import CheckpointError
from cryoflow.kernels.conformation_input import EmbedFrame, prepare_batch
from cryoflow.kernels.fourier_crop import resize_volumes
from cryoflow.models.checkpoint import ModelConfig, save_checkpoint
from cryoflow.models.conformation_ae import ConformationAE
from cryoflow.models.embed_train import TrainedEmbedding
from cryoflow.models.loader import ModelHandle, get_model


@dataclass(frozen=True)
class Embedder:
    """A network in eval mode and the frame it works in."""

    model: ConformationAE
    frame: EmbedFrame

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def device(self) -> torch.device:
        return self.model.average.device


def frame_from_config(config: ModelConfig) -> EmbedFrame:
    """The :class:`EmbedFrame` recorded in a conformation checkpoint's config."""
    if config.spec.arch != "conformation_ae" or "frame" not in config.params:
        raise CheckpointError(
            f"not a conformation autoencoder checkpoint (arch {config.spec.arch!r}, feature "
            f"{config.feature!r}); train one with cryoflow.models.embed_train"
        )
    return EmbedFrame.from_dict(dict(config.params["frame"]))


def as_embedder(model: Embedder | TrainedEmbedding | ModelHandle) -> Embedder:
    """An :class:`Embedder` from a trained result, or from a handle (loaded once per worker)."""
    if isinstance(model, Embedder):
        return model
    if isinstance(model, TrainedEmbedding):
        return Embedder(model.model, model.frame)
    network, config = get_model(model)
    if not isinstance(network, ConformationAE):
        raise CheckpointError(
            f"{model.directory}: holds a {type(network).__name__}, not a ConformationAE"
        )
    return Embedder(network, frame_from_config(config))


def save_embedding(directory: str | Path, trained: TrainedEmbedding) -> str:
    """Checkpoint ``trained`` (``weights.pt`` + ``model.json``); returns the weights' SHA-256."""
    return save_checkpoint(directory, trained.model, trained.config)


def embed_batch(
    model: Embedder | TrainedEmbedding | ModelHandle,
    particles: np.ndarray,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    tilt_ranges: np.ndarray,
) -> np.ndarray:
    """ndarray (n, D) float32: the latent point of every particle.

    Parameters
    ----------
    particles : ndarray of shape (n, B, B, B)
        Aligned particles (tomogram frame), ``B`` the box the model was trained on.
    euler_deg : ndarray of shape (n, 3)
        Their alignment, ``rot, tilt, psi`` (reference -> tomogram).
    shifts_zyx_px : ndarray of shape (n, 3)
        Their centres relative to the box centre, voxels.
    tilt_ranges : ndarray of shape (n, 2)
        Their tomograms' tilt ranges, degrees.
    """
    emb = as_embedder(model)
    if len(particles) == 0:
        return np.zeros((0, emb.latent_dim), np.float32)
    with torch.no_grad():
        prep = prepare_batch(
            particles,
            euler_deg,
            shifts_zyx_px,
            tilt_ranges,
            emb.frame,
            emb.model.average,
            device=emb.device,
        )
        z = emb.model.encode(prep.inputs)
    return z.cpu().numpy().astype(np.float32)


def decode_latent(
    model: Embedder | TrainedEmbedding | ModelHandle, latent: np.ndarray
) -> np.ndarray:
    """ndarray (m, B, B, B) float32: the volumes decoded from latent points ``(m, D)``, Fourier
    padded from the working box to the particle box (in the model's normalised units: the
    consensus average has unit rms inside the mask)."""
    emb = as_embedder(model)
    z = torch.as_tensor(np.asarray(latent, dtype=np.float32), device=emb.device)
    if z.ndim != 2 or z.shape[1] != emb.latent_dim:
        raise CheckpointError(f"latent points must be (m, {emb.latent_dim}), got {tuple(z.shape)}")
    with torch.no_grad():
        vol = emb.model.decode(z)
        out = resize_volumes(vol, emb.frame.box) if emb.frame.work_box != emb.frame.box else vol
    return out.cpu().numpy().astype(np.float32)
