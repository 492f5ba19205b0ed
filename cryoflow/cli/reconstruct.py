"""``cryoflow reconstruct``: weighted back-projection of tilt series into the store."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("reconstruct")
    def reconstruct(
        store: str = typer.Argument(..., help="Dataset store (STORE.zarr)."),
        name: str = typer.Option(None, "--name", help="Tomogram name."),
        all_: bool = typer.Option(False, "--all", help="Every tomogram of the dataset."),
        thickness: int = typer.Option(
            None, "--thickness", help="Volume depth Z in output voxels (default: the binned width)."
        ),
        filter_: str = typer.Option("ramp", "--filter", help="ramp (weighted BP) or none."),
        bin_: int = typer.Option(1, "--bin", help="Average N x N detector pixels first."),
        interpolation: str = typer.Option("linear", "--interpolation", help="linear or nearest."),
        key: str = typer.Option("tomogram", "--key", help="Volume key written under volumes/."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier volume."),
        scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler."),
        workers: int = typer.Option(None, "--workers", help="Local worker processes (default 2)."),
    ) -> None:
        """Ramp-filter and back-project tilt series into volumes/<key> (OME-Zarr) of the store."""
        from cryoflow.pipelines.cluster import ClusterConfig, connect
        from cryoflow.pipelines.reconstruct import (
            ReconstructConfig,
            reconstruct_dataset,
            select_tomograms,
        )

        config = ReconstructConfig(
            thickness=thickness,
            filter=filter_,
            bin=bin_,
            interpolation=interpolation,
            key=key,
            overwrite=overwrite,
        )
        names = select_tomograms(store, name, all_)
        with connect(ClusterConfig.from_env(scheduler=scheduler, n_workers=workers)) as client:
            done = reconstruct_dataset(client, store, names, config)
        for tomo, summary in done.items():
            z, y, x = summary["shape"]
            print(f"cryoflow: reconstructed {tomo}: {z} x {y} x {x} -> volumes/{summary['key']}")
