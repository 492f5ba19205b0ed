"""Missing-wedge checkpoints: the generic format (:mod:`cryoflow.models.checkpoint`) plus what
applying one needs, read back as a small frozen :class:`DewedgeSettings`.

A dewedge checkpoint is a ``ModelConfig`` with ``feature="dewedge"``, ``spec.arch="unet3d"``,
the training settings in ``params`` (``bin_factor`` among them) and, in ``training_set``, every
training tomogram's name, tilt range and standardisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryoflow.errors import CheckpointError
from cryoflow.models.checkpoint import ModelConfig, read_config, save_checkpoint
from cryoflow.models.dewedge_train import FEATURE, TrainResult


@dataclass(frozen=True)
class DewedgeSettings:
    """How to apply a dewedge network.

    bin_factor : the sampling it was trained at (1: full, 2: binned 2x, ...).
    multiple : its ``2**depth``.
    tilt_ranges_deg : training tomogram name -> (tilt_min, tilt_max).
    normalisation : training tomogram name -> (mean, std) of its (first-half) volume.
    """

    bin_factor: int
    multiple: int
    tilt_ranges_deg: dict[str, tuple[float, float]]
    normalisation: dict[str, tuple[float, float]]

    @property
    def alignment(self) -> int:
        """Tile starts and margins must be multiples of this (``bin_factor * multiple``)."""
        return self.bin_factor * self.multiple

    @classmethod
    def from_config(cls, config: ModelConfig, source: str = "model config") -> DewedgeSettings:
        if config.feature != FEATURE or config.spec.arch != "unet3d":
            raise CheckpointError(
                f"{source}: not a missing-wedge checkpoint (feature {config.feature!r}, arch "
                f"{config.spec.arch!r}; expected {FEATURE!r}, 'unet3d')"
            )
        try:
            tomos = list(config.training_set.get("tomograms", []))
            return cls(
                bin_factor=int(config.params.get("bin_factor", 1)),
                multiple=2 ** int(config.spec.depth),
                tilt_ranges_deg={
                    str(t["name"]): (float(t["tilt_range_deg"][0]), float(t["tilt_range_deg"][1]))
                    for t in tomos
                },
                normalisation={
                    str(t["name"]): (float(t["normalisation"][0]), float(t["normalisation"][1]))
                    for t in tomos
                },
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: malformed dewedge training record: {exc}") from exc


def read_dewedge(directory: str | Path) -> DewedgeSettings:
    """The :class:`DewedgeSettings` of the checkpoint in ``directory`` (``CheckpointError``)."""
    return DewedgeSettings.from_config(read_config(directory), source=str(directory))


def save_dewedge(directory: str | Path, result: TrainResult) -> str:
    """Write ``result`` as a checkpoint into ``directory``; return its SHA-256."""
    return save_checkpoint(directory, result.model, result.config)
