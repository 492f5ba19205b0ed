"""A bad option value is named once, clearly: the option, what is allowed, the value received."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cryoflow.pipelines.stages.average import AverageParams
from cryoflow.pipelines.stages.base import ParamsError


def _message(**values) -> str:
    with pytest.raises(ParamsError) as info:
        AverageParams(**values)
    return str(info.value)


def test_a_validator_message_is_said_once():
    msg = _message(set="a", symmetry="X7")
    assert "--symmetry must be C<n> or D<n>" in msg
    assert "symmetry symmetry" not in msg.lower()
    assert msg.count("X7") == 1


def test_a_builtin_message_gets_the_value_and_a_missing_option_is_an_option():
    msg = _message(set="a", iterations="many")
    assert "--iterations must be a valid integer" in msg
    assert "(got 'many')" in msg
    assert "missing required option --set" in _message(symmetry="C1")


def test_the_cli_says_it_once(tmp_path):
    cmd = "from cryoflow.cli.main import main; main()"
    args = ["average", "--set", "a", "--symmetry", "X7", "--out", str(tmp_path / "o"), "x.zarr"]
    proc = subprocess.run(
        [sys.executable, "-c", cmd, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--symmetry must be C<n> or D<n>" in proc.stderr
    assert proc.stderr.count("X7") == 1, proc.stderr
