"""Back-projection throughput, in voxel-updates per second (tilts x voxels / s), in one run.

Measures, on the same data and machine:

1. the kernel in memory on one core (``backproject_block`` on the whole volume, and block by
   block as the Dask graph runs it);
2. the peer a Python user reaches for: scikit-image ``iradon(..., filter_name=None)`` slice by
   slice (a subset of slices; its rate per voxel-update is what is compared);
3. ASTRA's CPU 2D back-projector (``BP``, linear projector), slice by slice, when
   ``astra-toolbox`` is installed (OMP_NUM_THREADS=1, so per core);
4. the store alone: the finished volume encoded and written block by block with the store's
   codec into a Zarr array beside the store, no Dask, one core (the I/O that end to end adds
   to the kernel, on this machine's disk);
5. end to end through Dask and Zarr: tilt series in a cryoflow store -> ``backproject_graph``
   -> volume written to the store, on a local cluster of 1 and of 2 single-threaded workers.

and prints the ratios the issue sets targets for:

- kernel / skimage per core >= 30
- end to end (1 worker) / kernel in memory >= 0.5
- 2 workers / 1 worker >= 1.8

and, for reading the third one, the same kernel in 2 plain processes at once over 1 process
(``_concurrent.py``: what two workers can at best reach on this machine); for the second, end
to end (1 worker) / (kernel then store write, in series): how close Dask gets to doing the
same work on one core with no scheduling at all.

Usage: ``python benchmarks/bench_backproject.py [--small] [--no-cluster] [--store-dir DIR]``.
Default size: 61 tilts of 512 x 512 into 200 x 512 x 512; the store goes in a temporary
directory under ``--store-dir`` (default: the system's temporary directory; give the file
system you will process on).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # per-core peers (ASTRA, NumPy)

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from cryoflow.geometry import TiltGeometry, chunk_footprint
from cryoflow.graph.backproject import DEFAULT_CHUNKS, backproject_graph, iter_blocks
from cryoflow.kernels.backproject import backproject_block


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Shortest wall time of ``repeat`` calls (the machine is shared; the minimum is the signal)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def kernel_whole(images, geometry, shape):
    block = tuple(slice(0, s) for s in shape)
    return backproject_block(images, geometry, shape, images.shape[1:], block, n_threads=1)


def kernel_blocks(images, geometry, shape):
    import dask.array as da

    chunks = da.core.normalize_chunks(DEFAULT_CHUNKS, shape)
    out = np.empty(shape, np.float32)
    for _, block in iter_blocks(chunks):
        fp = chunk_footprint(geometry, shape, images.shape[1:], block)
        (v0, v1), (u0, u1) = fp.v, fp.u_union
        crop = images[:, v0:v1, u0:u1]
        out[block] = backproject_block(
            crop, geometry, shape, images.shape[1:], block, (v0, u0), n_threads=1
        )
    return out


def skimage_rate(images, angles, n_slices):
    from skimage.transform import iradon

    n, _, U = images.shape
    t0 = time.perf_counter()
    for y in range(n_slices):
        iradon(images[:, y, :].T, theta=angles, filter_name=None, output_size=U, circle=False)
    dt = time.perf_counter() - t0
    return n * U * U * n_slices / dt


def astra_rate(images, angles, n_slices):
    try:
        import astra
    except ImportError:
        return None
    n, _, U = images.shape
    vg = astra.create_vol_geom(U, U)
    pg = astra.create_proj_geom("parallel", 1.0, U, np.deg2rad(angles))
    pid = astra.create_projector("linear", pg, vg)
    rid = astra.data2d.create("-vol", vg, 0)
    total = 0.0
    for y in range(n_slices):
        sid = astra.data2d.create("-sino", pg, np.ascontiguousarray(images[:, y, :]))
        cfg = astra.astra_dict("BP")
        cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid)
        aid = astra.algorithm.create(cfg)
        t0 = time.perf_counter()
        astra.algorithm.run(aid)
        total += time.perf_counter() - t0
        astra.algorithm.delete(aid)
        astra.data2d.delete(sid)
    astra.data2d.delete(rid)
    astra.projector.delete(pid)
    return n * U * U * n_slices / total


SIZE = (61, 512, 512, 200)  # tilts, V, U, Z
SMALL = (31, 128, 128, 64)


def _plain_setup(small: bool = False):
    """Data for one plain process running the block-by-block kernel (see ``_concurrent``)."""
    torch.set_num_threads(1)
    n, V, U, Z = SMALL if small else SIZE
    images = np.random.default_rng(0).random((n, V, U), dtype=np.float32)
    return images, TiltGeometry.single_axis(np.linspace(-60, 60, n)), (Z, V, U)


def _plain_run(state) -> None:
    kernel_blocks(*state)


def store_write(path: Path, volume: np.ndarray) -> None:
    """Encode and write ``volume`` block by block into a fresh Zarr array with the store's codec."""
    import dask.array as da
    import zarr

    from cryoflow.io.layout import COMPRESSOR

    arr = zarr.create_array(
        path,
        shape=volume.shape,
        chunks=DEFAULT_CHUNKS,
        dtype=volume.dtype,
        compressors=COMPRESSOR,
        fill_value=0,
        overwrite=True,
    )
    for _, block in iter_blocks(da.core.normalize_chunks(DEFAULT_CHUNKS, volume.shape)):
        arr[block] = volume[block]


def end_to_end(store: Path, geometry, shape, n_workers: int, repeat: int) -> float:
    from distributed import Client, LocalCluster

    from cryoflow.io import store as S
    from cryoflow.pipelines.cluster.connect import prepare_workers, worker_environ

    with (
        worker_environ(),
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            memory_limit="4GiB",
            silence_logs=40,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: __import__("cryoflow.kernels.backproject"))  # warm the imports
        prepare_workers(client)  # as cryoflow's own clusters run

        def once():
            images = S.open_tilt_series(store, "bench").data
            volume = backproject_graph(images, geometry, shape)
            S.write_volume(
                store,
                "bench",
                f"bp{n_workers}",
                volume,
                pixel_size_angstrom=1.0,
                provenance={"step": "bench"},
                multiscale=False,
                overwrite=True,
                compute=False,
            ).run(lambda tasks: client.gather(client.compute(tasks)))

        return best_of(once, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="31 tilts of 128^2 into 64 x 128^2")
    parser.add_argument("--no-cluster", action="store_true", help="skip the Dask/Zarr runs")
    parser.add_argument("--store-dir", default=None, help="where the benchmark's store goes")
    args = parser.parse_args()
    n, V, U, Z = SMALL if args.small else SIZE
    repeat = 3 if args.small else 2
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    angles = np.linspace(-60, 60, n)
    geometry = TiltGeometry.single_axis(angles)
    images = rng.random((n, V, U), dtype=np.float32)
    shape = (Z, V, U)
    updates = n * Z * V * U
    print(
        f"back-projection: {n} tilts of {V} x {U} into {Z} x {V} x {U} "
        f"({updates / 1e9:.2f} G voxel-updates); load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} cores (shared machine)"
    )
    rates: dict[str, float] = {}
    rates["kernel, whole volume, 1 core"] = updates / best_of(
        lambda: kernel_whole(images, geometry, shape), repeat
    )
    volume = kernel_whole(images, geometry, shape)
    rates["kernel, block by block, 1 core"] = updates / best_of(
        lambda: kernel_blocks(images, geometry, shape), repeat
    )
    n_slices = V if args.small else 4
    rates["skimage iradon(filter_name=None), 1 core"] = skimage_rate(images, angles, n_slices)
    astra = astra_rate(images, angles, n_slices if args.small else 16)
    if astra is not None:
        rates["ASTRA CPU BP (linear), 1 core"] = astra
    if not args.no_cluster:
        from cryoflow.io import store as S

        with tempfile.TemporaryDirectory(dir=args.store_dir) as tmp:
            rates["store alone: encode + write the volume, no Dask, 1 core"] = updates / best_of(
                lambda: store_write(Path(tmp) / "io.zarr", volume), repeat
            )
            store = Path(tmp) / "bench.zarr"
            S.create_dataset(store)
            S.write_tilt_series(store, "bench", images, geometry, 1.0)
            for w in (1, 2):
                rates[f"end to end, Dask + Zarr, {w} worker(s)"] = updates / end_to_end(
                    store, geometry, shape, w, repeat
                )
    width = max(len(k) for k in rates)
    for k, v in rates.items():
        print(f"  {k:<{width}}  {v / 1e9:8.3f} G voxel-updates/s  ({updates / v:6.2f} s)")
    kernel = max(rates["kernel, whole volume, 1 core"], rates["kernel, block by block, 1 core"])
    peer = rates["skimage iradon(filter_name=None), 1 core"]
    print("ratios (targets in brackets):")
    print(f"  kernel / skimage, per core           {kernel / peer:8.1f}  [>= 30]")
    if astra is not None:
        print(f"  kernel / ASTRA CPU, per core         {kernel / astra:8.1f}")
    if not args.no_cluster:
        from _concurrent import concurrent_speedup

        ceiling = concurrent_speedup(partial(_plain_setup, args.small), _plain_run, 2, repeat)
        one = rates["end to end, Dask + Zarr, 1 worker(s)"]
        two = rates["end to end, Dask + Zarr, 2 worker(s)"]
        print(f"  end to end 1 worker / kernel         {one / kernel:8.2f}  [>= 0.5]")
        print(f"  2 workers / 1 worker                 {two / one:8.2f}  [>= 1.8]")
        print(
            f"  2 plain processes / 1, the kernel alone (no Dask) {ceiling:5.2f}  (this machine's"
        )
        print("   ceiling for the ratio above: the same kernel run twice at once, block by block)")
        serial = 1 / (
            1 / kernel + 1 / rates["store alone: encode + write the volume, no Dask, 1 core"]
        )
        print(f"  end to end 1 worker / (kernel + store, in series, no Dask) {one / serial:6.2f}")
        print(
            f"  (kernel + store, in series) / kernel  {serial / kernel:8.2f}  (the ceiling of the"
        )
        print("   first ratio for a single-threaded worker that writes what it computes)")


if __name__ == "__main__":
    main()
