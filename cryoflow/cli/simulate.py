"""``cryoflow simulate``: synthetic cellular tomograms with ground truth, into a store."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import simulate as stage
from cryoflow.pipelines.stages.simulate import SimulateParams


@o.with_params(
    SimulateParams,
    names={
        "tilt_range_deg": ("--tilt-range",),
        "tilt_step_deg": ("--tilt-step",),
        "tilt_axis_deg": ("--tilt-axis",),
    },
)
def simulate(
    params: SimulateParams,
    out: Annotated[str, typer.Option("--out", help="Dataset store to write (STORE.zarr).")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace tomograms of the same names.")
    ] = False,
    scheduler: o.Scheduler = None,
    workers: o.Workers = None,
) -> None:
    """Simulate cellular phantoms, their tilt series, 2D/3D truth and reconstructions."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages.eager import Target
    from cryoflow.pipelines.stages.simulation import check_free

    config = params.simulation()
    check_free(out, config, overwrite)  # before a cluster starts
    with connect(o.cluster(scheduler, workers)) as client:
        names = stage.run(client, Target(out, (), overwrite=overwrite), params)
    z, y, x = config.shape
    print(
        f"cryoflow: simulated {len(names)} tomogram(s) ({', '.join(names)}): "
        f"{config.angles_deg.size} tilts of {y} x {x}, volumes {z} x {y} x {x} -> {out}"
    )


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
