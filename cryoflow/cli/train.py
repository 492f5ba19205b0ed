"""``cryoflow train``: a few-shot segmentation network from a handful of boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryoflow.cli.options import Scheduler, Store, Workers, cluster, param
from cryoflow.pipelines.stages.train import TrainingParams as P

# the network's options default to None: cryoflow.models.train.TrainParams holds its defaults


def train(
    store: Store,
    name: Annotated[str, typer.Option("--name", help="Tomogram to cut the training boxes from.")],
    feature: Annotated[str, param(P, "feature")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    from_truth: Annotated[
        bool, typer.Option("--from-truth", help="Masks from the simulator's truth.")
    ] = False,
    labels: Annotated[Path | None, param(P, "labels")] = None,
    boxes: Annotated[Path | None, param(P, "boxes")] = None,
    feature_value: Annotated[int, param(P, "feature_value")] = P.default("feature_value"),
    n_boxes: Annotated[int, param(P, "n_boxes")] = P.default("n_boxes"),
    n_negative: Annotated[int, param(P, "n_negative")] = P.default("n_negative"),
    box_size: Annotated[int, param(P, "box_size")] = P.default("box_size"),
    margin: Annotated[int, param(P, "margin")] = P.default("margin"),
    arch: Annotated[
        str | None, typer.Option("--arch", help="unet or tomoseg (EMAN2-style); default unet.")
    ] = None,
    slices: Annotated[bool, param(P, "slices")] = P.default("slices"),
    steps: Annotated[
        int | None, typer.Option("--steps", help="Optimiser steps (default: the network's).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of box sampling, augmentation, weights.")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda.")] = None,
    scheduler: Scheduler = None,
    workers: Workers = None,
) -> None:
    """Cut boxes, train the network on the cluster, write weights.pt + model.json to OUT."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages import train as stage

    params = P(
        feature=feature,
        source=stage.choose_source(from_truth, labels, boxes),
        labels=str(labels) if labels else None,
        boxes=str(boxes) if boxes else None,
        feature_value=feature_value,
        n_boxes=n_boxes,
        n_negative=n_negative,
        box_size=box_size,
        margin=margin,
        slices=slices,
        network=stage.network(arch=arch, steps=steps, seed=seed, device=device),
    )
    with connect(cluster(scheduler, workers)) as client:
        digest, mconf = stage.train(client, store, name, params, out=out)
    print(
        f"cryoflow: trained {mconf.spec.arch} for {feature!r}: val IoU {mconf.metrics['val_iou']:.3f}, "
        f"threshold {mconf.threshold:.2f}, sha256 {digest[:12]} -> {out}"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train)
