"""``cryoflow detect``: per-tilt 2D boxes (the input of Algorithm 3)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("detect")
    def detect(
        store: str = typer.Argument(..., help="Dataset store (STORE.zarr)."),
        feature: str = typer.Option(..., "--feature", help="Class to detect, e.g. granule."),
        name: str = typer.Option(None, "--name", help="Tomogram name."),
        all_: bool = typer.Option(False, "--all", help="Every tomogram of the dataset."),
        method: str = typer.Option("components", "--method", help="components or fasterrcnn."),
        threshold: float = typer.Option(None, "--threshold", help="components: probability cut."),
        train_name: str = typer.Option(None, "--train-name", help="fasterrcnn: training tomogram."),
        n_train_images: int = typer.Option(
            4, "--n-train-images", help="fasterrcnn: tilts to train on."
        ),
        steps: int = typer.Option(60, "--steps", help="fasterrcnn: training steps."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier results."),
        scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler."),
        workers: int = typer.Option(None, "--workers", help="Local worker processes (default 2)."),
    ) -> None:
        """Write the box table results/detect/<feature> (tilt, class, score, y0, x0, y1, x1)."""
        from cryoflow.models.detector import DetectorParams
        from cryoflow.pipelines.cluster import ClusterConfig, connect
        from cryoflow.pipelines.detect import DetectConfig, detect_dataset
        from cryoflow.pipelines.lift import select_tomograms

        names = select_tomograms(store, name, all_)
        config = DetectConfig(
            feature=feature,
            method=method,
            threshold=threshold,
            train_name=train_name,
            n_train_images=n_train_images,
            overwrite=overwrite,
            detector=DetectorParams(steps=steps, device=device),
        )
        with connect(ClusterConfig.from_env(scheduler=scheduler, n_workers=workers)) as client:
            done = detect_dataset(client, store, names, config)
        for tomo, table in done.items():
            print(f"cryoflow: {len(table)} boxes on {tomo} -> detect/{feature}")
