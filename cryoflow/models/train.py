"""Few-shot training loop for the 2D segmentation networks.

Boxes are augmented on the fly (rotations, flips, noise, contrast), the loss is a class-balanced
logistic loss plus a soft Dice term, and a share of the boxes is held out to pick the
probability threshold and report validation IoU. CPU by default; ``device="cuda"`` trains on a
GPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cryoflow.errors import ConfigError
from cryoflow.kernels.augment import augment
from cryoflow.kernels.iou import mask_iou
from cryoflow.models.arch import ModelSpec, build_model
from cryoflow.models.checkpoint import ModelConfig
from cryoflow.models.trainset import TrainingSet


@dataclass(frozen=True)
class TrainParams:
    """Training parameters (recorded in the checkpoint).

    steps : optimiser steps; batch_size : augmented boxes per step; lr : Adam learning rate;
    seed : seeds the box sampling, augmentation and weight initialisation; val_fraction : share
    of boxes held out for validation (at least one positive box when there are two or more);
    device : ``"cpu"`` or ``"cuda"``; max_seconds : stop early after this long (``None``: never).
    """

    spec: ModelSpec = field(default_factory=ModelSpec)
    steps: int = 300
    batch_size: int = 16
    lr: float = 3e-3
    seed: int = 0
    val_fraction: float = 0.25
    device: str = "cpu"
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(
                f"steps, batch_size and lr must be positive, got {self.steps}, {self.batch_size}, {self.lr}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["spec"] = self.spec.to_dict()
        return d


def _split(
    ts: TrainingSet, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    pos = np.flatnonzero(ts.positive)
    neg = np.flatnonzero(~ts.positive)
    n_val_pos = int(round(fraction * len(pos))) if len(pos) > 1 else 0
    n_val_pos = min(max(n_val_pos, 1 if fraction > 0 and len(pos) > 1 else 0), len(pos) - 1)
    n_val_neg = min(int(round(fraction * len(neg))), max(len(neg) - 1, 0))
    pos, neg = rng.permutation(pos), rng.permutation(neg)
    val = np.concatenate([pos[:n_val_pos], neg[:n_val_neg]])
    train = np.concatenate([pos[n_val_pos:], neg[n_val_neg:]])
    return train.astype(int), val.astype(int)


def _loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Class-balanced logistic loss + soft Dice over the pixels where ``weight`` is 1."""
    n = weight.expand_as(target).sum().clamp(min=1.0)
    frac = ((target * weight).sum() / n).clamp(0.01, 0.99)
    pos_weight = ((1 - frac) / frac).clamp(max=20.0)
    bce = F.binary_cross_entropy_with_logits(
        logits, target, pos_weight=pos_weight, reduction="none"
    )
    bce = (bce * weight).sum() / n
    prob = torch.sigmoid(logits) * weight
    dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + (target * weight).sum() + 1)
    return bce + dice


@torch.no_grad()
def _probabilities(model: nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None].to(device)
    return torch.sigmoid(model(x))[:, 0].cpu().numpy()


def train_model(
    ts: TrainingSet,
    params: TrainParams,
    on_step: Callable[[int, nn.Module], bool] | None = None,
) -> tuple[nn.Module, ModelConfig]:
    """Train a network on the boxes of ``ts``.

    Parameters
    ----------
    ts : TrainingSet
        Boxes ``(n, h, w)`` with masks ``(n, h, w)``.
    params : TrainParams
    on_step : called after every step with the steps done and the network; ``True`` stops
        (:class:`cryoflow.models.early_stop.Stopper`).

    Returns
    -------
    (module in eval mode on ``params.device``, ModelConfig with threshold and metrics)
    """
    device = torch.device(params.device)
    rng = np.random.default_rng(params.seed)
    torch_gen = torch.Generator().manual_seed(params.seed)
    # 1. build the network with seeded weights, split boxes into train/validation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=torch_gen)))
        model = build_model(params.spec).to(device)
    train_idx, val_idx = _split(ts, params.val_fraction, rng)
    weight = torch.from_numpy(ts.loss_weights())[None, None].to(device)  # (1, 1, h, w)
    opt = torch.optim.Adam(model.parameters(), lr=params.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=params.steps)
    # 2. optimise on augmented batches
    t0 = time.perf_counter()
    losses: list[float] = []
    steps_done = 0
    model.train()
    for _step in range(params.steps):
        pick = rng.choice(train_idx, size=params.batch_size, replace=True)
        x, m = augment(ts.images[pick], ts.masks[pick], rng)
        xt = torch.from_numpy(x)[:, None].to(device)
        mt = torch.from_numpy(m.astype(np.float32))[:, None].to(device)
        loss = _loss(model(xt), mt, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        steps_done += 1
        if params.max_seconds is not None and time.perf_counter() - t0 > params.max_seconds:
            break
        if on_step is not None and on_step(steps_done, model):
            break
    # 3. pick the threshold on held-out boxes (training boxes when none are held out)
    inner = ts.loss_weights() > 0
    check = val_idx if len(val_idx) and ts.masks[val_idx][:, inner].any() else train_idx
    prob = _probabilities(model, ts.images[check], device)[:, inner]
    truth = ts.masks[check][:, inner].astype(bool)
    candidates = np.round(np.arange(0.1, 0.96, 0.05), 2)
    scores = [mask_iou(prob > t, truth) for t in candidates]
    best = int(np.argmax(scores))
    train_prob = _probabilities(model, ts.images[train_idx], device)[:, inner]
    metrics = {
        "val_iou": float(scores[best]),
        "val_iou_at_0.5": float(mask_iou(prob > 0.5, truth)),
        "train_iou": float(
            mask_iou(train_prob > candidates[best], ts.masks[train_idx][:, inner].astype(bool))
        ),
        "final_loss": float(np.mean(losses[-10:])),
        "n_val_boxes": float(len(val_idx)),
        "steps_done": float(steps_done),
        "train_seconds": float(time.perf_counter() - t0),
    }
    config = ModelConfig(
        feature=ts.feature,
        spec=params.spec,
        threshold=float(candidates[best]),
        training_set=ts.describe(),
        params=params.to_dict(),
        metrics=metrics,
    )
    model.eval()
    return model, config
