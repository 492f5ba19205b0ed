"""``cryoflow train``: a few-shot segmentation network from a handful of boxes."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        store: str = typer.Argument(..., help="Dataset store (STORE.zarr)."),
        name: str = typer.Option(..., "--name", help="Tomogram to cut the training boxes from."),
        feature: str = typer.Option(..., "--feature", help="Feature to learn, e.g. granule."),
        out: Path = typer.Option(..., "--out", help="Model directory to write."),
        from_truth: bool = typer.Option(
            False, "--from-truth", help="Masks from the simulator's truth."
        ),
        labels: Path = typer.Option(
            None, "--labels", help="Labels file (Zarr/MRC/TIFF; 0 = unlabelled)."
        ),
        boxes: Path = typer.Option(None, "--boxes", help="JSON/CSV file of boxes with masks."),
        feature_value: int = typer.Option(1, "--feature-value", help="Label value of the feature."),
        n_boxes: int = typer.Option(10, "--n-boxes", help="Positive boxes (5-20 is typical)."),
        n_negative: int = typer.Option(4, "--n-negative", help="Negative boxes."),
        box_size: int = typer.Option(64, "--box-size", help="Box edge in pixels (EMAN2: 64)."),
        margin: int = typer.Option(0, "--margin", help="Context pixels around each box."),
        arch: str = typer.Option("unet", "--arch", help="unet or tomoseg (EMAN2-style)."),
        slices: bool = typer.Option(
            False, "--slices", help="Train on tomogram z slices, not tilts."
        ),
        steps: int = typer.Option(300, "--steps", help="Optimiser steps."),
        seed: int = typer.Option(0, "--seed", help="Seed of box sampling, augmentation, weights."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
        scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler."),
        workers: int = typer.Option(None, "--workers", help="Local worker processes (default 2)."),
    ) -> None:
        """Cut boxes, train the network on the cluster, write weights.pt + model.json to OUT."""
        from cryoflow.errors import ConfigError
        from cryoflow.models.arch import ModelSpec
        from cryoflow.models.train import TrainParams
        from cryoflow.pipelines.cluster import ClusterConfig, connect
        from cryoflow.pipelines.train import TrainConfig
        from cryoflow.pipelines.train import train as run_train

        given = [s for s, on in (("truth", from_truth), ("labels", labels), ("boxes", boxes)) if on]
        if len(given) != 1:
            raise ConfigError("give exactly one of --from-truth, --labels FILE, --boxes FILE")
        config = TrainConfig(
            feature=feature,
            out=out,
            source=given[0],
            labels=labels,
            boxes=boxes,
            feature_value=feature_value,
            n_boxes=n_boxes,
            n_negative=n_negative,
            box_size=box_size,
            margin=margin,
            slices=slices,
            params=TrainParams(spec=ModelSpec(arch=arch), steps=steps, seed=seed, device=device),
        )
        with connect(ClusterConfig.from_env(scheduler=scheduler, n_workers=workers)) as client:
            digest, mconf = run_train(client, store, name, config)
        print(
            f"cryoflow: trained {arch} for {feature!r}: val IoU {mconf.metrics['val_iou']:.3f}, "
            f"threshold {mconf.threshold:.2f}, sha256 {digest[:12]} -> {out}"
        )
