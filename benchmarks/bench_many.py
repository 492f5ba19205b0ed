"""Many small tomograms through ``run_pipeline``: peak memory, throughput, scheduler overhead.

    python benchmarks/bench_many.py --n 50 --workers 1 2 --sizes 10 25 50 --out bench_many.json

For every worker count, a LocalCluster of that many single-threaded worker processes with a
2 GiB memory limit each runs ``bin`` + ``reconstruct`` over ``--n`` synthetic tomograms
(``--tilts`` x ``--px`` x ``--px``). Reported per run:

- ``tomograms_per_s``: throughput of the whole run (published results / wall time);
- ``peak_worker_memory_mib``: highest RSS any worker reported (sampled every 0.1 s from the
  scheduler's view of the workers; a worker killed for memory would also show in ``killed``);
- ``overhead_ms_per_task``: ``(wall x threads - sum of task compute time) / tasks``, i.e. what
  each task costs beyond its own work (scheduling, transfers, the client's bookkeeping), measured
  for growing dataset sizes (``--sizes``) to show it stays flat as the dataset grows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def make_dataset(store: Path, n: int, n_tilts: int, px: int, seed: int = 0) -> None:
    from cryoflow.io.store import write_tilt_series

    rng = np.random.default_rng(seed)
    angles = np.linspace(-60, 60, n_tilts)
    for i in range(n):
        ts = rng.normal(size=(n_tilts, px, px)).astype(np.float32)
        write_tilt_series(store, f"TS_{i:03d}", ts, angles, 2.0)


class MemoryWatch:
    """Poll the scheduler for every worker's memory; remember peaks and lost workers."""

    def __init__(self, client, period_s: float = 0.1) -> None:
        self.client = client
        self.period_s = period_s
        self.peak: dict[str, int] = {}
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            info = self.client.scheduler_info(n_workers=-1)["workers"]
            for addr, w in info.items():
                self.seen.add(addr)
                mem = int(w.get("metrics", {}).get("memory", 0))
                self.peak[addr] = max(self.peak.get(addr, 0), mem)
            self._stop.wait(self.period_s)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _warm_up() -> None:
    import cryoflow.api  # noqa: F401 - the back-projection stack the run uses
    import cryoflow.pipelines.stages.bin  # noqa: F401


def one_run(n: int, workers: int, args: argparse.Namespace, tmp: Path) -> dict:
    from distributed import Client, LocalCluster, get_task_stream

    from cryoflow.pipelines.cluster.connect import prepare_workers, worker_environ
    from cryoflow.pipelines.engine.config import parse_pipeline
    from cryoflow.pipelines.engine.run import run_pipeline

    store = tmp / f"d-{n}-{workers}.zarr"
    make_dataset(store, n, args.tilts, args.px)
    cfg = parse_pipeline(
        {
            "dataset": {"store": str(store)},
            "cluster": {"max_in_flight": args.in_flight},
            "steps": [
                {"bin": {"factor": 2}},
                {"reconstruct": {"source": "bin", "thickness": args.px // 2, "chunk": 32}},
            ],
        }
    )
    with (
        worker_environ(),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit=args.memory_limit,
            silence_logs=50,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        client.run(_warm_up)  # imports (torch) happen before the clock starts
        prepare_workers(client)  # as cryoflow's own clusters run
        with MemoryWatch(client) as watch, get_task_stream(client=client) as stream:
            t0 = time.perf_counter()
            summary = run_pipeline(cfg, client, quiet=True)
            wall = time.perf_counter() - t0
        final_workers = set(client.scheduler_info(n_workers=-1)["workers"])
    compute = sum(
        sum(s["stop"] - s["start"] for s in rec["startstops"] if s["action"] == "compute")
        for rec in stream.data
    )
    n_tasks = len(stream.data)
    shutil.rmtree(store, ignore_errors=True)
    return {
        "tomograms": n,
        "workers": workers,
        "ok": summary.ok,
        "wall_s": round(wall, 2),
        "tomograms_per_s": round(n / wall, 3),
        "tasks": n_tasks,
        "overhead_ms_per_task": round(1e3 * (wall * workers - compute) / max(n_tasks, 1), 2),
        "peak_worker_memory_mib": round(max(watch.peak.values(), default=0) / 2**20, 1),
        "killed": len(watch.seen - final_workers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[10, 25, 50],
        help="dataset sizes for the overhead curve (on the largest worker count)",
    )
    parser.add_argument("--tilts", type=int, default=32)
    parser.add_argument("--px", type=int, default=64)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--memory-limit", default="2GiB")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.workers:
            rows.append(one_run(args.n, w, args, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
        for n in args.sizes:
            if n == args.n:
                continue
            rows.append(one_run(n, max(args.workers), args, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
