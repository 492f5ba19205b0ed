"""Picking apply: tomograms per second on 1 and 2 workers, against the 2-process ceiling.

Data: ``--tomograms`` stored volumes ``(Z, Y, X)`` of ``--shape`` (smoothed noise with dense
balls of the particle's size, 8 voxels, 10 Å voxels) in a cryoflow store. The picker is
trained once beforehand on ``--examples`` balls of the first tomogram and saved as a
checkpoint. Its descriptors default to ``--shells 4 --degree 3`` (the tests' size, about
4.6x cheaper than the stage's default 6 x 6, so that a run fits a few minutes on a shared
2-core machine; pass ``--shells 6 --degree 6`` for the default network). The head's training
is shortened, which does not change the cost of applying it.

Measured in one run (best of ``--repeats`` after a warm-up pass that loads the network on the
workers):

* **apply, 1 and 2 workers**: what :func:`cryoflow.pipelines.stages.pick.find_particles` does
  after training -- the network registered on the workers (``ModelPlugin``), each tomogram's
  statistics, its score map block by block (:func:`cryoflow.graph.pick.score_map`, ``--block``)
  and its picks (:func:`cryoflow.graph.pick.picks_lazy`) -- on a real LocalCluster of
  single-threaded worker processes; tomograms per second;
* **ceiling**: the score tasks' own work (``PickNet.score_block`` on blocks of the tomogram
  with their halo) in two plain processes at once over one (``_concurrent.py``);
* **memory**: peak resident memory (VmHWM) of the workers during the apply.

Usage: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/bench_pick.py [--tomograms 4]
[--shape 32 64 64] [--block 32] [--shells 4] [--degree 3] [--repeats 1]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from cryoflow.io import store as S  # noqa: E402

DIAMETER_PX = 8.0


def make_volume(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed noise with bright balls of ``DIAMETER_PX``; returns (volume, ball centres xyz)."""
    rng = np.random.default_rng(seed)
    vol = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), 1.0)
    n = int(np.prod(shape) / 6000)
    zyx = rng.uniform(6, np.array(shape) - 6, size=(n, 3))
    grid = np.indices(shape, sparse=True)
    for c in zyx:
        r2 = sum((g - v) ** 2 for g, v in zip(grid, c, strict=True))
        vol += 0.6 * np.exp(-r2 / (2 * (DIAMETER_PX / 4) ** 2)).astype(np.float32)
    return vol, zyx[:, ::-1]


def train(
    store: Path, directory: Path, marks_xyz: np.ndarray, n_examples: int, shells: int, degree: int
) -> None:
    """The picker trained on the first tomogram's first ``n_examples`` balls, saved."""
    from cryoflow.models.checkpoint import save_checkpoint
    from cryoflow.models.picktrain import PickExamples, PickTrainParams, train_picker

    vol = S.open_volume(store, "t0", "tomogram").values
    params = PickTrainParams(
        level=0, shells=shells, degree=degree, steps=200, n_random_negatives=2000, seed=0
    )
    model, config = train_picker(
        {"t0": vol},
        [PickExamples("t0", marks_xyz[:n_examples])],
        params,
        level=0,
        pixel_size_angstrom=10.0,
        diameter_px=DIAMETER_PX,
        polarity=1.0,
    )
    save_checkpoint(directory, model, config)


def apply_rate(client, store: Path, names: list[str], directory: Path, block: int, repeats: int):
    """Tomograms per second of the apply on ``client`` (best of ``repeats``, after a warm-up)."""
    from cryoflow.graph.pick import picks_lazy, score_map, volume_stats
    from cryoflow.models.checkpoint import read_config
    from cryoflow.models.loader import ModelHandle, ModelPlugin

    handle = ModelHandle.from_directory(directory, device="cpu")
    config = read_config(directory)
    client.register_plugin(ModelPlugin(handle), name=handle.plugin_name)
    best, n_picks = np.inf, 0
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        vols = {n: S.open_volume(store, n, "tomogram") for n in names}
        stats = client.gather(client.compute([volume_stats(v) for v in vols.values()]))
        parts = [
            picks_lazy(
                score_map(v, handle, mean=float(m), std=float(s), block=block, config=config,
                          label=f"pick{r}-{n}"),
                config, n,
            )
            for (n, v), (m, s) in zip(vols.items(), stats, strict=True)
        ]  # fmt: skip
        tables = client.gather(client.compute(parts, optimize_graph=False))
        if r:
            best = min(best, time.perf_counter() - t0)
        n_picks = sum(len(t) for t in tables)
    return len(names) / best, n_picks


def _setup(directory: str, store: str, block: int):
    """A plain process's state: the network and the first tomogram's blocks with their halo."""
    from cryoflow.kernels.invariants import halo
    from cryoflow.models.checkpoint import load_checkpoint
    from cryoflow.models.picknet import invariant_spec

    model, config, _ = load_checkpoint(directory)
    vol = S.open_volume(store, "t0", "tomogram").values
    vol = (vol - vol.mean()) / vol.std()
    h = halo(invariant_spec(config.spec))
    padded = np.pad(vol, h)
    blocks = [
        padded[z : z + block + 2 * h, y : y + block + 2 * h, x : x + block + 2 * h]
        for z in range(0, vol.shape[0], block)
        for y in range(0, vol.shape[1], block)
        for x in range(0, vol.shape[2], block)
    ][:2]
    return model, blocks


def _work(state) -> None:
    model, blocks = state
    for b in blocks:
        model.score_block(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tomograms", type=int, default=4)
    ap.add_argument("--shape", type=int, nargs=3, default=(32, 64, 64))
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--shells", type=int, default=4)
    ap.add_argument("--degree", type=int, default=3)
    ap.add_argument("--examples", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    import torch
    from _clusters import local_cluster, peak_rss_mib, reset_peak_rss
    from _concurrent import concurrent_speedup

    torch.set_num_threads(1)
    shape = tuple(args.shape)
    with tempfile.TemporaryDirectory() as tmp:
        store, ckpt = Path(tmp) / "bench.zarr", Path(tmp) / "picker"
        names = [f"t{i}" for i in range(args.tomograms)]
        for i, n in enumerate(names):
            vol, marks = make_volume(shape, i)
            S.write_volume(store, n, "tomogram", vol, pixel_size_angstrom=10.0,
                           provenance={"step": "bench"}, multiscale=False)  # fmt: skip
            if i == 0:
                first_marks = marks
        t0 = time.perf_counter()
        train(store, ckpt, first_marks, args.examples, args.shells, args.degree)
        train_s = time.perf_counter() - t0
        rates, peaks = {}, {}
        for workers in (1, 2):
            with local_cluster(workers) as client:
                client.run(reset_peak_rss)
                rates[workers], n_picks = apply_rate(
                    client, store, names, ckpt, args.block, args.repeats
                )
                peaks[workers] = max(client.run(peak_rss_mib).values())
        ceiling = concurrent_speedup(
            partial(_setup, str(ckpt), str(store), args.block), _work, 2, args.repeats
        )
    one, two = rates[1], rates[2]
    print(
        f"picking apply: {args.tomograms} tomograms {shape}, block {args.block}, particle "
        f"{DIAMETER_PX:g} voxels, descriptors {args.shells} shells x degree {args.degree}, "
        f"{n_picks} picks, training {train_s:.0f} s (not timed below); load average "
        f"{os.getloadavg()[0]:.2f} (machine shared with other users)"
    )
    print(f"apply, 1 worker                : {one:8.3f} tomograms/s")
    print(f"apply, 2 workers               : {two:8.3f} tomograms/s  ({two / one:.2f}x 1 worker)")
    print(
        f"2 plain processes at once / 1  : {ceiling:.2f}x (this machine's ceiling); 2 workers "
        f"reach {two / one / ceiling:.2f} of it (target >= 0.85)"
    )
    print(
        f"peak worker memory             : 1 worker {peaks[1]:.0f} MiB, 2 workers {peaks[2]:.0f} MiB"
    )


if __name__ == "__main__":
    main()
