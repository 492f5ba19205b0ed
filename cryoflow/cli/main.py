"""The ``cryoflow`` command. Each command lives in its own module under ``cryoflow.cli``.

A command module defines ``register(app: typer.Typer) -> None``. Errors that are
:class:`cryoflow.errors.CryoflowError` print one line naming the file and the problem and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import sys
from importlib import import_module

import typer

from cryoflow.errors import CryoflowError

# Command modules, in the order ``cryoflow --help`` lists them.
COMMAND_MODULES: list[str] = [
    "demo",
    "simulate",
    "ingest",
    "export",
    "verify",
    "reconstruct",
    "lift",
    "edges",
    "localize",
    "run",
    "check",
    "certs",
    "train",
    "annotate",
    "detect",
]

app = typer.Typer(
    name="cryoflow",
    help="cryoflow: distributed Dask/Zarr processing for cellular cryo-electron tomography.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the cryoflow version and exit."),
) -> None:
    """cryoflow: distributed Dask/Zarr processing for cellular cryo-electron tomography."""
    if version:
        from cryoflow import __version__

        print(__version__)
        raise typer.Exit(0)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        import_module(f"cryoflow.cli.{name}").register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the Typer app, turning cryoflow errors into one clean line."""
    try:
        app(args=argv, standalone_mode=True)
    except CryoflowError as exc:
        print(f"cryoflow: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
