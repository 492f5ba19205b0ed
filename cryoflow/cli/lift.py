"""``cryoflow lift``: 2D masks of every tilt -> 3D masks (the paper's Algorithm 1)."""

from __future__ import annotations

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
from cryoflow.pipelines.stages.lift import LiftParams as P


def lift(
    store: Store,
    name: Name = None,
    all_: All = False,
    maps: Annotated[str, param(P, "masks", "--maps")] = P.default("masks"),
    classes: Annotated[
        str | None,
        typer.Option(
            "--classes", help="Comma-separated classes; maps are read from STEP/KEY_<class>."
        ),
    ] = None,
    threshold: Annotated[float | None, param(P, "threshold")] = P.default("threshold"),
    thickness: Annotated[int | None, param(P, "thickness")] = P.default("thickness"),
    chunk: Annotated[int, param(P, "chunk")] = P.default("chunk"),
    out: Annotated[str, typer.Option("--out", help="Result step and label key to write.")] = "lift",
    overwrite: Overwrite = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
) -> None:
    """Back-project 2D masks into votes, pick the threshold, write 3D masks and score curves."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages import lift as stage
    from cryoflow.pipelines.stages.eager import prepare
    from cryoflow.pipelines.stages.inputs import pick_tomograms

    params = P(
        masks=maps,
        classes=names_list(classes),
        threshold=threshold,
        thickness=thickness,
        chunk=chunk,
    )
    names = pick_tomograms(store, name, all_)
    prepare(stage.STAGE, store, names, params, out=out, overwrite=overwrite)  # before a cluster
    with connect(cluster(scheduler, workers)) as client:
        done = stage.run(client, store, names, params, out=out, overwrite=overwrite)
    for tomo, summary in done.items():
        picked = ", ".join(f"{c} T={t:g}" for c, t in summary["thresholds"].items())
        print(f"cryoflow: lifted {tomo}: {picked} -> labels/{out}")


def register(app: typer.Typer) -> None:
    app.command("lift")(lift)
