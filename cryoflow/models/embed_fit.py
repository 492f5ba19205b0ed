"""From aligned particles to a trained conformation autoencoder in one process.

Steps: (1) the consensus average, unless given (the averaging kernels,
:func:`cryoflow.kernels.class_average.consensus_average`); (2) the frame (particle box, band,
mask) and the average on the working grid (:func:`~cryoflow.kernels.conformation_input.
work_average`); (3) every particle prepared in batches (:func:`~cryoflow.kernels.
conformation_input.prepare_batch`: reference frame, scale, wedge); (4) training
(:func:`cryoflow.models.embed_train.train_embedding`). A distributed pipeline runs (3) as tasks
and (4) on one worker; this module is the single-process path and what the tests use.
"""

from __future__ import annotations

import numpy as np
import torch

from cryoflow.kernels.class_average import consensus_average
from cryoflow.kernels.conformation_input import (
    EmbedFrame,
    PreparedBatch,
    prepare_batch,
    work_average,
)
from cryoflow.models.embed_train import EmbedTrainParams, TrainedEmbedding, train_embedding


def default_frame(
    box: int, resolution_px: float, mask_radius_px: float | None = None
) -> EmbedFrame:
    """A frame with the mask radius defaulting to ``B / 2 - 3`` voxels (edge 3 voxels)."""
    radius = float(box) / 2.0 - 3.0 if mask_radius_px is None else float(mask_radius_px)
    return EmbedFrame(box=int(box), resolution_px=float(resolution_px), mask_radius_px=radius)


def prepare_all(
    particles: np.ndarray,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    tilt_ranges: np.ndarray,
    frame: EmbedFrame,
    average_work: np.ndarray,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> PreparedBatch:
    """:func:`prepare_batch` over all particles in batches, concatenated."""
    parts = []
    for s in range(0, len(particles), max(int(batch_size), 1)):
        sl = slice(s, s + max(int(batch_size), 1))
        parts.append(
            prepare_batch(
                particles[sl],
                euler_deg[sl],
                shifts_zyx_px[sl],
                tilt_ranges[sl],
                frame,
                average_work,
                device=device,
            )
        )
    return PreparedBatch(
        torch.cat([p.targets for p in parts]),
        torch.cat([p.wedges for p in parts]),
        torch.cat([p.scales for p in parts]),
        torch.cat([p.inputs for p in parts]),
    )


def fit_embedding(
    particles: np.ndarray,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    tilt_ranges: np.ndarray,
    params: EmbedTrainParams,
    *,
    resolution_px: float,
    mask_radius_px: float | None = None,
    average: np.ndarray | None = None,
) -> tuple[TrainedEmbedding, PreparedBatch]:
    """Train on aligned particles ``(n, B, B, B)`` (orientations ``(n, 3)``, shifts ``(n, 3)``,
    tilt ranges ``(n, 2)``); returns the trained model and the prepared particles.

    ``resolution_px`` : band limit (e.g. the average's FSC-0.143 resolution, voxels);
    ``average`` : the consensus average ``(B, B, B)`` (default: computed from the particles).
    """
    p = np.asarray(particles, dtype=np.float32)
    avg = (
        consensus_average(p, euler_deg, shifts_zyx_px, tilt_ranges, device=params.device)
        if average is None
        else np.asarray(average, dtype=np.float32)
    )
    frame = default_frame(p.shape[1], resolution_px, mask_radius_px)
    avg_work = work_average(avg, frame)
    prep = prepare_all(
        p, euler_deg, shifts_zyx_px, tilt_ranges, frame, avg_work, device=params.device
    )
    trained = train_embedding(prep.targets, prep.wedges, frame, avg_work, params)
    return trained, prep
