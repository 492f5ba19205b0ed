"""Fault injection on a real ``dask scheduler`` + ``dask worker`` cluster over TCP on loopback.

Each test compares the outputs with an uninterrupted computation (the eager kernel), so a
lost, doubled or torn chunk write fails it. Part of the default suite; run alone with
``pytest -m fault``. One scheduler subprocess serves the module (each test starts its own
worker subprocesses and waits, at its end, until they are gone); only the clients that must
be SIGKILLed run as ``cryoflow run`` subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from cryoflow.errors import NodeNotFoundError
from cryoflow.io.store import open_result, write_tilt_series
from cryoflow.kernels.binning import bin_image
from cryoflow.pipelines.engine.config import parse_pipeline
from cryoflow.pipelines.engine.run import read_summary, run_pipeline

pytestmark = pytest.mark.fault


N_TILTS = 16
ANGLES = np.linspace(-60, 60, N_TILTS)
ROOT = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------------------- processes
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["DASK_DISTRIBUTED__WORKER__DAEMON"] = "False"
    return env


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=_env(),
        cwd=ROOT,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole session: nanny and worker
    proc.wait(timeout=30)


def _wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """One ``dask scheduler`` subprocess (and a client) shared by the tests of this module."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("scheduler")
    sched_file = folder / "scheduler.json"
    proc = _spawn(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
        ],
        folder / "scheduler.log",
    )
    try:
        _wait_for(sched_file.exists, what="the scheduler")
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        with Client(address, set_as_default=False, timeout="30s") as client:
            yield address, client
    finally:
        _kill(proc)


@pytest.fixture
def cluster(scheduler, tmp_path):
    """The shared scheduler with no worker; ``add_worker(name, *flags)`` starts worker
    subprocesses (plain workers, no nanny: one process each), all killed after the test."""
    address, client = scheduler
    _wait_for(lambda: not client.scheduler_info()["workers"], what="an empty cluster")
    procs: list[subprocess.Popen] = []

    class Cluster:
        def __init__(self) -> None:
            self.address = address
            self.client = client
            self.workers: dict[str, subprocess.Popen] = {}

        def add_worker(self, name: str, *flags: str) -> subprocess.Popen:
            before = len(client.scheduler_info()["workers"])
            proc = _spawn(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    address,
                    "--name",
                    name,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--memory-limit",
                    "1GiB",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    "--local-directory",
                    str(tmp_path / "workers"),
                    *flags,
                ],
                tmp_path / f"worker-{name}.log",
            )
            procs.append(proc)
            self.workers[name] = proc
            client.wait_for_workers(before + 1, timeout=60)
            return proc

        def n_workers(self) -> int:
            return len(client.scheduler_info()["workers"])

    yield Cluster()
    for proc in reversed(procs):
        _kill(proc)
    # the next test starts from no worker and no task left from this one
    _wait_for(lambda: not client.scheduler_info()["workers"], what="the workers to leave")


# ---------------------------------------------------------------------------- data
def make_dataset(store: Path, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(n):
        name = f"TS_{i:02d}"
        data[name] = rng.normal(size=(N_TILTS, 32, 32)).astype(np.float32)
        write_tilt_series(store, name, data[name], ANGLES, 2.0)
    return data


def _config(store: Path, **cluster):
    return parse_pipeline(
        {
            "dataset": {"store": str(store)},
            "cluster": {"max_in_flight": 1, **cluster},
            "steps": [{"bin": {"factor": 2}}],
        }
    )


def assert_identical(store: Path, data: dict[str, np.ndarray]) -> None:
    for name, ts in data.items():
        out = open_result(store, name, "bin", "tilt_series").values
        np.testing.assert_array_equal(out, bin_image(ts, 2), err_msg=name)


def published(store: Path, data) -> list[str]:
    done = []
    for name in data:
        try:
            open_result(store, name, "bin", "tilt_series")
        except NodeNotFoundError:
            continue
        done.append(name)
    return done


def recorded_chunks(store: Path, names) -> int:
    """Chunk writes recorded in the progress arrays of ``names`` (one file per recorded chunk)."""
    return sum(len(list((store / "runs" / "progress" / n).glob("bin.*/c/*"))) for n in names)


def mid_tomogram(store: Path, data, n_published: int) -> bool:
    """``n_published`` results published and chunks of an unpublished one already recorded."""
    done = published(store, data)
    return (
        len(done) >= n_published and recorded_chunks(store, [n for n in data if n not in done]) > 0
    )


def _cli(*args: str, log: Path) -> subprocess.Popen:
    return _spawn([sys.executable, "-m", "cryoflow.cli.main", *args], log)


def _pipeline_file(tmp_path: Path, store: Path, address: str) -> Path:
    path = tmp_path / "PIPELINE.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "dataset": {"store": str(store)},
                "cluster": {"scheduler": address, "max_in_flight": 1},
                "steps": [{"bin": {"factor": 2}}],
            }
        )
    )
    return path


# ---------------------------------------------------------------------------- tests
def test_killed_worker_run_completes_identically(tmp_path, cluster):
    cluster.add_worker("w0")
    cluster.add_worker("w1")
    store = tmp_path / "d.zarr"
    data = make_dataset(store, 3)
    killed = []

    def kill_one(tomogram, step, n_recorded):
        if n_recorded == 3 and not killed:  # mid-run: work of the first tomogram in flight
            # let w1 finish more chunks that the client has not handled yet: their futures
            # turn "lost" when w1 dies and must be recomputed, not counted as failures
            time.sleep(0.5)
            _kill(cluster.workers["w1"])
            killed.append(tomogram)
            _wait_for(lambda: cluster.n_workers() == 1, what="the scheduler to drop w1")

    summary = run_pipeline(
        _config(store, max_in_flight=2), cluster.client, quiet=True, on_chunk=kill_one
    )
    assert killed, "the worker was never killed"
    assert summary.ok, summary.failures
    assert summary.steps["bin"].computed == 3
    assert_identical(store, data)


def test_sigkill_client_then_rerun_recomputes_only_incomplete(tmp_path, cluster):
    from cryoflow.io.verify import find_leftovers

    cluster.add_worker("w0")
    cluster.add_worker("w1")
    store = tmp_path / "d.zarr"
    data = make_dataset(store, 6)
    pipe = _pipeline_file(tmp_path, store, cluster.address)
    client_proc = _cli("run", str(pipe), "--quiet", log=tmp_path / "client1.log")
    try:
        _wait_for(lambda: mid_tomogram(store, data, 2), what="two results and a third under way")
    finally:
        _kill(client_proc)  # SIGKILL: no cleanup of any kind
    before = published(store, data)
    assert 2 <= len(before) < len(data), before
    # nothing torn is readable: unfinished tomograms have no result, only staging leftovers
    unfinished = [n for n in data if n not in before]
    for name in unfinished:
        with pytest.raises(NodeNotFoundError):
            open_result(store, name, "bin", "tilt_series")
    recorded = recorded_chunks(store, unfinished)
    leftovers = [x.path for x in find_leftovers(store)]
    assert any(p.startswith(f"tomograms/{unfinished[0]}/results/bin/.tmp-") for p in leftovers)
    # rerun (a new engine; all it knows comes from the store): the published results are
    # skipped, the rest (re)computed
    rerun = run_pipeline(_config(store), cluster.client, quiet=True)
    assert rerun.ok, rerun.failures
    summary = read_summary(store)
    assert summary["steps"]["bin"]["skipped"] == len(before)
    assert summary["steps"]["bin"]["computed"] == len(unfinished)
    # exactly the unrecorded chunks were submitted: the interrupted tomogram resumed
    assert summary["steps"]["bin"]["chunks"] == len(unfinished) * N_TILTS - recorded
    assert_identical(store, data)
    assert find_leftovers(store) == []


def test_half_written_store_verify_cleans_and_rerun_is_identical(tmp_path, cluster, capsys):
    cluster.add_worker("w0")
    store = tmp_path / "d.zarr"
    data = make_dataset(store, 4)
    pipe = _pipeline_file(tmp_path, store, cluster.address)
    proc = _cli("run", str(pipe), "--quiet", log=tmp_path / "client1.log")
    try:
        _wait_for(lambda: mid_tomogram(store, data, 1), what="a result and a second under way")
    finally:
        _kill(proc)
    assert len(published(store, data)) < len(data)
    # a torn chunk write (as if a worker died inside it) inside the staging node
    staging = sorted((store / "tomograms").glob("*/results/bin/.tmp-*"))
    assert staging, "the interrupted run left no staging node"
    (staging[0] / "c").mkdir(exist_ok=True)
    (staging[0] / "c" / "torn").write_bytes(b"\x00\x01half")
    from cryoflow.cli.main import main

    with pytest.raises(SystemExit) as verify:
        main(["verify", str(store)])
    out = capsys.readouterr().out
    assert verify.value.code == 1
    assert ".tmp-" in out and "leftover" in out
    with pytest.raises(SystemExit) as clean:
        main(["verify", str(store), "--clean"])
    assert clean.value.code in (0, None), capsys.readouterr()
    assert not list((store / "tomograms").glob("*/results/bin/.tmp-*"))
    # the rerun starts the cleaned results afresh (their recorded progress no longer counts)
    summary = run_pipeline(_config(store), cluster.client, quiet=True)
    assert summary.ok, summary.failures
    assert_identical(store, data)


def test_worker_retiring_on_a_timer_run_completes(tmp_path, cluster):
    cluster.add_worker("steady")
    cluster.add_worker("walltime", "--lifetime", "3s")
    store = tmp_path / "d.zarr"
    data = make_dataset(store, 3)
    waited = []

    def wait_for_retirement(tomogram, step, n_recorded):
        if not waited:  # hold the client until the worker has left by its own timer
            waited.append(True)
            _wait_for(
                lambda: cluster.n_workers() == 1, timeout=60, what="the --lifetime retirement"
            )

    summary = run_pipeline(
        _config(store, max_in_flight=2), cluster.client, quiet=True, on_chunk=wait_for_retirement
    )
    assert cluster.workers["walltime"].wait(timeout=30) == 0  # it left gracefully
    assert summary.ok, summary.failures
    assert_identical(store, data)


# ---------------------------------------------------------------------------- dataset rounds
def _rounds_pipeline(tmp_path: Path, store: Path, address: str | None, rounds: int) -> dict:
    cluster = {"scheduler": address} if address else {}
    return {"dataset": {"store": str(store)}, "cluster": {**cluster, "retries": 0},
            "steps": [{"intensity": {"rounds": rounds, "batch_size": 1}}]}


def _round_records(store: Path) -> list[str]:
    """The published round records of an unfinished intensity step (never the temporary ones)."""
    return sorted(p.name for p in (store / "results" / "intensity").glob(".tmp-rounds-*/round-*"))


def test_sigkill_client_mid_round_resumes_at_the_last_round_identically(tmp_path, cluster):
    """A dataset-level step in rounds: the client of ``cryoflow run`` is SIGKILLed in the middle
    of a round; the rerun resumes after the last recorded round and its result equals an
    uninterrupted run's, bit for bit."""
    from cryoflow.io.results import open_dataset_result
    from cryoflow.io.verify import find_leftovers

    cluster.add_worker("w0")
    rounds = 8
    store, ref = tmp_path / "d.zarr", tmp_path / "ref.zarr"
    make_dataset(store, 6)
    make_dataset(ref, 6)
    # the uninterrupted run, on the same cluster
    assert run_pipeline(parse_pipeline(_rounds_pipeline(tmp_path, ref, None, rounds)),
                        cluster.client, quiet=True).ok
    path = tmp_path / "ROUNDS.yaml"
    path.write_text(yaml.safe_dump(_rounds_pipeline(tmp_path, store, cluster.address, rounds)))
    proc = _cli("run", str(path), "--quiet", log=tmp_path / "client-rounds.log")
    try:
        _wait_for(lambda: len(_round_records(store)) >= 1, timeout=120, what="a recorded round")
    finally:
        _kill(proc)  # SIGKILL, in the round after the first recorded one
    recorded = len(_round_records(store))
    assert 1 <= recorded < rounds, recorded
    with pytest.raises(NodeNotFoundError):  # nothing published yet
        open_dataset_result(store, "intensity", "mean")
    summary = run_pipeline(parse_pipeline(_rounds_pipeline(tmp_path, store, None, rounds)),
                           cluster.client, quiet=True)
    assert summary.ok, summary.failures
    assert summary.steps["intensity"].chunks == rounds - recorded  # only the rounds left
    for key in ("mean", "std", "count", "history"):
        np.testing.assert_array_equal(open_dataset_result(store, "intensity", key).values,
                                      open_dataset_result(ref, "intensity", key).values)
    assert open_dataset_result(store, "intensity", "history").shape == (rounds, 3)
    assert find_leftovers(store) == []
