"""``cryoflow localize``: 2D boxes per tilt -> 3D boxes (the paper's Algorithm 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import localize as stage
from cryoflow.pipelines.stages.localize import LocalizeParams


@o.with_params(
    LocalizeParams,
    names={"threshold": ("--threshold", "-T"), "jitter_px": ("--jitter",)},
    skip=("boxes",),
)
def localize(
    params: LocalizeParams,
    tomograms: o.Tomograms,
    boxes: Annotated[
        Path | None,
        typer.Option(
            "--boxes", help="2D boxes CSV/JSON: tilt,class,score,y0,x0,y1,x1 [,tomogram]."
        ),
    ] = None,
    from_truth: Annotated[
        bool, typer.Option("--from-truth", help="Boxes from the simulator's truth/masks2d_<class>.")
    ] = False,
    export: Annotated[
        Path | None, typer.Option("--export", help="Write all 3D boxes to CSV/JSON.")
    ] = None,
    out: Annotated[str, typer.Option("--out", help="Result step to write.")] = "localize",
    run: o.Run = o.RUN,
) -> None:
    """Back-project box masks, threshold, label 3D components across chunks, box them."""
    params = stage.with_boxes(params, boxes, from_truth)
    stage.check_boxes(params)  # refuse a bad file before starting a cluster
    where = tomograms.target(run, out)
    table = o.run_stage(stage, where, params, run, export=export)
    for tomo in where.names:
        print(f"cryoflow: localize {tomo}: {int((table['tomogram'] == tomo).sum())} 3D boxes")
    if export is not None:
        print(f"cryoflow: wrote {export}")


def register(app: typer.Typer) -> None:
    app.command("localize")(localize)
