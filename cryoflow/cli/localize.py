"""``cryoflow localize``: 2D boxes per tilt -> 3D boxes (the paper's Algorithm 3)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("localize")
    def localize(
        store: str = typer.Argument(..., help="Dataset store (STORE.zarr)."),
        name: str = typer.Option(None, "--name", help="Tomogram name."),
        all_: bool = typer.Option(False, "--all", help="Every tomogram of the dataset."),
        boxes: Path = typer.Option(
            None, "--boxes", help="2D boxes CSV/JSON: tilt,class,score,y0,x0,y1,x1 [,tomogram]."
        ),
        from_truth: bool = typer.Option(
            False, "--from-truth", help="Boxes from the simulator's truth/masks2d_<class>."
        ),
        classes: str = typer.Option(None, "--classes", help="Comma-separated classes."),
        threshold: float = typer.Option(
            None, "--threshold", "-T", help="U3D > T (default: chosen by select_threshold)."
        ),
        min_score: float = typer.Option(0.0, "--min-score", help="Ignore weaker 2D boxes."),
        connectivity: int = typer.Option(1, "--connectivity", help="1 faces, 2 edges, 3 corners."),
        min_voxels: int = typer.Option(1, "--min-voxels", help="Drop smaller components."),
        jitter: float = typer.Option(0.0, "--jitter", help="Truth-box edge jitter (px, sd)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the jitter."),
        thickness: int = typer.Option(None, "--thickness", help="Volume depth Z (voxels)."),
        export: Path = typer.Option(None, "--export", help="Write all 3D boxes to CSV/JSON."),
        out: str = typer.Option("localize", "--out", help="Result step to write."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier results."),
        scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler."),
        workers: int = typer.Option(None, "--workers", help="Local worker processes (default 2)."),
    ) -> None:
        """Back-project box masks, threshold, label 3D components across chunks, box them."""
        from cryoflow.io.boxes import read_boxes
        from cryoflow.pipelines.cluster import ClusterConfig, connect
        from cryoflow.pipelines.lift import refuse_existing, select_tomograms
        from cryoflow.pipelines.localize import LocalizeConfig, localize_dataset

        names = select_tomograms(store, name, all_)
        config = LocalizeConfig(
            boxes=boxes,
            from_truth=from_truth,
            classes=tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else (),
            threshold=threshold,
            min_score=min_score,
            connectivity=connectivity,
            min_voxels=min_voxels,
            jitter_px=jitter,
            seed=seed,
            thickness=thickness,
            out=out,
            overwrite=overwrite,
        )
        if boxes is not None:
            read_boxes(boxes, ndim=2)  # refuse a bad file before starting a cluster
        refuse_existing(store, names, out, ["boxes3d"], overwrite)
        with connect(ClusterConfig.from_env(scheduler=scheduler, n_workers=workers)) as client:
            table = localize_dataset(client, store, names, config, export=export)
        for tomo in names:
            print(f"cryoflow: localize {tomo}: {int((table['tomogram'] == tomo).sum())} 3D boxes")
        if export is not None:
            print(f"cryoflow: wrote {export}")
