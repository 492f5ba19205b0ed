"""``cryoflow detect``: per-tilt 2D boxes (the input of Algorithm 3)."""

from __future__ import annotations

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import detect as stage
from cryoflow.pipelines.stages.detect import DetectParams


@o.with_params(DetectParams)
def detect(
    params: DetectParams,
    store: o.Store,
    name: o.Name = None,
    all_: o.All = False,
    overwrite: o.Overwrite = False,
    scheduler: o.Scheduler = None,
    workers: o.Workers = None,
) -> None:
    """Write the box table results/detect/<feature> (tilt, class, score, y0, x0, y1, x1)."""
    from cryoflow.pipelines.cluster.connect import connect

    where = o.target(store, name, all_, None, overwrite)
    with connect(o.cluster(scheduler, workers)) as client:
        done = stage.run(client, where, params)  # Faster R-CNN trains first: no plan to check
    for tomo, table in done.items():
        print(f"cryoflow: {len(table)} boxes on {tomo} -> detect/{params.feature}")


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
