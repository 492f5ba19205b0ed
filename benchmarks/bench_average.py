"""Averaging rounds: 2 workers vs 1 against the 2-process ceiling; worker memory, 1k vs 10k.

Data: ``--simulate`` ribosome-like phantom particles (``--box``^3, 18 Å voxels, two
tomograms and tilt ranges; ``tests/pipelines/stages/_average_phantoms.py``), written as a
particle set of ``--n`` particles (that stack repeated ``n / simulate`` times: simulating is
slow, and the work per particle does not depend on which particles they are), and one of
``10 --n`` the same way.

Measured in one run, through the stage's own plan (:func:`cryoflow.pipelines.stages.average.
plan`, template-free) run by the rounds engine (``run_rounds``) on a real LocalCluster of
single-threaded worker processes:

* **rounds, 1 and 2 workers** (``--n-rounds`` particles, a set made the same way): seconds of round 1 (particles in random
  orientations, summed: read + wedge-weighted Fourier insertion) and of round 2 (a global
  search at ``--global-step`` degrees, then the sums); the speed-up of each;
* **ceiling**: one batch of round 3's work (``AverageBatch`` on ``--batch-size`` particles: a
  global search and the sums) in two plain processes at once over one (``_concurrent.py``);
* **memory**: peak resident memory (VmHWM) of one worker over round 1 for ``--n`` and for
  ``10 --n`` particles (flat is the target).

Usage: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/bench_average.py [--n 1024]
[--n-rounds 256] [--simulate 64] [--box 24] [--global-step 60] [--batch-size 32]``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def tiled_set(store: Path, source: str, name: str, times: int) -> None:
    """Set ``name``: set ``source``'s stack and table ``times`` times over."""
    from cryoflow.io.particleset import open_particles, read_particle_table, write_particle_set
    from cryoflow.io.provenance import make_provenance

    arr = open_particles(store, source).data  # lazy (n, B, B, B), one block per stored chunk
    table = read_particle_table(store, source).reset_index(drop=True)
    stack = da.concatenate([arr] * times).rechunk({0: arr.chunks[0][0]})  # one batch size
    big = pd.concat([table] * times, ignore_index=True)
    big["input_index"] = np.arange(len(big), dtype=np.int64)
    write_particle_set(store, name, big, stack, provenance=make_provenance("extract", {}))


def _params(set_name: str, args: argparse.Namespace, seed: int = 0):
    """The stage's parameters (each ``seed`` its own run: a finished run is not redone)."""
    from cryoflow.pipelines.stages.average import AverageParams

    return AverageParams(
        seed=seed,
        set=set_name,
        iterations=1,
        initial_rounds=1,
        global_step=args.global_step,
        max_shift=2.0,
        top_k=2,
        batch_size=args.batch_size,
    )


def timed_rounds(client, store: Path, set_name: str, rounds: int, args, seed: int):
    """Seconds of each of the first ``rounds`` rounds of averaging set ``set_name``, and the
    plan (its ``rounds`` cut to ``rounds``)."""
    from cryoflow.pipelines.engine.rounds import run_rounds
    from cryoflow.pipelines.stages.average import plan

    params = _params(set_name, args, seed)
    p = dataclasses.replace(plan(store, [], params), rounds=rounds)
    marks = [time.perf_counter()]
    run_rounds(
        client, store, p, params.to_dict(), on_round=lambda k: marks.append(time.perf_counter())
    )
    return list(np.diff(marks)), p


def _setup(path: str):
    with open(path, "rb") as f:
        return pickle.load(f)


def _work(state) -> None:
    batch, round_state, size = state
    batch(round_state, 0, size)


def main() -> None:
    from functools import partial

    from _clusters import local_cluster, peak_rss_mib, reset_peak_rss
    from _concurrent import concurrent_speedup

    from cryoflow.pipelines.stages.average_files import published_state
    from tests.pipelines.stages._average_phantoms import write_phantom_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="memory: N vs 10 N particles")
    ap.add_argument("--n-rounds", type=int, default=256, help="particles of the 2-vs-1 rounds")
    ap.add_argument("--simulate", type=int, default=64, help="distinct particles simulated")
    ap.add_argument("--box", type=int, default=24)
    ap.add_argument("--global-step", type=float, default=60.0)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = write_phantom_set(Path(tmp), n=args.simulate, box=args.box, name="base").store
        tiled_set(store, "base", "rounds", args.n_rounds // args.simulate)
        tiled_set(store, "base", "small", args.n // args.simulate)
        tiled_set(store, "base", "big", 10 * args.n // args.simulate)
        sim_s = time.perf_counter() - t0
        # 1. rounds 1-2 of the small set on 1 and on 2 workers
        secs = {}
        for workers in (1, 2):
            with local_cluster(workers) as client:
                secs[workers], p = timed_rounds(client, store, "rounds", 2, args, seed=workers)
            if workers == 1:  # the ceiling's work: one batch of round 3, from round 2's state
                ceiling_file = Path(tmp) / "ceiling.pkl"
                state = published_state(store, p)
                ceiling_file.write_bytes(pickle.dumps((p.map, state, args.batch_size)))
        # 2. peak worker memory over round 1, N and 10 N particles (a fresh worker each)
        peaks = {}
        for name in ("small", "big"):
            with local_cluster(1) as client:
                client.run(reset_peak_rss)
                timed_rounds(client, store, name, 1, args, seed=7)
                peaks[name] = max(client.run(peak_rss_mib).values())
        # 3. the machine's ceiling for 2 processes
        ceiling = concurrent_speedup(partial(_setup, str(ceiling_file)), _work, 2, 1)
    one, two = secs[1], secs[2]
    print(
        f"averaging: {args.n_rounds} particles {args.box}^3 ({args.simulate} simulated, sets "
        f"written in {sim_s:.0f} s), batch "
        f"{args.batch_size}, global step {args.global_step:g} deg; load average "
        f"{os.getloadavg()[0]:.2f} (machine shared with other users)"
    )
    for k, what in enumerate(("round 1 (random orientations, sums)", "round 2 (global search)")):
        print(
            f"{what:38s}: 1 worker {one[k]:7.1f} s, 2 workers {two[k]:7.1f} s "
            f"({one[k] / two[k]:.2f}x; {one[k] / two[k] / ceiling:.2f} of the ceiling)"
        )
    print(f"2 plain processes at once / 1 (one batch of a search round): {ceiling:.2f}x")
    print(
        f"peak worker memory, round 1: {args.n} particles {peaks['small']:.0f} MiB, "
        f"{10 * args.n} particles {peaks['big']:.0f} MiB ({peaks['big'] / peaks['small']:.2f}x)"
    )


if __name__ == "__main__":
    main()
