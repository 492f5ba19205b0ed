"""``cryoflow ingest``: MRC tilt series (or tomograms) into a dataset store."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import typer


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


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest(
        inputs: list[str] = typer.Argument(
            ..., help="MRC file(s), directories or glob patterns (TILTS.mrc|DIR|GLOB)."
        ),
        out: str = typer.Option(
            ..., "--out", help="Dataset store (STORE.zarr path or fsspec URL); created if missing."
        ),
        name: str = typer.Option(
            None, "--name", help="Tomogram name (one input only). Default: the file's stem."
        ),
        angles: Path = typer.Option(
            None, "--angles", help="IMOD .tlt/.rawtlt or SerialEM .mdoc (one input only)."
        ),
        tomogram: bool = typer.Option(
            False, "--tomogram", help="Ingest reconstructed volumes (to volumes/tomogram)."
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace existing tilt series / tomograms."
        ),
        scheduler: str = typer.Option(
            None, "--scheduler", help="Address of an existing Dask scheduler."
        ),
        workers: int = typer.Option(
            None, "--workers", help="Worker processes of the local cluster (default 2)."
        ),
        report: Path = typer.Option(
            None, "--report", help="Save a Dask performance report (HTML) here."
        ),
        max_expanded_gib: float = typer.Option(
            64.0,
            "--max-expanded-gib",
            help="Refuse compressed (.gz/.bz2) input that would expand past this.",
        ),
    ) -> None:
        """Ingest MRC tilt series (or --tomogram volumes) into STORE.zarr.

        Angles come from --angles or from a .mdoc, .rawtlt or .tlt beside the MRC with the same
        stem. Open the result with cryoflow.open_tilt_series(STORE, NAME).
        """
        from cryoflow.pipelines.cluster import ClusterConfig, connect
        from cryoflow.pipelines.ingest import IngestConfig, plan_ingest
        from cryoflow.pipelines.ingest import ingest as run_ingest

        config = IngestConfig(
            inputs=tuple(inputs),
            out=out,
            name=name,
            angles=str(angles) if angles else None,
            tomogram=tomogram,
            overwrite=overwrite,
            max_expanded_bytes=int(max_expanded_gib * 2**30),
        )
        cluster = ClusterConfig.from_env(scheduler=scheduler, n_workers=workers, report=report)
        with one_line_warnings():
            plan = plan_ingest(config)  # refuse bad input before starting a cluster
            try:
                with connect(cluster) as client:
                    names = run_ingest(client, config, plan=plan)
            finally:
                plan.cleanup()
        for n in names:
            print(f"cryoflow: ingested {n} into {out}")
