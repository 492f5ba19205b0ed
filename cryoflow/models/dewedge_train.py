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

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from cryoflow.errors import ConfigError
from cryoflow.models.arch import ModelSpec
from cryoflow.models.checkpoint import ModelConfig
from cryoflow.models.dewedge_rotate import extraction_size
from cryoflow.models.dewedge_sampling import WedgeTomogram, normalisation, standardise_and_bin
from cryoflow.models.dewedge_trainer import DewedgeTrainer
from cryoflow.models.unet3d import UNet3D

FEATURE = "dewedge"


@dataclass(frozen=True)
class DewedgeTrainConfig:
    """Training settings (frozen, validated; JSON via :meth:`to_dict` / :meth:`from_dict`).

    The fields, in the order ``model.json`` records them (``docs/design/dewedge.md`` says why
    each default):
    """

    #: training box edge, in binned voxels (a multiple of ``2**depth``, at least twice it)
    box: int = 24
    #: the network sees the tomogram binned this many times (means of ``bin**3`` voxels)
    bin_factor: int = 2
    #: boxes drawn from every tomogram (weighted towards structure) into the pool
    boxes_per_tomogram: int = 64
    #: optimiser steps: the training budget (never a clock)
    steps: int = 600
    #: boxes per step
    batch_size: int = 4
    #: Adam's peak learning rate (warm-up, then cosine decay to a tenth)
    learning_rate: float = 3e-3
    #: loss weight of the components the input lacks relative to those it has
    wedge_weight: float = 2.0
    #: ``"cube"`` (exact 90-degree rotations) or ``"random"`` (resampled SO(3) rotations)
    rotations: str = "cube"
    #: steps between replacing the pool inputs' wedges by the prediction (0: never)
    update_every: int = 200
    #: U-Net width at the first level
    base_channels: int = 8
    #: U-Net poolings
    depth: int = 3
    #: Gaussian (binned voxels) of the structure score that weights where boxes are cut
    sigma_px: float = 2.0
    #: the quietest fraction of candidate boxes, never drawn
    quiet_fraction: float = 0.25
    #: network initialisation, pool and batches
    seed: int = 0

    def __post_init__(self) -> None:
        m = 2 ** int(self.spec.depth)  # ModelSpec validates base_channels and depth
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

    @property
    def spec(self) -> ModelSpec:
        """The network's :class:`~cryoflow.models.arch.ModelSpec` (``unet3d``)."""
        return ModelSpec(
            arch="unet3d", base_channels=int(self.base_channels), depth=int(self.depth)
        )

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
    (recorded in the checkpoint). The loop is :class:`DewedgeTrainer`'s (resumable)."""
    trainer = DewedgeTrainer.start(binned, stats, config, device=device)
    trainer.run_until(config.steps, progress)
    return finished(trainer)


def finished(trainer: DewedgeTrainer) -> TrainResult:
    """The :class:`TrainResult` of a training (its network and checkpoint record so far)."""
    config, losses = trainer.config, trainer.losses
    head = losses[: max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10) :]
    record = ModelConfig(
        feature=FEATURE,
        spec=config.spec,
        training_set={
            "tomograms": [dict(t) for t in trainer.tomograms],
            "boxes": int(len(trainer.pool.tomogram)),
            "box_side_cut": int(trainer.pool.first.shape[-1]),
        },
        params={**config.to_dict(), "device": str(trainer.device)},
        metrics={
            "loss_first": float(np.mean(head)) if head else float("nan"),
            "loss_last": float(np.mean(tail)) if tail else float("nan"),
            "seconds": float(trainer.seconds),
        },
    )
    return TrainResult(model=trainer.model, config=record, losses=list(losses))
