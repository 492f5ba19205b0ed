"""The ``cryoflow`` command. Each command lives in its own module under ``cryoflow.cli``.

A command module defines one named, module-level function per command (importable and
callable like any function) and ``register(app: typer.Typer) -> None``. The commands are
:data:`FIRST`, then every registered stage (:data:`cryoflow.pipelines.stages.STAGES`) that
has a ``cryoflow.cli.<stage>`` module, then :data:`LAST`: a new stage with a command needs no
line here. Errors that are :class:`cryoflow.errors.CryoflowError` print one line naming the
file and the problem and exit with status 2, without a traceback.
"""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.util import find_spec

import typer

from cryoflow.errors import CryoflowError
from cryoflow.pipelines.stages import STAGES

#: commands listed before the stages' and after them (``cryoflow --help`` order)
FIRST: list[str] = ["demo", "simulate", "ingest", "export", "verify"]
LAST: list[str] = ["extract", "pick", "train", "run", "check", "certs"]
#: every command module, in the order ``cryoflow --help`` lists them
COMMAND_MODULES: list[str] = [
    *FIRST,
    *(s for s in STAGES if s not in FIRST + LAST and find_spec(f"cryoflow.cli.{s}") is not None),
    *LAST,
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
