"""``cryoflow pick``: network-assisted picking from a few example particles."""

from __future__ import annotations

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import pick as stage
from cryoflow.pipelines.stages.pick import PickParams


@o.with_params(PickParams)
def pick(params: PickParams, tomograms: o.Tomograms, run: o.Run = o.RUN) -> None:
    """Train a small network on the example particles (positions only) and write the picks it
    finds in every selected tomogram as a particle file (STAR, CSV or copick JSON by suffix)."""
    from cryoflow.pipelines.cluster.connect import connect

    where = tomograms.target(run)
    stage.prepare(where, params)  # bad input: before a cluster
    with connect(run.cluster()) as client:
        done = stage.run(client, where, params)
    per = ", ".join(f"{t}: {n}" for t, n in done["per_tomogram"].items()) or "none"
    print(f"cryoflow: wrote {done['n_picks']} picks ({per}) to {done['out']}")


def register(app: typer.Typer) -> None:
    app.command("pick")(pick)
