"""``cryoflow certs DIR``: write a CA and mutual-TLS certificates for a cryoflow cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def certs(
    directory: Annotated[
        Path, typer.Argument(help="Folder to write ca.pem and role certificates to.")
    ],
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host", help="Extra host name or IP the scheduler/workers are reached at (repeat)."
        ),
    ] = None,
    days: Annotated[int, typer.Option(help="Validity in days.")] = 365,
    overwrite: Annotated[bool, typer.Option(help="Replace existing certificates.")] = False,
) -> None:
    """Create a private CA and CA-signed scheduler, worker and client certificates."""
    from cryoflow.pipelines.cluster.security import make_certificates

    out = make_certificates(directory, hosts=host or [], days=days, overwrite=overwrite)
    typer.echo(f"cryoflow: TLS material in {out} (keep ca-key.pem private)")
    typer.echo(f"cryoflow: use it with `cluster: {{security: {out}}}` in PIPELINE.yaml")


def register(app: typer.Typer) -> None:
    app.command("certs")(certs)
