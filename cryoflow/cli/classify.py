"""``cryoflow classify``: a particle set's conformations as K classes (class maps + STAR)."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages.classify import ClassifyParams


@o.with_params(ClassifyParams, types_={"classes": str})
def classify(
    params: ClassifyParams,
    store: o.Store,
    out: Annotated[
        str, typer.Option("--out", help="Output folder (class_<k>.mrc, particles.star).")
    ],
    run: o.Run = o.RUN,
) -> None:
    """Classify a particle set: writes OUT/class_<k>.mrc and OUT/particles.star (rlnClassNumber)."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages import classify as stage

    stage.preflight(store, params, out, run.overwrite)  # bad input: before any cluster starts
    with connect(run.cluster()) as client:
        res = stage.classify(client, store, params, out, overwrite=run.overwrite)
    sizes = ", ".join(str(v) for v in res.summary.get("class_sizes", []))
    print(f"cryoflow classify: {params.method}: class sizes {sizes}; wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
