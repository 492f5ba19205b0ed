"""``cryoflow average``: subtomogram alignment and averaging of a particle set."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import average as stage
from cryoflow.pipelines.stages.average import AverageParams


@o.with_params(AverageParams)
def average(
    params: AverageParams,
    store: o.Store,
    out: Annotated[
        str, typer.Option("--out", help="Directory of average.mrc, half1/2.mrc, fsc.csv, ...")
    ],
    run: o.Run = o.RUN,
) -> None:
    """Align and average a particle set with missing-wedge compensation and gold-standard
    half sets; write DIR/average.mrc, half1.mrc, half2.mrc, fsc.csv and particles.star."""
    from cryoflow.pipelines.cluster.connect import connect, gpu_resources
    from cryoflow.pipelines.stages.eager import Target

    target = Target(store, (), out=out, overwrite=run.overwrite)
    prepared = stage.prepare(target, params)  # every check before a cluster starts
    local_gpu = gpu_resources(params.device)  # a local cluster's workers offer GPU=1 then
    with connect(run.cluster(resources=local_gpu)) as client:
        files = stage.run(client, target, params, prepared=prepared)
    print(f"cryoflow: average of {params.set} -> {', '.join(str(p) for p in files.values())}")


def register(app: typer.Typer) -> None:
    app.command("average")(average)
