"""``cryoflow demo``: the whole pipeline on a small synthetic cellular dataset."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo_out"), "--out", help="Output directory."),
        workers: int = typer.Option(2, "--workers", help="Local worker processes."),
        scheduler: str = typer.Option(None, "--scheduler", help="Existing scheduler address."),
        seed: int = typer.Option(0, "--seed", help="Simulation seed."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace an existing demo in OUT."
        ),
        quick: bool = typer.Option(False, "--quick", help="Smallest sizes (for smoke tests)."),
    ) -> None:
        """Simulate a small dataset and run every stage end to end on a local Dask cluster.

        Writes OUT/report.html (pictures), OUT/metrics.json (figures measured against the
        simulator's ground truth) and prints a summary table.
        """
        from cryoflow.pipelines.cluster import ClusterConfig
        from cryoflow.pipelines.demo import DemoConfig, run_demo

        cfg = DemoConfig(out=out, seed=seed, overwrite=overwrite, quick=quick)
        ok = run_demo(cfg, ClusterConfig.from_env(n_workers=workers, scheduler=scheduler))
        if not ok:
            raise typer.Exit(1)
