"""Ctrl-C: one SIGINT to the process group (as a terminal sends it) stops a command on its local
cluster within seconds, prints one line, exits 130, and leaves nothing that looks complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cryoflow.errors import NodeNotFoundError
from cryoflow.io import store as S


@pytest.mark.slow  # one local cluster in a subprocess: ~40 s on a loaded 2-core machine
def test_sigint_stops_reconstruct_cleanly(tmp_path) -> None:
    rng = np.random.default_rng(0)
    store = tmp_path / "s.zarr"
    images = rng.normal(size=(41, 192, 192)).astype(np.float32)
    S.write_tilt_series(store, "big", images, np.linspace(-60, 60, 41), 4.0)
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    env.pop("CRYOFLOW_SCHEDULER", None)
    cmd = [sys.executable, "-m", "cryoflow.cli.main"]
    args = [*cmd, "reconstruct", str(store), "--name", "big", "--thickness", "192"]
    proc = subprocess.Popen(
        [*args, "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, signalled like a terminal's
    )
    seen = ""
    while "dashboard" not in seen:  # the cluster is up and the work is being submitted
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    err = seen + err
    assert proc.returncode == 130, err
    assert "cryoflow: interrupted; rerun to resume" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "reconstructed" not in out
    # nothing published: no volume; the tilt series is intact
    with pytest.raises(NodeNotFoundError):
        S.open_volume(store, "big", "tomogram")
    assert S.open_tilt_series(store, "big").shape == (41, 192, 192)
