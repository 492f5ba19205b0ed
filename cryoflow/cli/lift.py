"""``cryoflow lift``: 2D masks of every tilt -> 3D masks (the paper's Algorithm 1)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import lift as stage
from cryoflow.pipelines.stages.lift import LiftParams


@o.with_params(LiftParams, names={"masks": ("--maps",)})
def lift(
    params: LiftParams,
    tomograms: o.Tomograms,
    out: Annotated[str, typer.Option("--out", help="Result step and label key to write.")] = "lift",
    run: o.Run = o.RUN,
    masks_file: Annotated[
        str | None,
        typer.Option(
            "--masks",
            help="Your own 2D masks: an MRC stack (tilt, y, x) of the tilt series' shape, "
            "non-zero inside; integer values are classes (instead of --maps).",
        ),
    ] = None,
) -> None:
    """Back-project 2D masks into votes, pick the threshold, write 3D masks and score curves.

    With --masks MASKS.mrc (and --name): your own masks, into labels/<out> (export --key <out>).
    """
    where = tomograms.target(run, out)
    if masks_file is not None:
        done = _lift_file(where, params, masks_file, run)
    else:
        done = o.run_stage(stage, where, params, run)
    for tomo, summary in done.items():
        picked = ", ".join(f"{c} T={t:g}" for c, t in summary["thresholds"].items())
        print(f"cryoflow: lifted {tomo}: {picked} -> labels/{out}")


def _lift_file(where: Any, params: LiftParams, masks_file: str, run: o.Run) -> dict[str, Any]:
    """``--masks FILE``: checked before a cluster starts, then imported and lifted."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages import lift_masks

    checked = lift_masks.check_masks_file(where.store, where, masks_file)
    with connect(run.cluster()) as client:
        done = lift_masks.run(client, where, params, checked)
    for tomo, summary in done.items():
        classes = ", ".join(str(c) for c in summary["classes"])
        print(
            f"cryoflow: {tomo}: masks {checked.path}, classes {classes}; thickness "
            f"{summary['thickness']} ({summary['thickness_from']})"
        )
    return done


def register(app: typer.Typer) -> None:
    app.command("lift")(lift)
