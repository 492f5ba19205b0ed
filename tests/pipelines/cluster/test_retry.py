"""Fault suite: one retry policy for every command. A transient read error in a task (the
first attempt fails, the second reads) no longer fails a command (``cryoflow ingest`` did not
retry); an error that is not cryoflow's own reaches the user as one line naming the file."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import dask
import mrcfile
import numpy as np
import pytest

from cryoflow.errors import one_line
from cryoflow.pipelines.cluster.connect import ClusterConfig, connect
from cryoflow.pipelines.cluster.retry import RETRIES

pytestmark = pytest.mark.fault


def flaky_read(path: str) -> bytes:
    """Fails with EIO the first time it reads ``path`` (a marker file remembers), then reads."""
    marker = Path(path + ".tried")
    if not marker.exists():
        marker.write_text("1")
        raise OSError(errno.EIO, "Input/output error", path)
    return Path(path).read_bytes()


def test_every_client_retries_a_transient_read_error(tmp_path: Path) -> None:
    files = [tmp_path / f"f{i}.bin" for i in range(3)]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 8)
    assert RETRIES >= 1
    with connect(ClusterConfig(n_workers=1, dashboard=False), quiet=True) as client:
        # submit, map and compute, as the commands use them, none passing retries
        assert client.submit(flaky_read, str(files[0]), pure=False).result() == b"\x00" * 8
        assert client.gather(client.map(flaky_read, [str(files[1])], pure=False)) == [b"\x01" * 8]
        lazy = dask.delayed(flaky_read, pure=False)(str(files[2]))
        assert client.compute(lazy, sync=True) == b"\x02" * 8
        # a caller that says no retry gets none: the error, naming the file
        again = tmp_path / "g.bin"
        again.write_bytes(b"x")
        with pytest.raises(OSError) as info:
            client.submit(flaky_read, str(again), retries=0, pure=False).result()
        assert one_line(info.value) == f"{again}: Input/output error (OSError)"


def test_a_foreign_error_is_one_line_naming_the_file(tmp_path: Path) -> None:
    src = tmp_path / "t.mrc"
    with mrcfile.new(src) as m:
        m.set_data(np.zeros((3, 8, 8), np.float32))
        m.voxel_size = 2.0
    (tmp_path / "t.tlt").write_text("-10\n0\n10\n")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "s.zarr"  # its parent is a file: the store cannot be made
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryoflow.cli.main",
            "ingest",
            str(src),
            "--out",
            str(out),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"cryoflow: error: {out}: Not a directory (NotADirectoryError)" in proc.stderr
    kept = proc.stderr.split("the traceback is in ")[1].split(" ")[0]
    assert "NotADirectoryError" in Path(kept).read_text()
    Path(kept).unlink()


def test_one_line_of_other_errors() -> None:
    assert one_line(ValueError("bad value\nmore")) == "bad value (ValueError)"
    assert one_line(KeyError("x")) == "'x' (KeyError)"
    assert one_line(RuntimeError()) == "RuntimeError"
    err = FileNotFoundError(errno.ENOENT, "No such file or directory", "/a/b")
    assert one_line(err) == "/a/b: No such file or directory (FileNotFoundError)"
