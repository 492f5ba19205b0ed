"""``cryoflow train``: a few-shot segmentation network from a handful of boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import train as stage
from cryoflow.pipelines.stages.train import TrainingParams


@o.with_params(TrainingParams, skip=("source", "network"))
def train(
    params: TrainingParams,
    store: o.Store,
    name: Annotated[str, typer.Option("--name", help="Tomogram to cut the training boxes from.")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    from_truth: Annotated[
        bool, typer.Option("--from-truth", help="Masks from the simulator's truth.")
    ] = False,
    arch: Annotated[
        str | None, typer.Option("--arch", help="unet or tomoseg (EMAN2-style).")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Optimiser steps.")] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of box sampling, augmentation, weights.")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda.")] = None,
    cluster: o.Cluster = o.LOCAL,
) -> None:
    """Cut boxes, train the network on the cluster, write weights.pt + model.json to OUT."""
    from cryoflow.pipelines.cluster.connect import connect

    params = stage.with_network(
        params,
        source=stage.choose_source(from_truth, params.labels, params.boxes),
        network=stage.network(arch=arch, steps=steps, seed=seed, device=device),
    )
    with connect(cluster.config()) as client:
        digest, mconf = stage.train(client, store, name, params, out=out)
    print(
        f"cryoflow: trained {mconf.spec.arch} for {params.feature!r}: "
        f"val IoU {mconf.metrics['val_iou']:.3f}, threshold {mconf.threshold:.2f}, "
        f"sha256 {digest[:12]} -> {out}"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train)
