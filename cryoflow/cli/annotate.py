"""``cryoflow annotate``: probability maps of trained networks over every tilt (or slice)."""

from __future__ import annotations

from pathlib import Path

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import annotate as stage
from cryoflow.pipelines.stages.annotate import AnnotateParams


@o.with_params(
    AnnotateParams, names={"checkpoint": ("--model",)}, types_={"checkpoint": list[Path]}
)
def annotate(params: AnnotateParams, tomograms: o.Tomograms, run: o.Run = o.RUN) -> None:
    """Write uint8 maps to results/annotate/<feature> (+ 'combined' for several models)."""
    where = tomograms.target(run)  # checkpoints are read before a cluster
    done = o.run_stage(stage, where, params, run)
    for tomo, summary in done.items():
        keys = ", ".join(f"annotate/{k}" for k in summary["keys"].values())
        print(f"cryoflow: annotated {tomo}: {keys}")


def register(app: typer.Typer) -> None:
    app.command("annotate")(annotate)
