"""``cryoflow picker``: the interactive picking page, served on 127.0.0.1."""

from __future__ import annotations

from typing import Annotated

import typer

from cryoflow.cli import options as o


def picker(
    store: o.Store,
    port: Annotated[
        int | None, typer.Option("--port", help="Port to serve on (default: a free one).")
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to bind; anything but 127.0.0.1 exposes the page (warned)."
        ),
    ] = "127.0.0.1",
    key: Annotated[str, typer.Option("--key", help="Volume to show and pick in.")] = "tomogram",
    cache_mib: Annotated[
        int,
        typer.Option("--cache-mib", help="Memory for decoded slabs kept while browsing (MiB)."),
    ] = 1024,
    scheduler: o.Scheduler = None,
    workers: o.Workers = None,
) -> None:
    """Serve the picking page for STORE; prints its URL (with its access token)."""
    from cryoflow.pipelines.picker.server import serve

    serve(
        store,
        port=port,
        host=host,
        key=key,
        cluster=o.cluster(scheduler, workers),
        cache_mib=cache_mib,
    )


def register(app: typer.Typer) -> None:
    app.command("picker")(picker)
