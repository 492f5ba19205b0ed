"""Peak memory per worker while back-projecting volumes up to 8x the worker's memory limit.

For each size (a multiple of the worker memory limit, counted as the bytes of the int16 vote
map), a fresh local cluster of 2 single-threaded workers back-projects sparse binary masks
from a cryoflow store into a vote map written to the store, chunk by chunk. Reported per
size: whether it completed, the wall time, and the peak resident memory of each worker
process (``ru_maxrss``), minus the worker's resident memory after start-up and imports.
Target: the largest volume (8x the limit) completes and the peak stays flat as volumes grow.

A worker that has imported torch and cryoflow already holds about 0.9 GiB resident (mostly
torch's shared libraries), and Dask pauses a worker at 80% of its limit, so the limit must be
well above that: 1536 MiB by default.

Usage: ``python benchmarks/bench_memory.py [--small] [--limit-mib N] [--tilts N] [--wave N]
[--factors F ...] [--no-trim]``. Default: 1536 MiB limit, volumes of 1, 2, 4 and 8 x the limit (Z = 256,
4 tilts), every chunk write submitted at once; ``--wave N`` submits N at a time.
``BENCH_DASK_MALLOC=1`` starts the workers with Distributed's own malloc settings instead of
cryoflow's (``cryoflow.pipelines.cluster.connect.WORKER_MALLOC``), for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from cryoflow.geometry import TiltGeometry
from cryoflow.graph.backproject import backproject_graph


def rss_mib() -> float:
    """Resident memory of this process now, MiB (from /proc, Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB: the kernel's ``VmHWM``.

    Not ``ru_maxrss``: a worker process is spawned (fork, then exec) by its nanny, and
    ``ru_maxrss`` keeps the peak of the process it was forked from, here the benchmark itself,
    which holds the tilt series it just wrote: that alone made the peak grow with the volume.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def masks_for(n: int, Y: int, X: int, seed: int) -> np.ndarray:
    """Sparse binary masks (n, Y, X): a few hundred random discs per tilt."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, Y, X), bool)
    for t in range(n):
        for cy, cx, r in zip(
            rng.integers(0, Y, 300), rng.integers(0, X, 300), rng.integers(2, 9, 300), strict=True
        ):
            masks[t, max(cy - r, 0) : cy + r, max(cx - r, 0) : cx + r] = True
    return masks


def in_waves(client, tasks: list, wave: int) -> None:
    """Compute the chunk writes ``wave`` at a time (0: all at once), releasing each as it ends."""
    from cryoflow.pipelines.cluster.progress import compute_with_progress

    step = wave or len(tasks)
    for i in range(0, len(tasks), step):
        compute_with_progress(client, tasks[i : i + step], "bench", quiet=True)


def run_size(
    store: Path, name: str, shape, geometry, limit_mib: int, wave: int = 0, trim: bool = True
) -> dict:
    from distributed import Client, LocalCluster

    from cryoflow.io import store as S
    from cryoflow.pipelines.cluster.connect import prepare_workers, worker_environ

    with (
        worker_environ()
        if os.environ.get("BENCH_DASK_MALLOC") != "1"
        else contextlib.nullcontext(),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            memory_limit=f"{limit_mib}MiB",
            silence_logs=50,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: __import__("cryoflow.kernels.backproject"))
        if trim:
            prepare_workers(client)  # as cryoflow's own clusters run
        base = client.run(rss_mib)
        start_peak = client.run(peak_rss_mib)
        t0 = time.perf_counter()
        images = S.open_tilt_series(store, name).data
        votes = backproject_graph(images, geometry, shape)
        S.write_volume(
            store,
            name,
            "votes",
            votes,
            pixel_size_angstrom=1.0,
            provenance={"step": "bench"},
            multiscale=False,
            overwrite=True,
            compute=False,
        ).run(lambda tasks: in_waves(client, tasks, wave))
        wall = time.perf_counter() - t0
        peak = client.run(peak_rss_mib)
    return {
        "wall": wall,
        "peak": list(peak.values()),
        "base": list(base.values()),
        "start_peak": list(start_peak.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="factors 1/8, 1/4, 1/2, 1 only")
    parser.add_argument("--limit-mib", type=int, default=1536, help="worker memory limit")
    parser.add_argument("--tilts", type=int, default=4, help="tilts of the series")
    parser.add_argument("--wave", type=int, default=0, help="chunk writes per wave (0: all)")
    parser.add_argument("--factors", type=float, nargs="*", help="volume sizes, x the limit")
    parser.add_argument(
        "--no-trim", action="store_true", help="without cryoflow's TrimMemory worker plugin"
    )
    args = parser.parse_args()
    from cryoflow.io import store as S

    n, Z = args.tilts, 256
    factors = args.factors or ((0.125, 0.25, 0.5, 1.0) if args.small else (1.0, 2.0, 4.0, 8.0))
    geometry = TiltGeometry.single_axis(np.linspace(-60, 60, n))
    print(
        f"memory: worker limit {args.limit_mib} MiB, 2 workers x 1 thread, {n} tilts, "
        f"int16 vote maps of Z = {Z}, chunk writes per wave {args.wave or 'all'}, "
        f"TrimMemory {'off' if args.no_trim else 'on'}; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    print(
        f"  {'volume':>22}  {'x limit':>7}  {'wall s':>7}  {'start RSS MiB':>14}"
        f"  {'peak RSS MiB (per worker)':>26}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "mem.zarr"
        S.create_dataset(store)
        for i, f in enumerate(factors):
            side = int(np.sqrt(f * args.limit_mib * 2**20 / (2 * Z)) // 64 * 64)
            shape = (Z, side, side)
            name = f"size{i}"
            S.write_tilt_series(store, name, masks_for(n, side, side, i), geometry, 1.0)
            try:
                r = run_size(
                    store, name, shape, geometry, args.limit_mib, args.wave, not args.no_trim
                )
            except Exception as exc:  # noqa: BLE001 - a benchmark reports the failure and goes on
                print(f"  {str(shape):>22}  {f:7.3g}  FAILED: {type(exc).__name__}: {exc}")
                continue
            peaks = " / ".join(f"{p:.0f}" for p in r["peak"])
            base = " / ".join(f"{b:.0f}" for b in r["base"])
            print(
                f"  {str(shape):>22}  {f:7.3g}  {r['wall']:7.1f}  {base:>14}  {peaks:>26}",
                flush=True,
            )


if __name__ == "__main__":
    main()
