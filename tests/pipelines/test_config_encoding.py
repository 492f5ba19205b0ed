"""A pipeline file that is not UTF-8 is a ConfigError naming the file and the byte offset."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryoflow.cli.main import main
from cryoflow.errors import ConfigError
from cryoflow.pipelines.engine.config import load_pipeline

pytestmark = pytest.mark.fault  # the fault matrix: a pipeline file that is not UTF-8

GOOD = "dataset:\n  store: d.zarr\nsteps:\n  - bin: {factor: 2}\n"


def _latin1(tmp_path: Path) -> Path:
    path = tmp_path / "PIPELINE.yaml"
    text = "# caf\xe9 run\n" + GOOD  # an editor's Latin-1 'é': byte 0xe9 at offset 5
    path.write_bytes(text.encode("latin-1"))
    return path


def test_non_utf8_pipeline_file_is_a_config_error(tmp_path: Path) -> None:
    path = _latin1(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a UTF-8 text file")
    assert "byte 0xe9 at byte offset 5" in message


def test_utf8_pipeline_file_with_non_ascii_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "PIPELINE.yaml"
    path.write_bytes(("# café run\n" + GOOD).encode("utf-8"))
    assert load_pipeline(path).steps[0].params.factor == 2


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_and_run_print_one_line_not_a_traceback(tmp_path, capsys, command) -> None:
    path = _latin1(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"cryoflow: error: {path}: not a UTF-8 text file (byte 0xe9 at byte offset 5); "
        "save the pipeline file as UTF-8"
    ]
    assert "Traceback" not in err
