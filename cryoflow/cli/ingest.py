"""``cryoflow ingest``: MRC tilt series (or tomograms) into a dataset store."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from cryoflow.cli import options as o
from cryoflow.pipelines.stages import ingest as stage
from cryoflow.pipelines.stages.ingest import IngestParams


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show cryoflow warnings as ``cryoflow: warning: <message>`` lines on stderr."""
    from cryoflow.errors import CryoflowWarning

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, CryoflowWarning):
            print(f"cryoflow: warning: {message}", file=sys.stderr, flush=True)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


@o.with_params(
    IngestParams, arguments=("inputs",), types_={"inputs": list[str]}, skip=("max_expanded_bytes",)
)
def ingest(
    params: IngestParams,
    out: Annotated[
        str,
        typer.Option(
            "--out", help="Dataset store (STORE.zarr path or fsspec URL); created if missing."
        ),
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing tilt series / tomograms.")
    ] = False,
    scheduler: o.Scheduler = None,
    workers: o.Workers = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Save a Dask performance report (HTML) here.")
    ] = None,
    max_expanded_gib: Annotated[
        float | None,
        typer.Option(
            "--max-expanded-gib",
            help="Refuse compressed (.gz/.bz2) input that would expand past this (default 64).",
        ),
    ] = None,
) -> None:
    """Ingest MRC tilt series (or --tomogram volumes) into STORE.zarr.

    Angles: --angles, else a .mdoc/.rawtlt/.tlt beside the file (a link's own), else the header.

    Tilt axis: --tilt-axis, else the .mdoc's, else the MRC extended header's, else 0.

    Open the result with cryoflow.open_tilt_series(STORE, NAME).
    """
    from cryoflow.pipelines.cluster.connect import connect
    from cryoflow.pipelines.stages.eager import Target
    from cryoflow.pipelines.stages.ingestion import describe_item, plan_ingest

    if max_expanded_gib is not None:
        params = stage.with_limit(params, int(max_expanded_gib * 2**30))
    with one_line_warnings():
        plan = plan_ingest(out, params, overwrite=overwrite)  # bad input: before a cluster
        for item in plan.items:
            print("cryoflow: " + "\n".join(describe_item(item)), flush=True)
        try:
            with connect(o.cluster(scheduler, workers, report=report)) as client:
                names = stage.run(client, Target(out, (), overwrite=overwrite), params, plan=plan)
        finally:
            plan.cleanup()
    for n in names:
        print(f"cryoflow: ingested {n} into {out}")


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
