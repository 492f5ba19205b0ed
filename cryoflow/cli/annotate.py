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
def annotate(
    params: AnnotateParams,
    store: o.Store,
    name: o.Name = None,
    all_: o.All = False,
    overwrite: o.Overwrite = False,
    scheduler: o.Scheduler = None,
    workers: o.Workers = None,
) -> None:
    """Write uint8 maps to results/annotate/<feature> (+ 'combined' for several models)."""
    where = o.target(store, name, all_, None, overwrite)  # checkpoints are read before a cluster
    done = o.run_stage(stage, where, params, scheduler, workers)
    for tomo, summary in done.items():
        keys = ", ".join(f"annotate/{k}" for k in summary["keys"].values())
        print(f"cryoflow: annotated {tomo}: {keys}")


def register(app: typer.Typer) -> None:
    app.command("annotate")(annotate)
