"""``cryoflow lift``: 2D masks of every tilt -> 3D masks (the paper's Algorithm 1)."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import lift as stage
from cryoflow.pipelines.stages.lift import LiftParams


@o.with_params(LiftParams, names={"masks": ("--maps",)})
def lift(
    params: LiftParams,
    store: o.Store,
    name: o.Name = None,
    all_: o.All = False,
    out: Annotated[str, typer.Option("--out", help="Result step and label key to write.")] = "lift",
    overwrite: o.Overwrite = False,
    scheduler: o.Scheduler = None,
    workers: o.Workers = None,
) -> None:
    """Back-project 2D masks into votes, pick the threshold, write 3D masks and score curves."""
    where = o.target(store, name, all_, out, overwrite)
    done = o.run_stage(stage, where, params, scheduler, workers)
    for tomo, summary in done.items():
        picked = ", ".join(f"{c} T={t:g}" for c, t in summary["thresholds"].items())
        print(f"cryoflow: lifted {tomo}: {picked} -> labels/{out}")


def register(app: typer.Typer) -> None:
    app.command("lift")(lift)
