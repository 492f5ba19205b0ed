"""``cryoflow picker`` through the CLI entry point: ``--port``, and a store that is not one."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.picker.conftest import make_store, start_server, stop_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_port_option_is_served(tmp_path: Path) -> None:
    port = _free_port()
    proc, srv = start_server(make_store(tmp_path / "d.zarr"), "--port", str(port))
    try:
        assert srv.base == f"http://127.0.0.1:{port}"
        assert srv.get("/api/tomograms", token=None)[0] == 403
        assert srv.get("/api/tomograms")[0] == 200
    finally:
        stop_server(proc)


def test_help_and_bad_store(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "cryoflow.cli.main", "picker"]
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--port" in out.stdout
    missing = tmp_path / "missing.zarr"
    out = subprocess.run([*cmd, str(missing)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "missing.zarr" in out.stderr and "Traceback" not in out.stderr
    assert "http://" not in out.stdout
