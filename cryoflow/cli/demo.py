"""``cryoflow demo``: the whole pipeline on a small synthetic cellular dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryoflow.cli.options import Scheduler, cluster


def demo(
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("demo_out"),
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes.")] = 2,
    scheduler: Scheduler = None,
    seed: Annotated[int, typer.Option("--seed", help="Simulation seed.")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing demo in OUT.")
    ] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="Smallest sizes of the preset (for smoke tests).")
    ] = False,
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="demo: two small tomograms, a few minutes; paper: the 2D-to-3D paper's "
            "experiments at the paper's scale (several 128 x 512 x 512 tomograms, training "
            "by steps; tens of minutes).",
        ),
    ] = "demo",
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the preset's resolved sizes (JSON) and exit."),
    ] = False,
) -> None:
    """Simulate a dataset and run every stage end to end on a local Dask cluster.

    Writes OUT/report.html (pictures), OUT/metrics.json (figures measured against the
    simulator's ground truth) and prints a summary table.
    """
    from cryoflow.pipelines.demo.run import DemoConfig, run_demo

    cfg = DemoConfig(out=out, seed=seed, overwrite=overwrite, quick=quick, preset=preset)
    if dry_run:
        import json

        print(json.dumps(cfg.sizes.sizes(seed), indent=2))
        return
    if not run_demo(cfg, cluster(scheduler, workers)):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
