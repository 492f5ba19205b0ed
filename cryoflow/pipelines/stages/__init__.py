"""Stages: one module per stage (parameter model, lazy plan, thin eager entry point).

:data:`STAGES` is the registry: every stage ``cryoflow run`` can run, in the order its errors
list them; a stage's command-line command, when it has one, is ``cryoflow.cli.<name>``. The
pattern is described in :mod:`cryoflow.pipelines.stages.base`; adding a stage is its module,
one line here, and (for a command) its ``cli`` module. ``train``, ``export`` and ``verify``
are commands with modules here that ``cryoflow run`` does not run (they make no result of a
tomogram).
"""

from __future__ import annotations

from importlib import import_module

from cryoflow.errors import ConfigError
from cryoflow.pipelines.stages.base import Stage

__all__ = ["STAGES", "get_stage"]

#: stage name -> module holding its ``STAGE``, imported on first use
STAGES: dict[str, str] = {
    "ingest": "cryoflow.pipelines.stages.ingest",
    "simulate": "cryoflow.pipelines.stages.simulate",
    "bin": "cryoflow.pipelines.stages.bin",
    "reconstruct": "cryoflow.pipelines.stages.reconstruct",
    "annotate": "cryoflow.pipelines.stages.annotate",
    "lift": "cryoflow.pipelines.stages.lift",
    "edges": "cryoflow.pipelines.stages.edges",
    "detect": "cryoflow.pipelines.stages.detect",
    "localize": "cryoflow.pipelines.stages.localize",
    "intensity": "cryoflow.pipelines.stages.intensity",
    "average": "cryoflow.pipelines.stages.average",
}


def get_stage(name: str) -> Stage:
    """The registered stage ``name`` (``ConfigError`` naming the registered ones otherwise)."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; allowed: {', '.join(STAGES)}")
    stage: Stage = import_module(STAGES[name]).STAGE
    return stage
