"""The comparison's trainings stopped on a held-out validation split (the paper preset).

The training tomogram's tilts (or reconstruction slices) are split by index: every
``VAL_STRIDE``-th image from ``VAL_OFFSET`` is held out, the others train. Of the held-out
images, ``N_VAL_IMAGES`` evenly spaced ones (slices: the ones with the most feature pixels)
score the network every ``StopRule.every`` steps (:class:`cryoflow.models.early_stop.Stopper`):

- the tilt U-Net of the lifted feature (its connected components are the light detector) and
  the Faster R-CNN: AP at IoU 0.5 of their per-tilt boxes against the truth component boxes;
- the conventional route's slice U-Net: IoU of its maps (> 0.5) with the truth slices.

The task functions run on a worker and return what the fixed-step trainings return, with the
stopper's summary (``val_best_step``, ``val_stopped_at``, ``val_best_val``) among the
figures (the detector's also its ``curve`` of ``(step, AP50)``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from cryoflow.models.early_stop import Stopper, StopRule

__all__ = [
    "VAL_OFFSET",
    "VAL_STRIDE",
    "split_indices",
    "train_detector_until",
    "train_unet_until",
    "validation_picks",
]

VAL_STRIDE = 4
VAL_OFFSET = 2
N_VAL_IMAGES = 6


def split_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, held_out)`` indices of ``n`` images (every ``VAL_STRIDE``-th held out)."""
    idx = np.arange(int(n))
    held = (idx % VAL_STRIDE) == VAL_OFFSET if n > VAL_STRIDE else np.zeros(n, bool)
    return idx[~held], idx[held]


def validation_picks(held_out: np.ndarray, masks: np.ndarray, by_content: bool) -> np.ndarray:
    """The ``N_VAL_IMAGES`` held-out images that score: evenly spaced, or (``by_content``)
    the ones holding the most feature pixels (ties by index)."""
    held = np.asarray(held_out, dtype=int)
    if len(held) <= N_VAL_IMAGES:
        return held
    if by_content:
        counts = np.asarray(masks[held]).reshape(len(held), -1).sum(axis=1)
        order = np.lexsort((held, -counts))[:N_VAL_IMAGES]
        return np.sort(held[order])
    pick = np.unique(np.linspace(0, len(held) - 1, N_VAL_IMAGES).round().astype(int))
    return held[pick]


def _truth_boxes(masks: np.ndarray) -> Any:
    from cryoflow.kernels.boxes import boxes_from_masks

    return boxes_from_masks(np.asarray(masks, bool), "truth", min_pixels=4)


def train_unet_until(
    ts: Any,
    params: Any,
    rule: StopRule,
    val_images: np.ndarray,
    val_masks: np.ndarray,
    score: str,
) -> tuple[dict[str, Any], Any]:
    """Train a U-Net (``params.steps`` must be ``rule.max_steps``) until its validation
    ``score`` (``"ap50"`` of component boxes or ``"iou"``) stops improving; returns the
    state dict and the ModelConfig, its metrics with the stopper's summary (``val_best_step``,
    ``val_stopped_at``, ``val_best_val``)."""
    from cryoflow.kernels.iou import mask_iou
    from cryoflow.models.detector import average_precision, boxes_from_probabilities
    from cryoflow.models.predict import predict_images
    from cryoflow.models.train import train_model

    truth = np.asarray(val_masks, bool)
    boxes = _truth_boxes(truth) if score == "ap50" else None

    def measure(model: Any) -> float:
        probs = predict_images(model, val_images, batch_size=2)
        if boxes is None:
            return mask_iou(probs > 127, truth)
        pred = boxes_from_probabilities(probs, class_name="v", threshold=0.5, min_pixels=4)
        return average_precision(pred, boxes)

    stopper = Stopper(rule, measure)
    model, config = train_model(ts, params, on_step=stopper)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return state, replace(config, metrics={**config.metrics, **stopper.summary("val")})


def train_detector_until(
    images: np.ndarray,
    boxes: list[np.ndarray],
    params: Any,
    rule: StopRule,
    val_images: np.ndarray,
    val_masks: np.ndarray,
) -> tuple[Any, dict[str, Any]]:
    """Train the Faster R-CNN until its validation AP50 stops improving; returns the model
    and its training figures with the stopper's summary and ``curve``."""
    from cryoflow.models.detector import average_precision, detect, train_detector

    truth = _truth_boxes(val_masks)

    def measure(model: Any) -> float:
        return average_precision(detect(model, val_images, class_name="v"), truth)

    stopper = Stopper(rule, measure)
    model, done = train_detector(images, boxes, params, on_step=stopper)
    return model, {**done, **stopper.summary("val"), "curve": stopper.curve}
