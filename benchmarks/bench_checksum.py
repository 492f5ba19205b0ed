"""What the CRC-32C chunk checksum costs: writing and reading with and without it.

Writes the same arrays into Zarr v3 stores with cryoflow's codec chain (Blosc/zstd level 1,
bit shuffle, 1 MiB blocks) with and without the trailing ``crc32c`` codec, then reads them
back, in one process. Prints CPU milliseconds per chunk (``time.process_time``: on a shared
machine wall time mostly measures the neighbours) and the ratio ``with / without`` for: float32
noise (a tilt image or tomogram), a smooth float32 volume and a uint8 label volume, each as
128^3 chunks. ``--store memory`` (default) leaves the disk out; ``--store local`` includes it.

    nice -n 10 python benchmarks/bench_checksum.py [--side 256] [--repeats 5] [--store local]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from cryoflow.io.layout import BLOSC


def _arrays(side: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, side, dtype=np.float32),) * 3, indexing="ij")
    smooth = np.exp(-(x**2 + y**2 + z**2) * 4).astype(np.float32)
    return {
        "float32 noise": rng.normal(size=(side,) * 3).astype(np.float32),
        "float32 smooth": smooth,
        "uint8 labels": (smooth > 0.3).astype(np.uint8) + (smooth > 0.7),
    }


def _time(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--store", choices=("memory", "local"), default="memory")
    args = parser.parse_args()
    zarr.config.set({"async.concurrency": 1, "threading.max_workers": 1})
    chains = {"blosc": (BLOSC,), "blosc+crc32c": (BLOSC, Crc32cCodec())}
    n_chunks = (args.side // 128) ** 3
    print(
        f"{n_chunks} chunks of 128^3 per array, {args.store} store; best of {args.repeats}; "
        "CPU ms per chunk"
    )
    print(
        f"{'data':16s} {'write':>8s} {'+crc':>8s} {'ratio':>6s} {'read':>8s} {'+crc':>8s} {'ratio':>6s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for label, data in _arrays(args.side).items():
            times: dict[str, tuple[float, float]] = {}
            for cname, chain in chains.items():
                path = Path(tmp) / f"{label.replace(' ', '_')}-{cname}.zarr"

                where = str(path) if args.store == "local" else zarr.storage.MemoryStore()
                arr = zarr.create_array(
                    where,
                    shape=data.shape,
                    dtype=data.dtype,
                    chunks=(128,) * 3,
                    compressors=chain,
                    fill_value=0,
                    overwrite=True,
                )
                write = _time(
                    lambda arr=arr, data=data: arr.__setitem__(Ellipsis, data), args.repeats
                )
                read = _time(lambda arr=arr: arr[...], args.repeats)
                np.testing.assert_array_equal(arr[...], data)
                times[cname] = (write / n_chunks, read / n_chunks)
            (w0, r0), (w1, r1) = times["blosc"], times["blosc+crc32c"]
            print(
                f"{label:16s} {w0 * 1e3:7.2f}m {w1 * 1e3:7.2f}m {w1 / w0:6.3f} "
                f"{r0 * 1e3:7.2f}m {r1 * 1e3:7.2f}m {r1 / r0:6.3f}"
            )


if __name__ == "__main__":
    main()
