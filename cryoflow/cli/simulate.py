"""``cryoflow simulate``: synthetic cellular tomograms with ground truth, into a store."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli.options import Scheduler, Workers, cluster, param
from cryoflow.pipelines.stages.simulate import SimulateParams as P


def simulate(
    out: Annotated[str, typer.Option("--out", help="Dataset store to write (STORE.zarr).")],
    preset: Annotated[str, param(P, "preset")] = P.default("preset"),
    n_tomograms: Annotated[int, param(P, "n_tomograms")] = P.default("n_tomograms"),
    seed: Annotated[int, param(P, "seed")] = P.default("seed"),
    snr: Annotated[float | None, param(P, "snr")] = P.default("snr"),
    tilt_range: Annotated[
        tuple[float, float] | None, param(P, "tilt_range_deg", "--tilt-range")
    ] = P.default("tilt_range_deg"),
    tilt_step: Annotated[float | None, param(P, "tilt_step_deg", "--tilt-step")] = P.default(
        "tilt_step_deg"
    ),
    shape: Annotated[tuple[int, int, int] | None, param(P, "shape")] = P.default("shape"),
    tilt_axis: Annotated[float | None, param(P, "tilt_axis_deg", "--tilt-axis")] = P.default(
        "tilt_axis_deg"
    ),
    blur: Annotated[str | None, param(P, "blur")] = P.default("blur"),
    contrast: Annotated[str | None, param(P, "contrast")] = P.default("contrast"),
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace tomograms of the same names.")
    ] = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
) -> None:
    """Simulate cellular phantoms, their tilt series, 2D/3D truth and reconstructions."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages import simulate as stage
    from cryoflow.pipelines.stages.simulation import check_free

    params = P(
        preset=preset,
        n_tomograms=n_tomograms,
        seed=seed,
        snr=snr,
        tilt_range_deg=tilt_range,
        tilt_step_deg=tilt_step,
        shape=shape,
        tilt_axis_deg=tilt_axis,
        blur=blur,
        contrast=contrast,
    )
    config = params.simulation()
    check_free(out, config, overwrite)  # before a cluster starts
    with connect(cluster(scheduler, workers)) as client:
        names = stage.run(client, out, params, overwrite=overwrite)
    z, y, x = config.shape
    print(
        f"cryoflow: simulated {len(names)} tomogram(s) ({', '.join(names)}): "
        f"{config.angles_deg.size} tilts of {y} x {x}, volumes {z} x {y} x {x} -> {out}"
    )


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
