"""``cryoflow lift``: 2D masks of every tilt -> 3D masks (the paper's Algorithm 1)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("lift")
    def lift(
        store: str = typer.Argument(..., help="Dataset store (STORE.zarr)."),
        name: str = typer.Option(None, "--name", help="Tomogram name."),
        all_: bool = typer.Option(False, "--all", help="Every tomogram of the dataset."),
        maps: str = typer.Option(..., "--maps", help="STEP/KEY of the 2D maps (tilt, y, x)."),
        classes: str = typer.Option(
            None, "--classes", help="Comma-separated classes; maps are read from STEP/KEY_<class>."
        ),
        out: str = typer.Option("lift", "--out", help="Result step and label key to write."),
        thickness: int = typer.Option(None, "--thickness", help="Volume depth Z (voxels)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier results."),
        scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler."),
        workers: int = typer.Option(None, "--workers", help="Local worker processes (default 2)."),
    ) -> None:
        """Back-project 2D masks into votes, pick the threshold, write 3D masks and score curves."""
        from cryoflow.pipelines.cluster import ClusterConfig, connect
        from cryoflow.pipelines.lift import (
            LiftConfig,
            lift_dataset,
            lift_outputs,
            parse_maps,
            refuse_existing,
            select_tomograms,
        )

        names = select_tomograms(store, name, all_)
        config = LiftConfig(
            maps=parse_maps(maps),
            classes=tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else (),
            out=out,
            thickness=thickness,
            overwrite=overwrite,
        )
        refuse_existing(store, names, config.out, lift_outputs(config), overwrite)
        with connect(ClusterConfig.from_env(scheduler=scheduler, n_workers=workers)) as client:
            done = lift_dataset(client, store, names, config)
        for tomo, summary in done.items():
            picked = ", ".join(f"{c} T={t:g}" for c, t in summary["thresholds"].items())
            print(f"cryoflow: lifted {tomo}: {picked} -> labels/{out}")
