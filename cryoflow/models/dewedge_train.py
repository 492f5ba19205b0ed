"""Self-supervised training of a missing-wedge filling network over a dataset's tomograms.

One step (``docs/design/dewedge.md`` names every choice):

1. draw ``batch_size`` boxes from the pool (:mod:`cryoflow.models.dewedge_sampling`; boxes from
   every tomogram); with even/odd halves, the input half is drawn at random, the other half is
   the target (noise2noise), else the box is its own target;
2. rotate input and target alike (:mod:`cryoflow.models.dewedge_rotate`), so the box's wedge
   lands elsewhere;
3. impose the tomogram's own wedge on the rotated input (now missing two wedges);
4. the network restores it; the loss (:mod:`cryoflow.models.dewedge_loss`) compares output and
   target on the components the target measured, ``wedge_weight`` times more where the input
   lacks them.

Every ``update_every`` steps (DeepDeWedge's refinement; IsoNet's iterations) the pool's input
boxes get their own missing wedge replaced by the network's current prediction, so inputs come
to look like the whole tomograms the network is applied to (one wedge, not two).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from cryoflow.errors import ConfigError, TrainingError
from cryoflow.models.arch import ModelSpec
from cryoflow.models.checkpoint import ModelConfig
from cryoflow.models.dewedge_batches import TrainingBatches
from cryoflow.models.dewedge_loss import masked_fourier_loss
from cryoflow.models.dewedge_rotate import extraction_size
from cryoflow.models.dewedge_sampling import (
    WedgeTomogram,
    build_pool,
    normalisation,
    standardise_and_bin,
)
from cryoflow.models.unet3d import UNet3D

FEATURE = "dewedge"
#: gradient norm above which a step is scaled down (typical norms on standardised tomograms
#: are 0.02-0.45; rare larger ones made wider and deeper networks diverge)
CLIP_NORM = 0.5


@dataclass(frozen=True)
class DewedgeTrainConfig:
    """Training settings (frozen, validated; JSON via :meth:`to_dict` / :meth:`from_dict`)."""

    box: int = 24
    bin_factor: int = 2
    boxes_per_tomogram: int = 64
    steps: int = 600
    batch_size: int = 4
    learning_rate: float = 3e-3
    wedge_weight: float = 2.0
    rotations: str = "cube"
    update_every: int = 200
    base_channels: int = 8
    depth: int = 3
    sigma_px: float = 2.0
    quiet_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        m = 2 ** int(self.depth)
        if not 1 <= int(self.depth) <= 4 or int(self.base_channels) < 1:
            raise ConfigError(
                f"need depth in 1..4 and base_channels >= 1, got {self.depth}, {self.base_channels}"
            )
        if int(self.box) < 2 * m or int(self.box) % m:
            raise ConfigError(
                f"box must be a multiple of 2**depth = {m} and >= {2 * m}, got {self.box}"
            )
        for name in ("bin_factor", "boxes_per_tomogram", "steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.update_every) < 0:
            raise ConfigError(f"update_every must be >= 0 (0: never), got {self.update_every}")
        if not (self.learning_rate > 0 and self.wedge_weight >= 0 and self.sigma_px > 0):
            raise ConfigError("learning_rate and sigma_px must be > 0, wedge_weight >= 0")
        extraction_size(int(self.box), self.rotations)  # validates the rotation family

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DewedgeTrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"unknown dewedge training fields {sorted(unknown)}; allowed {sorted(known)}"
            )
        return cls(**data)


@dataclass
class TrainResult:
    """The trained network (eval mode, on the training device) and its checkpoint config."""

    model: UNet3D
    config: ModelConfig
    losses: list[float]


def train_dewedge(
    tomograms: Sequence[WedgeTomogram],
    config: DewedgeTrainConfig = DewedgeTrainConfig(),
    *,
    device: str = "cpu",
    progress: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train one network on boxes from every tomogram in ``tomograms``.

    Parameters
    ----------
    tomograms : sequence of WedgeTomogram
        The selection, each with its tilt range (and optionally its odd-tilt half).
    config : DewedgeTrainConfig
    device : "cpu", "cuda", "cuda:1", ...
    progress : callable, optional
        Called as ``progress(step, loss)`` after every step.

    Returns
    -------
    TrainResult
        The network and a :class:`~cryoflow.models.checkpoint.ModelConfig` recording the
        settings, every tomogram's name, tilt range and standardisation, and the losses.
    """
    # 1. every tomogram (each half) standardised by its own mean and std, then binned
    stats = [(normalisation(t.volume), normalisation(t.halves[1])) for t in tomograms]
    binned = [
        WedgeTomogram(
            t.name,
            t.tilt_range_deg,
            standardise_and_bin(t.volume, *sa, config.bin_factor),
            None if t.partner is None else standardise_and_bin(t.partner, *sb, config.bin_factor),
        )
        for t, (sa, sb) in zip(tomograms, stats, strict=True)
    ]
    return train_prepared(binned, [sa for sa, _ in stats], config, device=device, progress=progress)


def check_fits(name: str, binned_shape: Sequence[int], config: DewedgeTrainConfig) -> None:
    """Raise ``ConfigError`` naming tomogram ``name`` unless its binned volume holds the
    training boxes (cut larger for ``rotations="random"``)."""
    side = extraction_size(config.box, config.rotations)
    if min(binned_shape) < side:
        raise ConfigError(
            f"tomogram {name!r} binned {config.bin_factor}x is {tuple(binned_shape)} voxels, "
            f"too small for {side}-voxel training boxes (box {config.box}, rotations "
            f"{config.rotations!r}; 'random' cuts sqrt(3) times larger boxes): use a smaller "
            "box, bin_factor or rotations='cube'"
        )


def train_prepared(
    binned: Sequence[WedgeTomogram],
    stats: Sequence[tuple[float, float]],
    config: DewedgeTrainConfig = DewedgeTrainConfig(),
    *,
    device: str = "cpu",
    progress: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """:func:`train_dewedge` on tomograms already standardised and binned ``config.bin_factor``
    times (:func:`~cryoflow.models.dewedge_sampling.standardise_and_bin`, or the same done
    lazily on a cluster); ``stats`` is each one's ``(mean, std)`` of its first half before that
    (recorded in the checkpoint)."""
    dev = torch.device(device)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    t0 = time.perf_counter()
    tomograms = binned
    # 2. boxes from every tomogram, cut large enough for the rotation family
    side = extraction_size(config.box, config.rotations)
    for t in binned:
        check_fits(t.name, t.volume.shape, config)
    pool = build_pool(
        binned,
        side,
        config.boxes_per_tomogram,
        rng,
        sigma_px=config.sigma_px,
        quiet_fraction=config.quiet_fraction,
        standardise=False,
    )
    batches = TrainingBatches(pool, config, [t.partner is not None for t in tomograms], rng, dev)
    # 3. the network and its optimiser: a linear warm-up over the first 5% of the steps, then
    #    a cosine decay of the learning rate to a tenth; gradients clipped to norm CLIP_NORM
    model = UNet3D(config.base_channels, config.depth).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    warm = max(1, config.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warm)
            * (0.1 + 0.45 * (1 + math.cos(math.pi * min(s / config.steps, 1.0))))
        ),
    )
    losses: list[float] = []
    for step in range(config.steps):
        model.train()
        x, y, w = batches.draw()
        loss = masked_fourier_loss(model(x), y, w)
        if not bool(torch.isfinite(loss)):
            raise TrainingError(
                f"missing-wedge training diverged at step {step} (loss {float(loss)}); "
                f"try a lower learning_rate than {config.learning_rate}"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step, losses[-1])
        if (
            config.update_every
            and (step + 1) % config.update_every == 0
            and step + 1 < config.steps
        ):
            model.eval()
            batches.update_wedges(model)
    model.eval()
    tail = losses[-max(1, len(losses) // 10) :]
    record = ModelConfig(
        feature=FEATURE,
        spec=ModelSpec(arch="unet3d", base_channels=config.base_channels, depth=config.depth),
        training_set={
            "tomograms": [
                {
                    "name": t.name,
                    "tilt_range_deg": list(t.tilt_range_deg),
                    "halves": t.partner is not None,
                    "normalisation": list(sa),
                }
                for t, sa in zip(tomograms, stats, strict=True)
            ],
            "boxes": int(len(pool.tomogram)),
            "box_side_cut": int(side),
        },
        params={**config.to_dict(), "device": str(device)},
        metrics={
            "loss_first": float(np.mean(losses[: max(1, len(losses) // 10)])),
            "loss_last": float(np.mean(tail)),
            "seconds": float(time.perf_counter() - t0),
        },
    )
    return TrainResult(model=model, config=record, losses=losses)
