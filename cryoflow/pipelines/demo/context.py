"""What the demo's stages share: its settings, the client, the store, the report, the figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryoflow.pipelines.demo.presets import DemoPreset, resolve_preset
from cryoflow.pipelines.demo.report import Report

__all__ = ["DemoConfig", "DemoContext", "DemoStage"]


@dataclass(frozen=True)
class DemoConfig:
    """Where the demo writes, its seed, whether it may replace an earlier demo, and its
    preset (``demo`` or ``paper``, :mod:`cryoflow.pipelines.demo.presets`; ``quick``: the
    preset's smallest sizes). An unknown preset is a ``ConfigError`` naming ``--preset``."""

    out: Path
    seed: int = 0
    overwrite: bool = False
    quick: bool = False
    preset: str = "demo"

    def __post_init__(self) -> None:
        self.sizes  # noqa: B018  (refuses an unknown preset on construction)

    @property
    def sizes(self) -> DemoPreset:
        """The resolved sizes of ``preset`` (and ``quick``)."""
        return resolve_preset(self.preset, self.quick)


@dataclass
class DemoContext:
    """Handed to every demo stage; stages add to ``metrics``/``report`` and keep what later
    stages need in ``state``."""

    config: DemoConfig
    client: Any
    store: Path
    report: Report
    metrics: dict[str, float] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


DemoStage = Callable[[DemoContext], None]
