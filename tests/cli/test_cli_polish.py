"""What a new user meets first: --version, readable help, errors that say what exists."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from cryoflow.cli.main import app
from tests.cli.test_ingest_real_files import cli, scheduler  # noqa: F401  (fixtures)
from tests.io_files import write_mrc, write_tlt

runner = CliRunner()


def test_version_prints_and_exits_zero() -> None:
    import cryoflow

    proc = subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"cryoflow {cryoflow.__version__}"


def test_help_shows_value_names_not_type_placeholders() -> None:
    for args in (["--help"], ["ingest", "--help"], ["lift", "--help"], ["reconstruct", "--help"]):
        result = runner.invoke(app, args, terminal_width=120)
        assert result.exit_code == 0, result.output
        for placeholder in ("<bool>", "<str>", "<list[str]>", "<int>", "<float>"):
            assert placeholder not in result.output, (args, result.output)
    text = runner.invoke(app, ["ingest", "--help"], terminal_width=120).output
    assert "--tilt-axis" in text and "FLOAT" in text and "INPUTS" in text


def test_a_name_with_a_space_suggests_name_and_a_wrong_name_lists_what_exists(
    tmp_path,
    cli,  # noqa: F811
) -> None:
    data = np.zeros((3, 8, 8), np.float32)
    write_mrc(tmp_path / "TS 01.mrc", data)
    write_tlt(tmp_path / "TS 01.rawtlt", [-10, 0, 10])
    store = tmp_path / "s.zarr"
    code, _, err = cli("ingest", tmp_path / "TS 01.mrc", "--out", store)
    assert code == 2 and "'TS 01'" in err and "pass --name TS_01" in err
    assert not store.exists()
    assert cli("ingest", tmp_path / "TS 01.mrc", "--out", store, "--name", "TS_01")[0] == 0
    code, _, err = cli("reconstruct", store, "--name", "TS_02")
    assert code == 2 and "no tomogram 'TS_02'" in err and "holds TS_01" in err
    code, _, err = cli("export", store, "--name", "TS_01", "--key", "nope", "--out", tmp_path / "x")
    assert code == 2 and "'nope'" in err and "no volumes or labels" in err
    code, _, err = cli("lift", store, "--name", "TS_01", "--maps", "foo/bar")
    assert code == 2 and "foo/bar" in err and "TS_01 has no results" in err


def test_overwrite_says_which_results_it_marked_stale(tmp_path, cli) -> None:  # noqa: F811
    write_mrc(tmp_path / "TS_01.mrc", np.ones((3, 8, 8), np.float32))
    write_tlt(tmp_path / "TS_01.rawtlt", [-10, 0, 10])
    store = tmp_path / "s.zarr"
    assert cli("ingest", tmp_path / "TS_01.mrc", "--out", store)[0] == 0
    assert cli("reconstruct", store, "--name", "TS_01", "--thickness", 4)[0] == 0
    code, _, err = cli("ingest", tmp_path / "TS_01.mrc", "--out", store, "--overwrite")
    assert code == 0, err
    assert "cryoflow: warning:" in err and "marked 1 result(s)" in err
    assert "stale: volumes/tomogram" in err
