"""``cryoflow detect``: per-tilt 2D boxes (the input of Algorithm 3)."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli.options import All, Name, Overwrite, Scheduler, Store, Workers, cluster, param
from cryoflow.pipelines.stages.detect import DetectParams as P


def detect(
    store: Store,
    feature: Annotated[str, param(P, "feature")],
    name: Name = None,
    all_: All = False,
    method: Annotated[str, param(P, "method")] = P.default("method"),
    threshold: Annotated[float | None, param(P, "threshold")] = P.default("threshold"),
    min_pixels: Annotated[int, param(P, "min_pixels")] = P.default("min_pixels"),
    batch_size: Annotated[int, param(P, "batch_size")] = P.default("batch_size"),
    train_name: Annotated[str | None, param(P, "train_name")] = P.default("train_name"),
    n_train_images: Annotated[int, param(P, "n_train_images")] = P.default("n_train_images"),
    steps: Annotated[int, param(P, "steps")] = P.default("steps"),
    device: Annotated[str, param(P, "device")] = P.default("device"),
    overwrite: Overwrite = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
) -> None:
    """Write the box table results/detect/<feature> (tilt, class, score, y0, x0, y1, x1)."""
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages import detect as stage
    from cryoflow.pipelines.stages.inputs import pick_tomograms

    params = P(
        feature=feature,
        method=method,
        threshold=threshold,
        min_pixels=min_pixels,
        batch_size=batch_size,
        train_name=train_name,
        n_train_images=n_train_images,
        steps=steps,
        device=device,
    )
    names = pick_tomograms(store, name, all_)
    with connect(cluster(scheduler, workers)) as client:
        done = stage.run(client, store, names, params, overwrite=overwrite)
    for tomo, table in done.items():
        print(f"cryoflow: {len(table)} boxes on {tomo} -> detect/{feature}")


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
