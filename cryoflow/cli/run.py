"""``cryoflow run PIPELINE.yaml``: run a declarative pipeline over every tomogram of a dataset."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cryoflow.cli.options import Scheduler


def run(
    pipeline: Annotated[Path, typer.Argument(help="PIPELINE.yaml (see `cryoflow check`).")],
    scheduler: Scheduler = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Dask performance report (HTML); default: STORE.reports/run-TIME.html.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress messages.")] = False,
) -> None:
    """Run every step of PIPELINE.yaml over every tomogram; resumable (rerun to continue)."""
    from cryoflow.pipelines.cluster.connect import ClusterConfig, connect
    from cryoflow.pipelines.cluster.security import load_security
    from cryoflow.pipelines.engine.config import load_pipeline
    from cryoflow.pipelines.engine.run import run_pipeline

    config = load_pipeline(pipeline)
    c = config.cluster
    store = config.dataset.store
    if report is None and c.report:
        report = Path(c.report)
    if report is None and "://" not in store:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        report = Path(f"{store.rstrip('/')}.reports") / f"run-{stamp}.html"
    cluster = ClusterConfig(
        scheduler=scheduler or c.scheduler,
        n_workers=c.n_workers,
        threads_per_worker=c.threads_per_worker,
        memory_limit=c.memory_limit,
        security=load_security(c.security) if c.security else None,
        report=report,  # connect() writes the Dask performance report
        dashboard=c.dashboard,
    )
    with connect(cluster, quiet=quiet) as client:
        summary = run_pipeline(config, client, quiet=quiet)
    print_summary(summary)
    if report is not None and not quiet:
        typer.echo(f"cryoflow: performance report {report}", err=True)
    if not summary.ok:
        failed = "; ".join(f"{t} ({why})" for t, why in summary.failures.items())
        typer.echo(
            f"cryoflow: error: {len(summary.failures)} tomogram(s) failed: {failed}", err=True
        )
        raise typer.Exit(1)


def print_summary(summary: Any) -> None:
    """The run summary as a table on stdout (one row per step)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"cryoflow run {summary.run_id} ({summary.seconds:.1f} s)")
    for col in ("step", "computed", "skipped", "failed", "chunks", "seconds"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for name, s in summary.steps.items():
        table.add_row(
            name, str(s.computed), str(s.skipped), str(s.failed), str(s.chunks), f"{s.seconds:.1f}"
        )
    Console(file=sys.stdout).print(table)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
