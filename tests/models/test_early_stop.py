"""Early stopping by steps: the stopper looks every N steps, stops after P looks without gain,
ends with the best weights, and a seed gives the same network idle or busy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoflow.errors import ConfigError
from cryoflow.models.arch import ModelSpec
from cryoflow.models.detector import DetectorParams, box_targets, train_detector
from cryoflow.models.early_stop import Stopper, StopRule
from cryoflow.models.train import TrainParams, train_model
from cryoflow.models.trainset import training_set_from_masks
from tests._models_data import blob_images


def _scripted(scores: dict[int, float]) -> tuple[torch.nn.Linear, Stopper]:
    """A one-weight model whose weight is set to the step at every look, scored from a script."""
    model = torch.nn.Linear(1, 1, bias=False)

    def score(m: torch.nn.Module) -> float:
        return scores[int(m.weight.item())]

    return model, Stopper(StopRule(every=10, patience=2, max_steps=100), score)


def _drive(model: torch.nn.Linear, stopper: Stopper, steps: int) -> int:
    for step in range(1, steps + 1):
        with torch.no_grad():
            model.weight.fill_(float(step))
        if stopper(step, model):
            return step
    return steps


def test_it_stops_after_patience_looks_without_gain_and_keeps_the_best_weights() -> None:
    scores = {10: 0.1, 20: 0.5, 30: 0.4, 40: 0.5, 50: 0.9, 60: 0.2}
    model, stopper = _scripted(scores)
    stopped = _drive(model, stopper, 100)
    # best at 20; 30 and 40 bring no gain over 0.5 (40 only equals it): stop at 40
    assert stopped == 40 and stopper.stopped_at == 40
    assert stopper.best_step == 20 and stopper.best_score == 0.5
    assert model.weight.item() == 20.0  # the best network is loaded back
    assert stopper.curve == [(10, 0.1), (20, 0.5), (30, 0.4), (40, 0.5)]
    assert stopper.summary("val") == {
        "val_best_step": 20.0,
        "val_stopped_at": 40.0,
        "val_best_val": 0.5,
    }


def test_at_max_steps_it_stops_with_the_best_seen() -> None:
    scores = {s: float(s) for s in range(10, 101, 10)}
    scores[100] = 0.0  # the last look is worse than the one before
    model, stopper = _scripted(scores)
    assert _drive(model, stopper, 100) == 100
    assert stopper.best_step == 90 and model.weight.item() == 90.0


def test_bad_rules_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="every >= 1, patience >= 1"):
        StopRule(every=0)
    with pytest.raises(ConfigError, match="got 10, 0, 600"):
        StopRule(every=10, patience=0)


def _unet_run(seed: int) -> tuple[torch.nn.Module, object, Stopper]:
    rng = np.random.default_rng(3)
    images, masks = blob_images(5, rng, size=32)
    ts = training_set_from_masks(
        images[:4], masks[:4], feature="g", n_positive=6, n_negative=3, box_size=16, rng=rng
    )
    val_x, val_m = images[4:], masks[4:]

    def score(model: torch.nn.Module) -> float:
        from cryoflow.kernels.iou import mask_iou
        from cryoflow.models.predict import predict_images

        return mask_iou(predict_images(model, val_x) > 127, val_m)

    rule = StopRule(every=4, patience=2, max_steps=24)
    stopper = Stopper(rule, score)
    spec = ModelSpec(arch="unet", base_channels=4)
    params = TrainParams(spec=spec, steps=24, batch_size=4, seed=seed)
    model, config = train_model(ts, params, on_step=stopper)
    return model, config, stopper


def test_a_unet_stopped_early_is_the_same_for_a_seed() -> None:
    a_model, a_config, a = _unet_run(0)
    b_model, b_config, b = _unet_run(0)
    assert a.curve == b.curve and a.stopped_at == b.stopped_at
    assert a.stopped_at is not None and a.stopped_at <= 24
    assert a_config.metrics["steps_done"] == float(a.stopped_at)  # type: ignore[attr-defined]
    sa, sb = a_model.state_dict(), b_model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the returned network is the best one seen
    assert a.score(a_model) == pytest.approx(a.best_score)


def test_the_detector_training_calls_the_stopper_and_stops() -> None:
    rng = np.random.default_rng(0)
    images, masks = blob_images(2, rng, size=64)
    calls: list[int] = []

    def on_step(step: int, model: torch.nn.Module) -> bool:
        calls.append(step)
        return step == 3

    params = DetectorParams(image_size=64, steps=10, seed=0)
    _, done = train_detector(images, box_targets(masks), params, on_step=on_step)
    assert calls == [1, 2, 3] and done["steps_done"] == 3.0
