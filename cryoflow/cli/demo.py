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
        bool, typer.Option("--quick", help="Smallest sizes (for smoke tests).")
    ] = False,
) -> None:
    """Simulate a small dataset and run every stage end to end on a local Dask cluster.

    Writes OUT/report.html (pictures), OUT/metrics.json (figures measured against the
    simulator's ground truth) and prints a summary table.
    """
    from cryoflow.pipelines.demo.run import DemoConfig, run_demo

    cfg = DemoConfig(out=out, seed=seed, overwrite=overwrite, quick=quick)
    if not run_demo(cfg, cluster(scheduler, workers)):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
