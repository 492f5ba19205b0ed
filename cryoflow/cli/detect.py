"""``cryoflow detect``: per-tilt 2D boxes (the input of Algorithm 3)."""

from __future__ import annotations

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import detect as stage
from cryoflow.pipelines.stages.detect import DetectParams


@o.with_params(DetectParams)
def detect(params: DetectParams, tomograms: o.Tomograms, run: o.Run = o.RUN) -> None:
    """Write the box table results/detect/<feature> (tilt, class, score, y0, x0, y1, x1)."""
    from cryoflow.pipelines.cluster.connect import connect

    where = tomograms.target(run)
    with connect(run.cluster()) as client:
        done = stage.run(client, where, params)  # Faster R-CNN trains first: no plan to check
    for tomo, table in done.items():
        print(f"cryoflow: {len(table)} boxes on {tomo} -> detect/{params.feature}")


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
