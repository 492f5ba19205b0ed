"""``cryoflow annotate``: probability maps of trained networks over every tilt (or slice)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("annotate")
    def annotate(
        store: str = typer.Argument(..., help="Dataset store (STORE.zarr)."),
        model: list[Path] = typer.Option(
            ..., "--model", help="Model directory (repeat per feature)."
        ),
        name: str = typer.Option(None, "--name", help="Tomogram name."),
        all_: bool = typer.Option(False, "--all", help="Every tomogram of the dataset."),
        slices: bool = typer.Option(
            False, "--slices", help="Annotate tomogram z slices, not tilts."
        ),
        batch_size: int = typer.Option(8, "--batch-size", help="Images per task."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda (tasks ask for GPU=1)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier results."),
        scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler."),
        workers: int = typer.Option(None, "--workers", help="Local worker processes (default 2)."),
    ) -> None:
        """Write uint8 maps to results/annotate/<feature> (+ 'combined' for several models)."""
        from cryoflow.models.checkpoint import read_config
        from cryoflow.pipelines.annotate import AnnotateConfig, annotate_dataset
        from cryoflow.pipelines.cluster import ClusterConfig, connect
        from cryoflow.pipelines.lift import select_tomograms

        names = select_tomograms(store, name, all_)
        for directory in model:  # fail fast, before a cluster starts
            read_config(directory)
        config = AnnotateConfig(
            models=tuple(model),
            slices=slices,
            batch_size=batch_size,
            device=device,
            overwrite=overwrite,
        )
        with connect(ClusterConfig.from_env(scheduler=scheduler, n_workers=workers)) as client:
            done = annotate_dataset(client, store, names, config)
        for tomo, summary in done.items():
            keys = ", ".join(f"annotate/{k}" for k in summary["keys"].values())
            print(f"cryoflow: annotated {tomo}: {keys}")
