"""``cryoflow export``: a volume, label image or result volume from a store to MRC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryoflow.cli import options as o


@o.with_params(None)
def export(
    store: o.Store,
    name: Annotated[str, typer.Option("--name", help="Tomogram name.")],
    key: Annotated[
        str,
        typer.Option("--key", help="Volume or label key (e.g. tomogram), or STEP/KEY of a result."),
    ],
    out: Annotated[Path, typer.Option("--out", help="MRC file to write.")],
    level: Annotated[int, typer.Option("--level", help="Pyramid level of an OME-Zarr volume.")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing MRC file.")
    ] = False,
    cluster: o.Cluster = o.LOCAL,
) -> None:
    """Write a volume (z, y, x) or tilt-series-shaped result as MRC with its voxel size (for IMOD, ChimeraX)."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages.export import ExportConfig, export_mrc, open_exportable

    config = ExportConfig(
        store=store, name=name, key=key, out=out, level=level, overwrite=overwrite
    )
    open_exportable(config)  # refuse a missing key or existing file before starting a cluster
    with connect(cluster.config()) as client:
        export_mrc(client, config)
    print(f"cryoflow: wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
