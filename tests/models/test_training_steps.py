"""Trainings are decided by their steps, never by the clock: the same seed gives the same
network and the same figures on an idle process and on one kept busy by another thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from cryoflow.models.arch import ModelSpec
from cryoflow.models.detector import DetectorParams, box_targets, train_detector
from cryoflow.models.train import TrainParams, train_model
from cryoflow.models.trainset import training_set_from_masks
from cryoflow.pipelines.demo.compare import CompareConfig
from cryoflow.pipelines.demo.presets import PRESETS
from tests._models_data import blob_images


def _busy(run: Callable[[], Any]) -> Any:
    """``run()`` while another thread keeps the interpreter busy (a loaded machine)."""
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x = (x * 31 + 7) % 1000003

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        return run()
    finally:
        stop.set()
        thread.join()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_unet_training_gives_the_same_network_and_figures_idle_or_busy() -> None:
    rng = np.random.default_rng(3)
    images, masks = blob_images(4, rng, size=32)
    ts = training_set_from_masks(
        images, masks, feature="g", n_positive=6, n_negative=3, box_size=16, rng=rng
    )
    params = TrainParams(spec=ModelSpec(arch="unet", base_channels=4), steps=8, batch_size=4)
    idle_model, idle = train_model(ts, params)
    busy_model, busy = _busy(lambda: train_model(ts, params))
    assert _same_weights(idle_model, busy_model)
    figures = {k: v for k, v in idle.metrics.items() if k != "train_seconds"}
    assert figures == {k: v for k, v in busy.metrics.items() if k != "train_seconds"}
    assert idle.metrics["steps_done"] == 8.0 and idle.threshold == busy.threshold


def test_a_detector_training_gives_the_same_network_and_losses_idle_or_busy() -> None:
    images, masks = blob_images(3, np.random.default_rng(4), size=48)
    params = DetectorParams(steps=3, image_size=48, seed=2)
    idle_model, idle = train_detector(images, box_targets(masks), params)
    busy_model, busy = _busy(lambda: train_detector(images, box_targets(masks), params))
    assert idle == busy and idle["steps_done"] == 3.0
    assert _same_weights(idle_model, busy_model)


def test_no_demo_preset_and_no_comparison_default_stops_on_the_clock() -> None:
    assert CompareConfig().time_budget_s is None
    assert all(preset.training.time_budget_s is None for preset in PRESETS.values()), PRESETS
