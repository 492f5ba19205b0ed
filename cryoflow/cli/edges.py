"""``cryoflow edges``: membrane-like edges in 3D from 2D edge maps (the paper's Algorithm 2)."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import edges as stage
from cryoflow.pipelines.stages.edges import EdgesParams


@o.with_params(
    EdgesParams, names={"iterations": ("--iterations", "-m"), "threshold": ("--threshold", "-T")}
)
def edges(
    params: EdgesParams,
    tomograms: o.Tomograms,
    out: Annotated[
        str, typer.Option("--out", help="Result step and label key to write.")
    ] = "edges",
    run: o.Run = o.RUN,
) -> None:
    """DoG edges per tilt, per-tilt back-projections refined by adjacent tilts, summed."""
    done = o.run_stage(stage, tomograms.target(run, out), params, run)
    for tomo, summary in done.items():
        print(f"cryoflow: edges {tomo}: {summary['n_edge_voxels']} voxels -> labels/{out}")


def register(app: typer.Typer) -> None:
    app.command("edges")(edges)
