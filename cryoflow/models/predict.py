"""Eager inference: images in, uint8 probability maps out, with CUDA out-of-memory back-off."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.augment import standardize


def to_uint8(prob: np.ndarray) -> np.ndarray:
    """Probabilities in ``[0, 1]`` as uint8 ``0..255`` (rounded), same shape."""
    return np.clip(np.rint(np.asarray(prob, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def run_in_batches(
    fn: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    batch_size: int,
    *,
    on_halve: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Apply ``fn`` to consecutive batches of ``images``; halve the batch on CUDA OOM and retry.

    Parameters
    ----------
    fn : callable taking ndarray of shape (b, Y, X) and returning ndarray of shape (b, Y, X)
    images : ndarray of shape (N, Y, X)
    batch_size : int
        Starting batch size; on ``torch.cuda.OutOfMemoryError`` it is halved (down to 1) and
        the failed batch is retried. A batch of one that still runs out of memory re-raises.
    on_halve : callable, optional
        Told the new batch size after each halving (for logging and tests).

    Returns
    -------
    ndarray of shape (N, Y, X), the concatenated outputs.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    outputs: list[np.ndarray] = []
    start, b = 0, int(batch_size)
    while start < len(images):
        try:
            outputs.append(fn(images[start : start + b]))
        except torch.cuda.OutOfMemoryError:
            if b == 1:
                raise
            b = max(1, b // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if on_halve is not None:
                on_halve(b)
            continue
        start += b
    if not outputs:
        return np.zeros((0, *images.shape[1:]), dtype=np.uint8)
    return np.concatenate(outputs, axis=0)


def predict_images(
    model: nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = 8,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """uint8 probability maps of ``model`` on each image (standardised per image first).

    Parameters
    ----------
    model : nn.Module mapping (B, 1, H, W) to (B, 1, H, W) logits, in eval mode
    images : ndarray of shape (N, Y, X)
    batch_size : int
        Images per forward pass (halved on CUDA out-of-memory).
    device : device to run on; default: the model's.

    Returns
    -------
    ndarray of shape (N, Y, X), uint8, ``round(255 * sigmoid(logits))``.
    """
    refuse_lazy(images, "images")
    x = standardize(np.asarray(images))
    dev = torch.device(device) if device is not None else next(model.parameters()).device

    @torch.inference_mode()
    def _one(batch: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(batch))[:, None].to(dev)
        return to_uint8(torch.sigmoid(model(t))[:, 0].float().cpu().numpy())

    return run_in_batches(_one, x, batch_size)
