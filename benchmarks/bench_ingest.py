"""Peak memory per worker while ingesting MRC tilt stacks of growing size.

For each stack size a float32 MRC (noise, one tilt written at a time) and its ``.tlt`` go to a
scratch directory; a fresh local cluster of 2 single-threaded worker processes with a memory
limit ingests it with :func:`cryoflow.pipelines.stages.ingest.run` (one memory-mapped read and one
Zarr chunk write per task). While it runs, a thread polls every worker's resident memory
(``/proc/self/status``: ``VmRSS``, anonymous and file-backed parts); at the end each worker's
kernel-tracked peak (``VmHWM``, which unlike ``ru_maxrss`` does not inherit the parent's peak
across fork and exec) is read too. Reported per size and worker: the resident
memory after start-up and imports (``base``), the peak, and ``(peak - base) / chunk``: the
working memory in units of one stored chunk (``1 x min(Y,1024) x min(X,1024)`` float32). Flat
memory means that ratio stays the same while the stack grows 64x. One tilt is checked against
the MRC, then the MRC and the store are deleted.

Usage: ``python benchmarks/bench_ingest.py [--full] [--limit-mib N] [--scratch DIR]``.
Default sizes (Y x X x tilts): 512x512x16, 1k x 1k x 30, 2k x 2k x 60 (16 MiB .. 960 MiB).
``--full``: 1k x 1k x 30, 2k x 2k x 60, 4k x 4k x 120 (120 MiB .. 7.5 GiB; ~16 GB of scratch).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np

SMALL = [(16, 512, 512), (30, 1024, 1024), (60, 2048, 2048)]
FULL = [(30, 1024, 1024), (60, 2048, 2048), (120, 4096, 4096)]
MIB = 2**20


# ---------------------------------------------------------------------------- worker probes
def memory_now() -> dict[str, int]:
    """This process's resident memory in bytes: ``rss``, ``anon``, ``file``, peak ``hwm``."""
    fields = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "hwm"}
    out = {v: 0 for v in fields.values()}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in fields:
                out[fields[key]] = int(rest.split()[0]) * 1024
    return out


def probe(dask_worker: object = None) -> dict[str, int]:
    """:func:`memory_now` plus ``managed``: bytes of task results the worker holds in memory."""
    mem = memory_now()
    state = getattr(dask_worker, "state", None)
    mem["managed"] = int(getattr(state, "nbytes", 0))
    return mem


def warm_up() -> dict[str, int]:
    """Import what the ingest tasks use, so the baseline includes it; return memory now."""
    import cryoflow.io.mrc  # noqa: F401
    import cryoflow.io.writer  # noqa: F401

    return memory_now()


# ---------------------------------------------------------------------------- sampling
@dataclass
class Sampler:
    """Polls every worker's memory on a thread while the ingest runs."""

    client: object
    interval_s: float = 0.1
    peaks: dict[str, dict[str, int]] = field(default_factory=dict)
    timeline: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # (t, rss)
    n_samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _loop(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            for addr, mem in self.client.run(probe).items():  # type: ignore[attr-defined]
                self.timeline.setdefault(addr, []).append((time.perf_counter() - t0, mem["rss"]))
                peak = self.peaks.setdefault(addr, {k: 0 for k in mem})
                for k, v in mem.items():
                    peak[k] = max(peak[k], v)
            self.n_samples += 1
            self._stop.wait(self.interval_s)

    def quarters(self, addr: str) -> list[int]:
        """Highest RSS in each quarter of the run (a plateau, or growth over time?)."""
        samples = self.timeline.get(addr, [])
        if not samples:
            return [0, 0, 0, 0]
        end = samples[-1][0] or 1.0
        return [
            max((r for t, r in samples if q / 4 <= t / end <= (q + 1) / 4), default=0)
            for q in range(4)
        ]

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# ---------------------------------------------------------------------------- one size
def write_stack(path: Path, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A float32 noise MRC of ``shape`` (tilts, Y, X), written one tilt at a time; angles."""
    rng = np.random.default_rng(seed)
    n = shape[0]
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as m:
        for t in range(n):
            m.data[t] = rng.standard_normal(shape[1:], dtype=np.float32)
        m.voxel_size = 2.0
    angles = np.linspace(-60.0, 60.0, n)
    path.with_suffix(".tlt").write_text("".join(f"{a:.2f}\n" for a in angles))
    return angles


def run_size(scratch: Path, shape: tuple[int, int, int], limit_mib: int, seed: int) -> dict:
    from distributed import Client, LocalCluster

    import cryoflow
    from cryoflow.io.layout import tilt_series_chunks
    from cryoflow.pipelines.cluster.connect import prepare_workers, worker_environ
    from cryoflow.pipelines.stages import ingest
    from cryoflow.pipelines.stages.eager import Target
    from cryoflow.pipelines.stages.ingest import IngestParams

    n, Y, X = shape
    mrc = scratch / f"stack_{Y}x{X}x{n}.mrc"
    out = scratch / f"stack_{Y}x{X}x{n}.zarr"
    t0 = time.perf_counter()
    write_stack(mrc, shape, seed)
    t_write = time.perf_counter() - t0
    chunk = tilt_series_chunks(shape)
    chunk_bytes = int(np.prod(chunk)) * 4
    try:
        with (
            worker_environ(),
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
            base = client.run(warm_up)
            prepare_workers(client)  # as cryoflow's own clusters run
            workers_before = set(client.scheduler_info()["workers"])
            t0 = time.perf_counter()
            with Sampler(client) as sampler:
                ingest.run(client, Target(str(out), (), quiet=True), IngestParams(inputs=(str(mrc),)))
            seconds = time.perf_counter() - t0
            maxrss = {a: m["hwm"] for a, m in client.run(memory_now).items()}
            workers_after = set(client.scheduler_info()["workers"])
        k = n // 2
        stored = cryoflow.open_tilt_series(out, mrc.stem)[k].values
        with mrcfile.mmap(mrc, mode="r") as m:
            correct = bool(np.array_equal(stored, m.data[k]))
    finally:
        shutil.rmtree(out, ignore_errors=True)
        mrc.unlink(missing_ok=True)
        mrc.with_suffix(".tlt").unlink(missing_ok=True)
    return {
        "shape": shape,
        "bytes": n * Y * X * 4,
        "chunk": chunk,
        "chunk_bytes": chunk_bytes,
        "n_chunks": n * -(-Y // chunk[1]) * -(-X // chunk[2]),
        "seconds": seconds,
        "write_s": t_write,
        "base": base,
        "peak": sampler.peaks,
        "quarters": {a: sampler.quarters(a) for a in sampler.peaks},
        "maxrss": maxrss,
        "samples": sampler.n_samples,
        "workers_kept": workers_before == workers_after,
        "correct": correct,
    }


def report(r: dict) -> None:
    n, Y, X = r["shape"]
    print(
        f"\n{Y}x{X}x{n} float32 = {r['bytes'] / MIB:.0f} MiB, {r['n_chunks']} chunks of "
        f"{r['chunk_bytes'] / MIB:.0f} MiB; ingest {r['seconds']:.1f} s "
        f"({r['bytes'] / MIB / r['seconds']:.0f} MiB/s; stack written in {r['write_s']:.0f} s), "
        f"{r['samples']} samples, "
        f"tilt check {'ok' if r['correct'] else 'FAILED'}, "
        f"workers {'kept' if r['workers_kept'] else 'RESTARTED'}"
    )
    print(
        "  worker                  base MiB  peak MiB (anon/file)  VmHWM MiB  (peak-base)/chunk"
        "  managed MiB  peak per quarter of the run"
    )
    for i, addr in enumerate(sorted(r["base"])):
        base, peak, maxrss = r["base"][addr], r["peak"].get(addr, {}), r["maxrss"][addr]
        top = max(peak.get("rss", 0), maxrss)
        print(
            f"  {i}  {addr[-22:]:>22}  {base['rss'] / MIB:7.0f}  {peak.get('rss', 0) / MIB:7.0f} "
            f"({peak.get('anon', 0) / MIB:.0f}/{peak.get('file', 0) / MIB:.0f})"
            f"  {maxrss / MIB:9.0f}  {(top - base['rss']) / r['chunk_bytes']:10.1f}"
            f"  {peak.get('managed', 0) / MIB:11.0f}  "
            + " ".join(f"{q / MIB:.0f}" for q in r["quarters"].get(addr, []))
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="up to 4k x 4k x 120 (7.5 GiB)")
    parser.add_argument("--limit-mib", type=int, default=2048, help="worker memory limit")
    parser.add_argument("--sizes", default=None, help="e.g. 4096x4096x120,2048x2048x60")
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=None,
        help="set MALLOC_MMAP_THRESHOLD_ in the workers (glibc: big buffers via mmap, no heap)",
    )
    parser.add_argument("--scratch", default=tempfile.gettempdir(), help="where data is written")
    args = parser.parse_args()
    if args.mmap_threshold is not None:
        import dask
        import distributed  # noqa: F401  (registers its config)

        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
        environ["MALLOC_MMAP_THRESHOLD_"] = args.mmap_threshold
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ})
    scratch = Path(tempfile.mkdtemp(prefix="cryoflow-bench-ingest-", dir=args.scratch))
    print(
        f"bench_ingest: 2 workers x 1 thread, memory limit {args.limit_mib} MiB each, "
        f"scratch {scratch}, {os.cpu_count()} CPUs"
    )
    try:
        sizes = FULL if args.full else SMALL
        if args.sizes:
            yxn = [[int(v) for v in s.split("x")] for s in args.sizes.split(",")]
            sizes = [(n, y, x) for y, x, n in yxn]
        for i, shape in enumerate(sizes):
            report(run_size(scratch, shape, args.limit_mib, seed=i))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
