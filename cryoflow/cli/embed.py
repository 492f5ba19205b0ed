"""``cryoflow embed``: every particle of a set mapped to a point of a conformation space."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages.embed import EmbedParams


@o.with_params(EmbedParams, types_={"classes": str})
def embed(
    params: EmbedParams,
    store: o.Store,
    set_: Annotated[str, typer.Option("--set", help="Particle set (particles/<SET>).")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write (latent.csv, ...).")],
    overwrite: o.Overwrite = False,
    scheduler: o.Scheduler = None,
    workers: o.Workers = None,
) -> None:
    """Train the missing-wedge-aware autoencoder on the set's aligned particles, embed every
    particle on the cluster and find classes in latent space: writes OUT/latent.csv
    (tomogram, x, y, z, z0 .. z{D-1}), classes.csv, particles.star, class_<k>.mrc,
    latent.png, trajectory.png, the model (weights.pt + model.json) and embed.json."""
    from cryoflow.pipelines.cluster.connect import connect, gpu_resources
    from cryoflow.pipelines.stages import embed as stage

    stage.prepare(store, set_, out, overwrite)  # named before any cluster starts
    config = o.cluster(scheduler, workers, resources=gpu_resources(params.device))
    with connect(config) as client:
        res = stage.run(client, store, set_, params, out, overwrite=overwrite)
    r = res.record
    print(
        f"cryoflow: embedded {r['inputs']['n_particles']} particles of {set_!r} in "
        f"{params.latent} dimensions ({'aligned' if r['inputs']['aligned'] else 'no orientations: taken as aligned'}); "
        f"{r['classes']['k']} classes {r['classes']['sizes']} ({r['classes']['chosen_by']}); "
        f"checkpoint {r['checkpoint_sha256'][:12]} -> {out}"
    )


def register(app: typer.Typer) -> None:
    app.command("embed")(embed)
