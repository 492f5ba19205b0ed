"""``cryoflow dewedge``: missing-wedge filling learned from the selected tomograms."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import dewedge as stage
from cryoflow.pipelines.stages.dewedge import DewedgeParams


@o.with_params(DewedgeParams)
def dewedge(
    params: DewedgeParams,
    tomograms: o.Tomograms,
    out: Annotated[str, typer.Option("--out", help="Volume key written under volumes/.")] = (
        stage.OUT
    ),
    model_out: Annotated[
        Path | None,
        typer.Option(
            "--model-out", help="Where the trained model goes (default STORE/models/dewedge-*)."
        ),
    ] = None,
    run: o.Run = o.RUN,
) -> None:
    """Train one network on every selected tomogram's volume KEY (self-supervised, each with
    its own tilt range) and write each one's filled volume to volumes/<out> (OME-Zarr)."""
    from cryoflow.pipelines.cluster.connect import connect

    where = tomograms.target(run, out)
    stage.preflight(where, params)  # before any cluster starts
    with connect(run.cluster()) as client:
        done = stage.run(client, where, params, model_out=model_out)
    first = next(iter(done.values()), {})
    if "trained" in first:
        what = "trained" if first["trained"] else "reused (current in results/dewedge)"
        where = f" (copy in {model_out})" if model_out is not None else ""
        print(f"cryoflow: dewedge network {what}{where}")
    for tomo, summary in done.items():
        z, y, x = summary["shape"]
        print(
            f"cryoflow: dewedged {tomo}: {z} x {y} x {x} -> volumes/{summary['key']} "
            f"(model {summary['model']}, sha256 {summary['model_sha256'][:12]})"
        )


def register(app: typer.Typer) -> None:
    app.command("dewedge")(dewedge)
