"""``cryoflow extract``: particle boxes from every tomogram into a particle set."""

from __future__ import annotations

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import extract as stage
from cryoflow.pipelines.stages.extract import ExtractParams


@o.with_params(ExtractParams)
def extract(
    params: ExtractParams,
    store: o.Store,
    run: o.Run = o.RUN,
) -> None:
    """Cut an (n, B, B, B) particle stack from each tomogram's volume KEY into particles/SET,
    each particle with its tomogram's missing wedge (read it with cryoflow.open_particles)."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages.eager import Target

    where = Target(store, (), overwrite=run.overwrite)
    stage.refuse_existing(store, params.set, run.overwrite)  # bad input: before a cluster
    prepared = stage.plan(store, params)
    with connect(run.cluster()) as client:
        done = stage.run(client, where, params, prepared=prepared)
    print(
        f"cryoflow: extracted {done['n_particles']} particles (box {done['box']}) from "
        f"{len(done['tomograms'])} tomograms into particles/{done['set']} of {store}"
    )


def register(app: typer.Typer) -> None:
    app.command("extract")(extract)
