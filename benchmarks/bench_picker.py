"""Picking page: time to the first slice and per slice change, against a plain Zarr read.

A tomogram of ``--shape Z Y X`` (default 300 x 1024 x 1024, float32 noise with its pyramid) is
written to a temporary store, ``cryoflow picker`` is started on it (a real process, through
the CLI), and over HTTP, as the page asks:

- ``first slice``: the tomogram table, then the middle XY slice for a 1000 x 800 view (from
  the finest level that fits, contrast window included), on a freshly started server;
- ``slice change``: the next ``--steps`` z slices one after another (the page's arrow key);
- the same at zoom 2 (a finer level), and the XZ view.

The reference, measured in the same run: reading the same planes straight from the level's
Zarr array (``zarr.open_array(...)[z]``), no server, no PNG. ``ratio`` = served / plain.

Run: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/bench_picker.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dask.array as da
import numpy as np
import zarr

from cryoflow.io import store as S

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.picker.conftest import start_server, stop_server  # noqa: E402


def _get(base: str, token: str, path: str) -> tuple[bytes, dict[str, str]]:
    req = urllib.request.Request(base + path, headers={"X-Cryoflow-Token": token})
    with urllib.request.urlopen(req, timeout=300) as r:
        return r.read(), dict(r.headers)


def _timed(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(300, 1024, 1024))
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    Z, Y, X = args.shape
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "bench.zarr"
        t = time.perf_counter()
        vol = da.random.RandomState(0).standard_normal((Z, Y, X), chunks=128).astype(np.float32)
        S.write_volume(store, "tomo", "tomogram", vol, pixel_size_angstrom=10.0, provenance={})
        print(f"store written: {Z} x {Y} x {X} float32 in {time.perf_counter() - t:.1f} s")

        proc, srv = start_server(store)
        try:
            rows = []
            z0 = Z // 2

            def view(axis: str, index: int, w: int, h: int) -> dict[str, str]:
                q = f"tomogram=tomo&axis={axis}&index={index}&fit_w={w}&fit_h={h}"
                return _get(srv.base, srv.token, f"/api/slice?{q}")[1]

            def plain(level: int, axis: str, index: int) -> None:
                arr = zarr.open_array(store / "tomograms/tomo/volumes/tomogram" / str(level))
                k = index // 2**level
                _ = arr[k] if axis == "z" else arr[:, k]

            def both(level: int, axis: str, index: int, w: int, h: int) -> tuple[float, float]:
                t = time.perf_counter()
                view(axis, index, w, h)
                served = time.perf_counter() - t
                t = time.perf_counter()
                plain(level, axis, index)
                return served, time.perf_counter() - t

            t = time.perf_counter()
            _get(srv.base, srv.token, "/api/tomograms")
            level = int(view("z", z0, 1000, 800)["x-cryoflow-level"])
            t_first = time.perf_counter() - t
            t = time.perf_counter()
            plain(level, "z", z0)
            rows.append((f"first slice (level {level})", t_first, time.perf_counter() - t))
            views = (
                ("z", 1000, 800, "slice change"),
                ("z", 2000, 1600, "slice change, zoom 2"),
                ("y", 1000, 800, "XZ slice change"),
            )
            for axis, w, h, label in views:
                level = int(view(axis, z0 if axis == "z" else Y // 2, w, h)["x-cryoflow-level"])
                n = Y if axis == "y" else Z
                times = [
                    both(level, axis, min(n - 1, n // 2 + 1 + i), w, h) for i in range(args.steps)
                ]
                served, ref = zip(*times, strict=True)
                name = f"{label} (level {level})"
                rows.append((f"{name}, median", statistics.median(served), statistics.median(ref)))
                rows.append((f"{name}, max", max(served), max(ref)))
            level = int(view("z", z0, 1000, 800)["x-cryoflow-level"])
            jump = both(level, "z", Z - 1, 1000, 800)  # the last chunk slab, not read yet
            rows.append((f"jump to another chunk slab (level {level})", *jump))
        finally:
            stop_server(proc)
    print(f"{'':42s} {'served ms':>10s} {'plain zarr ms':>14s} {'ratio':>6s}")
    for label, a, b in rows:
        print(f"{label:42s} {a * 1e3:10.1f} {b * 1e3:14.1f} {a / b:6.2f}")
    print(json.dumps({label: round(a * 1e3, 1) for label, a, _ in rows}))


if __name__ == "__main__":
    main()
