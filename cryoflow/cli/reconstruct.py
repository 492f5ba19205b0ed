"""``cryoflow reconstruct``: weighted back-projection of tilt series into the store."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli.options import All, Name, Overwrite, Scheduler, Store, Workers, cluster, param
from cryoflow.pipelines.stages.reconstruct import ReconstructParams as P


def reconstruct(
    store: Store,
    name: Name = None,
    all_: All = False,
    thickness: Annotated[int | None, param(P, "thickness")] = P.default("thickness"),
    filter_: Annotated[str, param(P, "filter")] = P.default("filter"),
    bin_: Annotated[int, param(P, "bin")] = P.default("bin"),
    interpolation: Annotated[str, param(P, "interpolation")] = P.default("interpolation"),
    chunk: Annotated[int, param(P, "chunk")] = P.default("chunk"),
    key: Annotated[str, typer.Option("--key", help="Volume key written under volumes/.")] = (
        "tomogram"
    ),
    overwrite: Overwrite = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
) -> None:
    """Ramp-filter and back-project tilt series into volumes/<key> (OME-Zarr) of the store."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages import reconstruct as stage
    from cryoflow.pipelines.stages.eager import prepare
    from cryoflow.pipelines.stages.inputs import pick_tomograms

    params = P(
        thickness=thickness, filter=filter_, bin=bin_, interpolation=interpolation, chunk=chunk
    )
    names = pick_tomograms(store, name, all_)
    prepare(stage.STAGE, store, names, params, out=key, overwrite=overwrite)  # before a cluster
    with connect(cluster(scheduler, workers)) as client:
        done = stage.run(client, store, names, params, key=key, overwrite=overwrite)
    for tomo, summary in done.items():
        z, y, x = summary["shape"]
        print(f"cryoflow: reconstructed {tomo}: {z} x {y} x {x} -> volumes/{summary['key']}")


def register(app: typer.Typer) -> None:
    app.command("reconstruct")(reconstruct)
