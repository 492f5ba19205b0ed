"""``cryoflow annotate``: probability maps of trained networks over every tilt (or slice)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryoflow.cli.options import All, Name, Overwrite, Scheduler, Store, Workers, cluster, param
from cryoflow.pipelines.stages.annotate import AnnotateParams as P


def annotate(
    store: Store,
    model: Annotated[
        list[Path], typer.Option("--model", help="Model directory (repeat per feature).")
    ],
    name: Name = None,
    all_: All = False,
    slices: Annotated[bool, param(P, "slices")] = P.default("slices"),
    volume_key: Annotated[str, param(P, "volume_key")] = P.default("volume_key"),
    batch_size: Annotated[int, param(P, "batch_size")] = P.default("batch_size"),
    device: Annotated[str, param(P, "device")] = P.default("device"),
    overwrite: Overwrite = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
) -> None:
    """Write uint8 maps to results/annotate/<feature> (+ 'combined' for several models)."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages import annotate as stage
    from cryoflow.pipelines.stages.eager import prepare
    from cryoflow.pipelines.stages.inputs import pick_tomograms

    params = P(
        checkpoint=tuple(str(m) for m in model),
        slices=slices,
        volume_key=volume_key,
        batch_size=batch_size,
        device=device,
    )
    names = pick_tomograms(store, name, all_)
    prepare(stage.STAGE, store, names, params, overwrite=overwrite)  # checkpoints read here
    with connect(cluster(scheduler, workers)) as client:
        done = stage.run(client, store, names, params, overwrite=overwrite)
    for tomo, summary in done.items():
        keys = ", ".join(f"annotate/{k}" for k in summary["keys"].values())
        print(f"cryoflow: annotated {tomo}: {keys}")


def register(app: typer.Typer) -> None:
    app.command("annotate")(annotate)
