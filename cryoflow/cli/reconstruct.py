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
    tomograms: o.Tomograms,
    key: Annotated[str, typer.Option("--key", help="Volume key written under volumes/.")] = (
        stage.VOLUME
    ),
    run: o.Run = o.RUN,
) -> None:
    """Ramp-filter and back-project tilt series into volumes/<key> (OME-Zarr) of the store."""
    done = o.run_stage(stage, tomograms.target(run, key), params, run)
    for tomo, summary in done.items():
        z, y, x = summary["shape"]
        print(f"cryoflow: reconstructed {tomo}: {z} x {y} x {x} -> volumes/{summary['key']}")


def register(app: typer.Typer) -> None:
    app.command("reconstruct")(reconstruct)
