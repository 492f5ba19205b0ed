"""What a run did: per step counts and time, failures; stored under ``runs/<run-id>``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryoflow.errors import NodeNotFoundError
from cryoflow.io import nodes
from cryoflow.io.layout import open_dataset
from cryoflow.io.nodes import ATTR

__all__ = ["RUNS", "PROGRESS", "RunSummary", "StepStats", "read_summary", "store_summary"]

RUNS = "runs"
PROGRESS = "progress"


@dataclass
class StepStats:
    """One step's counts: units computed, skipped (current), failed; chunks (or rounds)
    submitted; seconds spent computing."""

    computed: int = 0
    skipped: int = 0
    failed: int = 0
    chunks: int = 0
    seconds: float = 0.0


@dataclass
class RunSummary:
    """What a run did: per step counts and time, and every failed tomogram with its reason."""

    run_id: str
    steps: dict[str, StepStats]
    failures: dict[str, str] = field(default_factory=dict)
    tomograms: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "tomograms": self.tomograms,
            "seconds": round(self.seconds, 3),
            "steps": {
                k: {**vars(v), "seconds": round(v.seconds, 3)} for k, v in self.steps.items()
            },
            "failures": dict(self.failures),
            "ok": self.ok,
        }


def store_summary(root: Any, summary: RunSummary) -> None:
    """Record ``summary`` under ``runs/<run_id>`` and as ``runs``' ``latest``."""
    runs = root.require_group(RUNS)
    runs.create_group(
        summary.run_id, attributes={ATTR: {"kind": "run", "summary": summary.to_dict()}}
    )
    runs.attrs[ATTR] = {"kind": "runs", "latest": summary.run_id}


def read_summary(store: object, run_id: str | None = None) -> dict[str, Any]:
    """The stored summary of run ``run_id`` (default: the latest run)."""
    root: Any = open_dataset(store)
    if RUNS not in root:
        raise NodeNotFoundError(f"{nodes.store_label(store)}: no run recorded in this dataset")
    runs: Any = root[RUNS]
    rid = run_id or (runs.attrs.get(ATTR, {}) or {}).get("latest")
    if not rid or rid not in runs:
        raise NodeNotFoundError(f"{nodes.store_label(store)}: no run {rid!r} recorded")
    return runs[rid].attrs[ATTR]["summary"]
