"""``cryoflow edges``: membrane-like edges in 3D from 2D edge maps (the paper's Algorithm 2)."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli.options import All, Name, Overwrite, Scheduler, Store, Workers, cluster, param
from cryoflow.pipelines.stages.edges import EdgesParams as P


def edges(
    store: Store,
    name: Name = None,
    all_: All = False,
    sigma1: Annotated[float, param(P, "sigma1")] = P.default("sigma1"),
    sigma2: Annotated[float, param(P, "sigma2")] = P.default("sigma2"),
    alpha: Annotated[float, param(P, "alpha")] = P.default("alpha"),
    denoise: Annotated[str, param(P, "denoise")] = P.default("denoise"),
    denoise_size: Annotated[float, param(P, "denoise_size")] = P.default("denoise_size"),
    invert: Annotated[bool, param(P, "invert")] = P.default("invert"),
    iterations: Annotated[int, param(P, "iterations", "--iterations", "-m")] = P.default(
        "iterations"
    ),
    window: Annotated[int, param(P, "window")] = P.default("window"),
    min_support: Annotated[int, param(P, "min_support")] = P.default("min_support"),
    threshold: Annotated[float, param(P, "threshold", "--threshold", "-T")] = P.default(
        "threshold"
    ),
    thickness: Annotated[int | None, param(P, "thickness")] = P.default("thickness"),
    chunk: Annotated[int, param(P, "chunk")] = P.default("chunk"),
    out: Annotated[
        str, typer.Option("--out", help="Result step and label key to write.")
    ] = "edges",
    overwrite: Overwrite = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
) -> None:
    """DoG edges per tilt, per-tilt back-projections refined by adjacent tilts, summed."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages import edges as stage
    from cryoflow.pipelines.stages.eager import prepare
    from cryoflow.pipelines.stages.inputs import pick_tomograms

    params = P(
        sigma1=sigma1,
        sigma2=sigma2,
        alpha=alpha,
        denoise=denoise,
        denoise_size=denoise_size,
        invert=invert,
        iterations=iterations,
        window=window,
        min_support=min_support,
        threshold=threshold,
        thickness=thickness,
        chunk=chunk,
    )
    names = pick_tomograms(store, name, all_)
    prepare(stage.STAGE, store, names, params, out=out, overwrite=overwrite)  # before a cluster
    with connect(cluster(scheduler, workers)) as client:
        done = stage.run(client, store, names, params, out=out, overwrite=overwrite)
    for tomo, summary in done.items():
        print(f"cryoflow: edges {tomo}: {summary['n_edge_voxels']} voxels -> labels/{out}")


def register(app: typer.Typer) -> None:
    app.command("edges")(edges)
