"""Extraction throughput: particles/s from the store through Dask vs plain NumPy; memory.

Data: ``--tomograms`` stored volumes ``(Z, Y, X)`` of smoothed noise (compresses like a
tomogram) in a cryoflow store (128^3 chunks, Blosc/zstd), with ``--particles`` particles per
tomogram at random positions (some boxes over the border), boxes of ``--box``.

Measured in one run (best of ``--repeats``), each doing the same boxes:

* **NumPy, in memory**: a plain loop (``cryoflow.kernels.extract.crop_boxes``) slicing the
  volumes already in memory: the peer of the target (Dask on 1 worker >= 0.5x);
* **NumPy, read + slice**: the same loop, including reading each volume whole from the store;
* **Dask, 1 and 2 workers**: ``cryoflow.graph.extract.extract_stack`` over ``open_volume``
  views (each read task fills up to ``TASK_BYTES`` of consecutive batches and is one block of
  the stack, reading each chunk its boxes overlap once, the next chunk on a helper thread while
  boxes are filled from the current one) on a real LocalCluster of single-threaded worker processes; each
  block is reduced to its boxes' sums, so what is timed is reading and cutting, not shipping
  boxes to the client; also on 1 worker with one read task per batch (``task_bytes=1``, the
  layout before 2026-12-01). The NumPy loops and the 1-worker runs alternate, so the load of a
  shared machine weighs on all of them alike;
* **ceiling**: the read tasks' own work in two plain processes at once over one
  (``_concurrent.py``): the most 2 workers can reach on this machine (target: 2 workers / 1
  >= 0.85 of it);
* **memory**: peak resident memory (VmHWM) of one worker writing a particle set of N and of
  10 N particles to the store (the real write path, ``write_particle_set``): flat is the target.

Usage: python benchmarks/bench_extract.py [--tomograms 4] [--particles 500] [--box 32]
[--batch 64] [--repeats 3] [--memory-particles 1000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from cryoflow.graph.extract import _fill_stored, extract_stack, task_groups
from cryoflow.io import store as S
from cryoflow.io.particleset import write_particle_set
from cryoflow.kernels.extract import crop_boxes

SHAPE = (128, 256, 256)


def make_store(path: Path, n_tomos: int, n_particles: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_tomos):
        vol = ndimage.gaussian_filter(rng.normal(size=SHAPE).astype(np.float32), 1.0)
        S.write_volume(
            path,
            f"t{t}",
            "tomogram",
            vol,
            pixel_size_angstrom=10.0,
            provenance={"step": "bench"},
            multiscale=False,
        )
        xyz = rng.uniform(-4, np.array(SHAPE[::-1]) + 4, size=(n_particles, 3))
        rows += [(f"t{t}", *c) for c in xyz]
    return pd.DataFrame(rows, columns=["tomogram", "x", "y", "z"])


def _sums(block: np.ndarray) -> np.ndarray:
    return block.sum(axis=(1, 2, 3), dtype=np.float64)


def plain_in_memory(vols: dict, table: pd.DataFrame, box: int) -> float:
    total = 0.0
    for name, vol in vols.items():
        rows = table[table["tomogram"] == name][["x", "y", "z"]].to_numpy()
        total += float(crop_boxes(vol, rows, box).sum(dtype=np.float64))
    return total


def _setup(store: str, table_csv: str, box: int, batch: int):
    """A plain process's state (see ``_concurrent``): the store's arrays and the batches."""
    table = pd.read_csv(table_csv)
    names = list(dict.fromkeys(table["tomogram"]))
    views = {n: S.open_volume(store, n, "tomogram").data for n in names}
    _, planned = extract_stack(views, table, box, batch_size=batch)
    from cryoflow.graph.sources import stored_source

    sources = [stored_source(views[n]) for n in names]
    tomo = planned["tomogram"].map({n: i for i, n in enumerate(names)}).to_numpy()
    starts = planned[["box_z0", "box_y0", "box_x0"]].to_numpy()
    return sources, tomo, starts, box, batch


def _run(state) -> None:
    sources, tomo, starts, box, batch = state
    for group in task_groups(len(starts), batch, box):
        lo, hi = group[0] * batch, min(len(starts), (group[-1] + 1) * batch)
        _fill_stored(sources, tomo[lo:hi], starts[lo:hi], box, "mean").sum()


def dask_seconds(client, views: dict, table: pd.DataFrame, box: int, batch: int, **kw) -> float:
    """Seconds of one extraction of ``table`` on ``client`` (each block reduced to its sums)."""
    import dask.array as da

    stack, _ = extract_stack(views, table, box, batch_size=batch, label=f"bench{time.time()}", **kw)
    sums = da.map_blocks(_sums, stack, drop_axis=[1, 2, 3], dtype=np.float64)
    t0 = time.perf_counter()
    client.compute(sums).result()
    return time.perf_counter() - t0


def dask_rate(
    client, store: Path, table: pd.DataFrame, box: int, batch: int, repeats: int
) -> float:
    views = {n: S.open_volume(store, n, "tomogram").data for n in dict.fromkeys(table["tomogram"])}
    dask_seconds(client, views, table, box, batch)  # warms the workers up
    return len(table) / min(dask_seconds(client, views, table, box, batch) for _ in range(repeats))


def memory_peak(client, store: Path, table: pd.DataFrame, box: int, batch: int, name: str) -> float:
    from _clusters import compute_with_progress, peak_rss_mib, reset_peak_rss

    client.run(reset_peak_rss)
    views = {n: S.open_volume(store, n, "tomogram").data for n in dict.fromkeys(table["tomogram"])}
    stack, planned = extract_stack(views, table, box, batch_size=batch, label=name)
    write_particle_set(
        store, name, planned, stack, provenance={"step": "bench"}, compute=False
    ).run(lambda tasks: compute_with_progress(client, tasks, "bench", quiet=True))
    return max(client.run(peak_rss_mib).values())


def main() -> None:
    load_before = os.getloadavg()[0]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tomograms", type=int, default=4)
    ap.add_argument("--particles", type=int, default=500, help="per tomogram")
    ap.add_argument("--box", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-particles", type=int, default=1000, help="N of the memory test")
    args = ap.parse_args()
    from _clusters import local_cluster
    from _concurrent import concurrent_speedup

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "bench.zarr"
        table = make_store(store, args.tomograms, args.particles)
        n = len(table)
        vols = {
            f"t{t}": S.open_volume(store, f"t{t}", "tomogram").values for t in range(args.tomograms)
        }
        # 1. plain NumPy (in memory; reading the volumes first) and Dask on 1 worker (the read
        # tasks; one task per batch as before 2026-12-01), interleaved so that the load of the
        # shared machine weighs on all alike; best of the repeats
        best = dict.fromkeys(("mem", "read", "one", "per_batch"), np.inf)
        views = {k: S.open_volume(store, k, "tomogram").data for k in vols}
        with local_cluster(1) as client:
            dask_seconds(client, views, table, args.box, args.batch)  # warm-up
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                plain_in_memory(vols, table, args.box)
                best["mem"] = min(best["mem"], time.perf_counter() - t0)
                t0 = time.perf_counter()
                read = {k: S.open_volume(store, k, "tomogram").values for k in vols}
                plain_in_memory(read, table, args.box)
                best["read"] = min(best["read"], time.perf_counter() - t0)
                del read
                t = dask_seconds(client, views, table, args.box, args.batch)
                best["one"] = min(best["one"], t)
                t = dask_seconds(client, views, table, args.box, args.batch, task_bytes=1)
                best["per_batch"] = min(best["per_batch"], t)
        del vols
        plain_mem, plain_read, one, per_batch = (n / best[k] for k in best)
        with local_cluster(2) as client:
            two = dask_rate(client, store, table, args.box, args.batch, args.repeats)
        # 3. the machine's ceiling for 2 processes
        csv = Path(tmp) / "table.csv"
        table.to_csv(csv, index=False)
        from functools import partial

        ceiling = concurrent_speedup(
            partial(_setup, str(store), str(csv), args.box, args.batch), _run, 2, args.repeats
        )
        # 4. peak worker memory, N and 10 N particles
        rng = np.random.default_rng(1)
        small = table.sample(n=args.memory_particles, replace=True, random_state=1)
        big = pd.concat([table] * (10 * args.memory_particles // n + 1)).iloc[
            : 10 * args.memory_particles
        ]
        big = big.assign(x=big["x"] + rng.normal(0, 1, len(big)))
        with local_cluster(1) as client:
            peak_small = memory_peak(client, store, small, args.box, args.batch, "mem_small")
        with local_cluster(1) as client:
            peak_big = memory_peak(client, store, big, args.box, args.batch, "mem_big")
    print(
        f"extraction: {args.tomograms} tomograms {SHAPE}, {n} particles, box {args.box}, batch {args.batch}, "
        f"{len(task_groups(n, args.batch, args.box))} read tasks; load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after (machine shared with other users)"
    )
    print(f"NumPy loop, volumes in memory : {plain_mem:9.0f} particles/s")
    print(f"NumPy loop, read + slice      : {plain_read:9.0f} particles/s")
    print(
        f"Dask, 1 worker                : {one:9.0f} particles/s  ({one / plain_mem:.2f}x in-memory loop; "
        f"target >= 0.5; {one / plain_read:.2f}x read + slice)"
    )
    print(
        f"Dask, 1 worker, 1 task/batch  : {per_batch:9.0f} particles/s  (task_bytes=1: one read "
        f"task per batch, as before 2026-12-01; read tasks {one / per_batch:.2f}x faster)"
    )
    print(f"Dask, 2 workers               : {two:9.0f} particles/s  ({two / one:.2f}x 1 worker)")
    print(
        f"2 plain processes at once / 1 : {ceiling:.2f}x (this machine's ceiling); 2 workers reach "
        f"{two / one / ceiling:.2f} of it (target >= 0.85)"
    )
    print(
        f"peak worker memory writing a set: {args.memory_particles} particles {peak_small:.0f} MiB, "
        f"{10 * args.memory_particles} particles {peak_big:.0f} MiB ({peak_big / peak_small:.2f}x)"
    )


if __name__ == "__main__":
    main()
