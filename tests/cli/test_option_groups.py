"""Option groups: a parameter annotated with a group stands for the group's options, in the
group's order, and the command receives the built group."""

from __future__ import annotations

import inspect

import typer
from typer.testing import CliRunner

from cryoflow.cli import options as o


def _command(seen: dict):
    @o.with_params(None)
    def command(
        tomograms: o.Tomograms,
        out: str = "x",
        run: o.Run = o.RUN,
    ) -> None:
        seen.update(tomograms=tomograms, out=out, run=run)

    return command


def test_a_group_stands_for_its_options_in_order() -> None:
    names = list(inspect.signature(_command({})).parameters)
    assert names == ["store", "name", "all_", "out", "overwrite", "scheduler", "workers"]


def test_the_command_line_builds_the_groups() -> None:
    seen: dict = {}
    app = typer.Typer()
    app.command("c")(_command(seen))
    app.command("other")(lambda: None)  # two commands: "c" is a subcommand
    args = ["c", "S.zarr", "--name", "t1", "--overwrite", "--workers", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen["tomograms"] == o.Tomograms("S.zarr", "t1", False)
    assert seen["run"] == o.Run(overwrite=True, scheduler=None, workers=3)
    assert seen["out"] == "x"
    assert seen["run"].cluster().n_workers == 3


def test_a_command_with_groups_is_callable_as_a_function() -> None:
    seen: dict = {}
    _command(seen)("S.zarr", all_=True, out="y")
    assert seen["tomograms"] == o.Tomograms("S.zarr", None, True)
    assert seen["run"] == o.RUN and seen["out"] == "y"
    assert not o.Cluster().named and o.Cluster(workers=1).named
