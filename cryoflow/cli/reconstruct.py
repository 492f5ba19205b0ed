"""``cryoflow reconstruct``: weighted back-projection of tilt series into the store."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import reconstruct as stage
from cryoflow.pipelines.stages.reconstruct import ReconstructParams


@o.with_params(ReconstructParams, skip=("source",))
def reconstruct(
    params: ReconstructParams,
    store: o.Store,
    name: o.Name = None,
    all_: o.All = False,
    key: Annotated[str, typer.Option("--key", help="Volume key written under volumes/.")] = (
        stage.VOLUME
    ),
    overwrite: o.Overwrite = False,
    scheduler: o.Scheduler = None,
    workers: o.Workers = None,
) -> None:
    """Ramp-filter and back-project tilt series into volumes/<key> (OME-Zarr) of the store."""
    done = o.run_stage(
        stage, o.target(store, name, all_, key, overwrite), params, scheduler, workers
    )
    for tomo, summary in done.items():
        z, y, x = summary["shape"]
        print(f"cryoflow: reconstructed {tomo}: {z} x {y} x {x} -> volumes/{summary['key']}")


def register(app: typer.Typer) -> None:
    app.command("reconstruct")(reconstruct)
