"""The demo's pick stage alone: its wall time, where it goes, and its figures against the peer.

Builds the demo's crowded store (:mod:`cryoflow.simulate.crowded` with the demo preset's
``_CROWDED`` sizes, ``n_tomograms`` tomograms seeded ``seed * 1000 + i`` as the demo seeds
them), marks ``n_examples`` targets of the first as the demo does, and runs the pick stage
(:func:`cryoflow.pipelines.stages.pick.run`, the demo preset's ``_PICK`` settings, the
simulator's diameter) on a real LocalCluster of ``--workers`` single-threaded processes (the
demo's default cluster shape). Printed:

* the stage's wall time, and its training time (from the saved checkpoint's metrics) and the
  rest (apply: score map and peaks on the cluster);
* ``pick_f1``, precision, recall within the preset's tolerance against every target, picks on
  decoys; the blob detector peer (:mod:`cryoflow.kernels.blob_peer`) in the same run at its
  best threshold (chosen on the truth: an upper bound) and at the examples' threshold;
* the load average before and after (``os.getloadavg``).

Usage: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/bench_pick_stage.py [--seed 0]
[--workers 2] [--quick]`` (``--quick``: the quick demo's sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from cryoflow.io.particles import read_particles, write_particles
from cryoflow.kernels.blob_peer import blob_f1, blob_peaks
from cryoflow.kernels.match import match_picks
from cryoflow.pipelines.demo.presets import resolve_preset
from cryoflow.pipelines.stages import pick
from cryoflow.pipelines.stages.eager import Target
from cryoflow.pipelines.stages.extract import tomogram_infos
from cryoflow.simulate.crowded import CrowdedConfig, simulate_crowded
from cryoflow.simulate.crowded_store import example_marks, target_xyz, write_crowded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], help="extra pick settings KEY=JSON")
    args = ap.parse_args()
    p = resolve_preset("demo", args.quick).particles
    extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    t0 = time.perf_counter()
    tomos = [
        simulate_crowded(CrowdedConfig(**p.crowded, seed=args.seed * 1000 + i))
        for i in range(p.n_tomograms)
    ]
    print(f"simulated {len(tomos)} x {tomos[0].config.shape} in {time.perf_counter() - t0:.0f} s")
    cfg = tomos[0].config
    with tempfile.TemporaryDirectory() as d:
        store = str(Path(d) / "demo.zarr")
        names = [f"crowded{i}" for i in range(len(tomos))]
        for n, t in zip(names, tomos, strict=True):
            write_crowded(store, n, t)
        targets = {n: target_xyz(t.truth) for n, t in zip(names, tomos, strict=True)}
        decoys = {n: target_xyz(t.truth, "decoy") for n, t in zip(names, tomos, strict=True)}
        examples = example_marks(names[0], targets[names[0]], p.n_examples, args.seed + 1000)
        ex_file = write_particles(Path(d) / "examples.csv", examples)
        kw = {"diameter_angstrom": cfg.diameter_angstrom, "seed": args.seed, **p.pick, **extra}
        params = pick.PickParams(
            examples=str(ex_file), out=str(Path(d) / "picks.star"), save_model=f"{d}/m", **kw
        )
        from _clusters import local_cluster

        with local_cluster(args.workers) as client:
            load0 = os.getloadavg()
            t1 = time.perf_counter()
            pick.run(client, Target(store, tuple(names), overwrite=True, quiet=True), params)
            wall = time.perf_counter() - t1
            load1 = os.getloadavg()
            print(
                f"pick stage wall {wall:.1f} s (load {load0[0]:.2f} -> {load1[0]:.2f})", flush=True
            )
        metrics = json.loads((Path(d) / "m" / "model.json").read_text())["metrics"]
        picks = read_particles(params.out, tomograms=tomogram_infos(store, "tomogram"))
    tp = fp = fn = on_decoys = 0
    for n in names:
        got = picks[picks["tomogram"].astype(str) == n][["x", "y", "z"]].to_numpy(np.float64)
        s = match_picks(got, targets[n], p.tolerance_px)
        tp, fp, fn = tp + s.tp, fp + s.fp, fn + s.fn
        on_decoys += match_picks(got, decoys[n], p.tolerance_px).tp
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    peaks = {
        n: blob_peaks(t.tomogram, cfg.diameter_px, +1.0) for n, t in zip(names, tomos, strict=True)
    }
    ex_xyz = {names[0]: examples[["x", "y", "z"]].to_numpy(np.float64)}
    blob = blob_f1(peaks, targets, ex_xyz, p.tolerance_px)
    train_s = float(metrics.get("seconds", float("nan")))
    print(
        f"pick stage: {wall:.1f} s wall (train {train_s:.1f} s, apply + rest "
        f"{wall - train_s:.1f} s) on {args.workers} workers; load "
        f"{load0[0]:.2f} before, {load1[0]:.2f} after; settings {kw}"
    )
    print(
        f"picker: F1 {f1:.3f} (precision {tp / max(tp + fp, 1):.3f}, recall "
        f"{tp / max(tp + fn, 1):.3f}; {len(picks)} picks, {on_decoys} on decoys)"
    )
    print(
        f"blob peer: best-threshold F1 {blob['best_f1']:.3f}, "
        f"example-threshold F1 {blob['example_threshold_f1']:.3f}"
    )


if __name__ == "__main__":
    main()
