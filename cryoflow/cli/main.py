"""The ``cryoflow`` command. Each command lives in its own module under ``cryoflow.cli``.

A command module defines one named, module-level function per command (importable and
callable like any function) and ``register(app: typer.Typer) -> None``. The commands are
:data:`FIRST`, then every registered stage (:data:`cryoflow.pipelines.stages.STAGES`) that
has a ``cryoflow.cli.<stage>`` module, then :data:`LAST`: a new stage with a command needs no
line here. Errors that are :class:`cryoflow.errors.CryoflowError` print one line naming the
file and the problem and exit with status 2, without a traceback; so do other errors (an
``OSError`` names its file), their traceback written to a file in the temporary directory
(``CRYOFLOW_TRACEBACK=1`` raises them instead).
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from importlib.util import find_spec
from typing import Any

import typer

from cryoflow.errors import CryoflowError, one_line
from cryoflow.pipelines.stages import STAGES

#: commands listed before the stages' and after them (``cryoflow --help`` order)
FIRST: list[str] = ["demo", "simulate", "ingest", "export", "verify"]
LAST: list[str] = ["extract", "pick", "train", "embed", "run", "check", "picker", "certs"]
#: every command module, in the order ``cryoflow --help`` lists them
COMMAND_MODULES: list[str] = [
    *FIRST,
    *(s for s in STAGES if s not in FIRST + LAST and find_spec(f"cryoflow.cli.{s}") is not None),
    *LAST,
]


class _Group(typer.core.TyperGroup):
    """The command group; every command's help shows plain value names (``TEXT``, ``INT``,
    ``STORE``), not type placeholders (``<str>``, ``<bool>``, ``<list[str]>``)."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            plain_metavars(cmd.get_params(ctx))
        return cmd

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)
        plain_metavars(params)
        return params


_METAVARS = {"str": "TEXT", "int": "INT", "float": "FLOAT", "Path": "PATH", "list[str]": "TEXT..."}


def plain_metavars(params: Any) -> None:
    """Set each parameter's help metavar: flags none, arguments their name, options their type."""
    for p in params:
        if p.metavar is not None:
            continue
        if getattr(p, "is_flag", False):
            p.metavar = ""
        elif isinstance(p, typer.core.TyperArgument):
            p.metavar = (p.name or "value").upper()  # the usage line adds "..." for several
            p.display_type_rich = lambda ctx: None  # type: ignore[method-assign]  # name says it
        elif getattr(p, "nargs", 1) == 2 and "range" in (p.name or ""):
            p.metavar = "MIN MAX"  # a range of two values (--tilt-range -60 60)
        elif hasattr(p, "bare_type"):
            kind = p.bare_type()
            p.metavar = _METAVARS.get(kind, kind.upper())


app = typer.Typer(
    name="cryoflow",
    cls=_Group,
    help="cryoflow: distributed Dask/Zarr processing for cellular cryo-electron tomography.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from cryoflow import __version__

        print(f"cryoflow {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,  # before the group asks for a command
        help="Print the cryoflow version and exit.",
    ),
) -> None:
    """cryoflow: distributed Dask/Zarr processing for cellular cryo-electron tomography."""


def _register_all() -> None:
    for name in COMMAND_MODULES:
        import_module(f"cryoflow.cli.{name}").register(app)


_register_all()


#: exit status after Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the Typer app, turning cryoflow errors into one clean line and Ctrl-C
    into ``cryoflow: interrupted; rerun to resume`` with exit status 130."""
    from cryoflow.cli.ingest import one_line_warnings

    try:
        with one_line_warnings():  # cryoflow's warnings as one "cryoflow: warning: ..." line
            app(args=argv, standalone_mode=True)
    except CryoflowError as exc:
        print(f"cryoflow: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # raised outside the command (e.g. while a cluster closes)
        _interrupted()
    except SystemExit as exc:
        if exc.code == INTERRUPTED:  # Typer's exit for a KeyboardInterrupt in the command
            _interrupted()
        raise
    except Exception as exc:  # not cryoflow's own: one line too, the traceback kept aside
        if os.environ.get("CRYOFLOW_TRACEBACK") == "1":
            raise
        kept = _keep_traceback()
        print(f"cryoflow: error: {one_line(exc)}", file=sys.stderr)
        print(
            f"cryoflow: the traceback is in {kept} (CRYOFLOW_TRACEBACK=1 shows it)", file=sys.stderr
        )
        sys.exit(2)


def _interrupted() -> None:
    print("\ncryoflow: interrupted; rerun to resume", file=sys.stderr, flush=True)
    sys.exit(INTERRUPTED)


def _keep_traceback() -> str:
    """Write the exception being handled to a file in the temporary directory; its path."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile(
        "w", prefix="cryoflow-traceback-", suffix=".txt", delete=False
    ) as f:
        traceback.print_exc(file=f)
    return f.name


if __name__ == "__main__":
    main()
