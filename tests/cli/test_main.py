"""The command line: every command is listed and has --help; errors are one clean line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cryoflow.cli.main import COMMAND_MODULES, app

runner = CliRunner()


def _command_names() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    names = _command_names()
    assert len(names) >= len(COMMAND_MODULES)
    for name in names:
        assert name in result.output


@pytest.mark.parametrize("name", _command_names())
def test_each_command_has_help(name: str) -> None:
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_console_script_help_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "demo" in proc.stdout


def test_demo_refuses_to_overwrite(tmp_path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    proc = subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(out) in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "metrics.json").read_text() == "{}"
