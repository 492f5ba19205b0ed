"""``cryoflow localize``: 2D boxes per tilt -> 3D boxes (the paper's Algorithm 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryoflow.cli.options import (
    All,
    Name,
    Overwrite,
    Scheduler,
    Store,
    Workers,
    cluster,
    names_list,
    param,
)
from cryoflow.pipelines.stages.localize import LocalizeParams as P


def localize(
    store: Store,
    name: Name = None,
    all_: All = False,
    boxes: Annotated[
        Path | None,
        typer.Option(
            "--boxes", help="2D boxes CSV/JSON: tilt,class,score,y0,x0,y1,x1 [,tomogram]."
        ),
    ] = None,
    from_truth: Annotated[
        bool, typer.Option("--from-truth", help="Boxes from the simulator's truth/masks2d_<class>.")
    ] = False,
    classes: Annotated[
        str | None, typer.Option("--classes", help="Comma-separated classes.")
    ] = None,
    threshold: Annotated[float | None, param(P, "threshold", "--threshold", "-T")] = P.default(
        "threshold"
    ),
    min_score: Annotated[float, param(P, "min_score")] = P.default("min_score"),
    connectivity: Annotated[int, param(P, "connectivity")] = P.default("connectivity"),
    min_voxels: Annotated[int, param(P, "min_voxels")] = P.default("min_voxels"),
    jitter: Annotated[float, param(P, "jitter_px", "--jitter")] = P.default("jitter_px"),
    seed: Annotated[int, param(P, "seed")] = P.default("seed"),
    thickness: Annotated[int | None, param(P, "thickness")] = P.default("thickness"),
    chunk: Annotated[int, param(P, "chunk")] = P.default("chunk"),
    export: Annotated[
        Path | None, typer.Option("--export", help="Write all 3D boxes to CSV/JSON.")
    ] = None,
    out: Annotated[str, typer.Option("--out", help="Result step to write.")] = "localize",
    overwrite: Overwrite = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
) -> None:
    """Back-project box masks, threshold, label 3D components across chunks, box them."""
    from cryoflow.errors import ConfigError
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages import localize as stage
    from cryoflow.pipelines.stages.eager import prepare
    from cryoflow.pipelines.stages.inputs import pick_tomograms

    if (boxes is None) == (not from_truth):
        raise ConfigError("give exactly one of --boxes FILE or --from-truth")
    params = P(
        boxes="truth" if from_truth else str(boxes),
        classes=names_list(classes),
        threshold=threshold,
        min_score=min_score,
        connectivity=connectivity,
        min_voxels=min_voxels,
        jitter_px=jitter,
        seed=seed,
        thickness=thickness,
        chunk=chunk,
    )
    stage.check_boxes(params)  # refuse a bad file before starting a cluster
    names = pick_tomograms(store, name, all_)
    prepare(stage.STAGE, store, names, params, out=out, overwrite=overwrite)
    with connect(cluster(scheduler, workers)) as client:
        table = stage.run(client, store, names, params, out=out, overwrite=overwrite, export=export)
    for tomo in names:
        print(f"cryoflow: localize {tomo}: {int((table['tomogram'] == tomo).sum())} 3D boxes")
    if export is not None:
        print(f"cryoflow: wrote {export}")


def register(app: typer.Typer) -> None:
    app.command("localize")(localize)
