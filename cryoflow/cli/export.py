"""``cryoflow export``: a volume, label image or result volume from a store to MRC."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        store: str = typer.Argument(..., help="Dataset store (STORE.zarr)."),
        name: str = typer.Option(..., "--name", help="Tomogram name."),
        key: str = typer.Option(
            ..., "--key", help="Volume or label key (e.g. tomogram), or STEP/KEY of a result."
        ),
        out: Path = typer.Option(..., "--out", help="MRC file to write."),
        level: int = typer.Option(0, "--level", help="Pyramid level of an OME-Zarr volume."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing MRC file."),
        scheduler: str = typer.Option(
            None, "--scheduler", help="Address of an existing Dask scheduler."
        ),
        workers: int = typer.Option(
            None, "--workers", help="Worker processes of the local cluster (default 2)."
        ),
    ) -> None:
        """Write a volume (z, y, x) or tilt-series-shaped result as MRC with its voxel size (for IMOD, ChimeraX)."""
        from cryoflow.pipelines.cluster import ClusterConfig, connect
        from cryoflow.pipelines.export import ExportConfig, export_mrc, open_exportable

        config = ExportConfig(
            store=store, name=name, key=key, out=out, level=level, overwrite=overwrite
        )
        open_exportable(config)  # refuse a missing key or existing file before starting a cluster
        with connect(ClusterConfig.from_env(scheduler=scheduler, n_workers=workers)) as client:
            export_mrc(client, config)
        print(f"cryoflow: wrote {out}")
