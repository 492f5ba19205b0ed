"""``cryoflow certs DIR``: write a CA and mutual-TLS certificates for a cryoflow cluster."""

from __future__ import annotations

from pathlib import Path

import typer


def certs(
    directory: Path = typer.Argument(..., help="Folder to write ca.pem and role certificates to."),
    host: list[str] = typer.Option(
        [], "--host", help="Extra host name or IP the scheduler/workers are reached at (repeat)."
    ),
    days: int = typer.Option(365, help="Validity in days."),
    overwrite: bool = typer.Option(False, help="Replace existing certificates."),
) -> None:
    """Create a private CA and CA-signed scheduler, worker and client certificates."""
    from cryoflow.pipelines.security import make_certificates

    out = make_certificates(directory, hosts=host, days=days, overwrite=overwrite)
    typer.echo(f"cryoflow: TLS material in {out} (keep ca-key.pem private)")
    typer.echo(f"cryoflow: use it with `cluster: {{security: {out}}}` in PIPELINE.yaml")


def register(app: typer.Typer) -> None:
    app.command("certs")(certs)
