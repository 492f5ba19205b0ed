"""Ingest through a real `dask scheduler` and two `dask worker` processes over TCP on 127.0.0.1.

The result must be identical (values, dtype, chunks, geometry, compressed chunk bytes) to an
ingest on an in-process client, and the reading/writing tasks must have run on both workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import distributed
import mrcfile
import numpy as np
import pytest

import cryoflow
from cryoflow.cli.main import main
from cryoflow.io import store
from cryoflow.pipelines.stages.eager import Target
from cryoflow.pipelines.stages.ingest import IngestParams
from cryoflow.pipelines.stages.ingest import run as ingest
from tests.io_files import tilt_stack, write_mdoc, write_mrc, write_tlt


def _dask_cli(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("dask")
    return [str(exe), *args] if exe.exists() else [sys.executable, "-m", "dask", *args]


@pytest.fixture
def tcp_cluster(tmp_path):
    """Address of a scheduler with two single-threaded worker processes (all ours, stopped after)."""
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [
        subprocess.Popen(
            _dask_cli(
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(sched_file),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    ]
    try:
        deadline = time.monotonic() + 45
        while not sched_file.exists() or not sched_file.read_text().strip():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                pytest.fail("dask scheduler did not start")
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    _dask_cli(
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nworkers",
                        "1",
                        "--nthreads",
                        "1",
                        "--memory-limit",
                        "1GiB",
                        "--no-dashboard",
                        "--name",
                        f"w{i}",
                    ),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
            )
        with distributed.Client(address, timeout=30) as c:
            c.wait_for_workers(2, timeout=45)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def _chunk_hashes(root: Path) -> dict[str, str]:
    """Hashes of every chunk file (metadata holds timestamps, so it is compared separately)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "zarr.json"
    }


@pytest.mark.slow
def test_tcp_cluster_ingest_matches_local(tmp_path, tcp_cluster) -> None:
    rng = np.random.default_rng(5)
    src = tmp_path / "raw"
    src.mkdir()
    for i, dtype in enumerate([np.float32, np.int16, np.uint16]):
        write_mrc(
            src / f"TS_{i}.mrc",
            (tilt_stack(rng, n=8, ny=32, nx=32) * 50).astype(dtype),
            voxel_size=2.0 + i,
        )
        write_tlt(src / f"TS_{i}.tlt", np.arange(-21.0, 22.0, 6.0))
    write_mdoc(src / "TS_2.mdoc", list(np.arange(-21.0, 22.0, 6.0)), pixel=4.0, tilt_axis=86.0)

    config = dict(inputs=(str(src),), tile_px=16)
    remote, local = tmp_path / "remote.zarr", tmp_path / "local.zarr"
    with distributed.Client(tcp_cluster) as client, distributed.get_task_stream(client) as stream:
        names = ingest(client, Target(str(remote), (), quiet=True), IngestParams(**config))
    workers = {t["worker"] for t in stream.data if "ingest" in str(t.get("key", ""))}
    assert len(workers) == 2, workers
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"
    ) as c:
        assert ingest(c, Target(str(local), (), quiet=True), IngestParams(**config)) == names

    assert _chunk_hashes(remote) == _chunk_hashes(local)
    for name in names:
        a, b = (
            cryoflow.open_tilt_series(str(remote), name),
            cryoflow.open_tilt_series(str(local), name),
        )
        assert a.dtype == b.dtype and a.data.chunks == b.data.chunks
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a["angle"].values, b["angle"].values)
        assert a.attrs["geometry"] == b.attrs["geometry"]
        assert a.attrs["pixel_size_angstrom"] == b.attrs["pixel_size_angstrom"]
    assert cryoflow.open_tilt_series(str(remote), "TS_2").attrs["pixel_size_angstrom"] == 4.0

    # the command line (in-process: no second interpreter start-up), attached to the same scheduler
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "ingest",
                str(src / "TS_0.mrc"),
                "--out",
                str(tmp_path / "cli.zarr"),
                "--name",
                "cli",
                "--scheduler",
                tcp_cluster,
            ]
        )
    assert exit_info.value.code in (0, None)
    np.testing.assert_array_equal(
        cryoflow.open_tilt_series(str(tmp_path / "cli.zarr"), "cli").values,
        cryoflow.open_tilt_series(str(local), "TS_0").values,
    )

    # export through the same scheduler, and verify, from the command line
    vol = rng.normal(size=(6, 10, 8)).astype(np.float32)
    store.write_volume(
        tmp_path / "cli.zarr", "cli", "tomogram", vol, pixel_size_angstrom=5.0, provenance={}
    )
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "export",
                str(tmp_path / "cli.zarr"),
                "--name",
                "cli",
                "--key",
                "tomogram",
                "--out",
                str(tmp_path / "cli.mrc"),
                "--scheduler",
                tcp_cluster,
            ]
        )
    assert exit_info.value.code in (0, None)
    with mrcfile.open(tmp_path / "cli.mrc") as m:
        np.testing.assert_array_equal(m.data, vol)
        assert float(m.voxel_size.x) == 5.0
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(tmp_path / "cli.zarr")])
    assert exit_info.value.code in (0, None)
