"""Classification rounds per second on a particle set, 2 workers vs 1, against the ceiling.

Writes ``--n`` particles (two hinge conformations, 24^3, true poses; ``--simulate`` of
them simulated, repeated ``n / simulate`` times, since simulating is slow and the work per
particle does not depend on which particles they are) as a particle set, then runs ``cryoflow classify``'s rounds (``multiref``, random seeds, so the
rounds are: consensus, class sums, ``--iterations`` classification rounds with no early stop)
through the stage's Python entry on a ``LocalCluster`` of 1 and of 2 worker processes (one
thread each). Prints rounds per second for each, their ratio, and the ceiling: the same batch
work (``classify_batch`` on one batch) in 1 and in 2 plain processes at once
(``benchmarks/_concurrent.py``), measured in the same run; the figure is
``(2-worker speed-up) / ceiling``. Also the peak resident memory (VmHWM) of the workers, and
of one worker classifying (3 rounds: consensus, class sums, one classification round) the set
and a set of ``--memory-factor`` times as many particles (the same stack repeated: what a
worker holds does not depend on which particles they are); flat is the target. Box 24^3.

Run: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/bench_classify.py --n 1000``
(from the repository root or ``benchmarks/``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._concurrent import concurrent_speedup  # noqa: E402


def _setup() -> Any:
    from cryoflow.kernels.fsc import lowpass
    from cryoflow.kernels.heterogeneity.multiref import ClassReferences
    from cryoflow.kernels.masks import spherical_mask
    from tests.pipelines.stages.heterogeneity_phantoms import BOX, two_state_phantom

    sim = two_state_phantom(16, seed=9)
    refs = ClassReferences(
        np.stack([lowpass(t, 4.0) for t in sim.truth]), spherical_mask(BOX, 8.0, 2.0), 4.0
    )
    return sim, refs


def _work(state: Any) -> None:
    from cryoflow.kernels.align import SearchParams
    from cryoflow.kernels.heterogeneity.multiref import classify_batch

    sim, refs = state
    classify_batch(
        sim.volumes,
        sim.tilt_ranges,
        refs,
        SearchParams(None, (), 3.0),
        euler_deg=sim.euler_deg,
        shifts_zyx_px=sim.shifts_zyx_px,
        half_ids=np.arange(len(sim.volumes)) % 2,
    )


def _run(store: str, set_name: str, workers: int, seed: int, iterations: int, out: Path):
    """Seconds of ``cryoflow classify``'s Python entry on ``workers`` workers, and their peak
    resident memory (MiB, the largest of the workers)."""
    from _clusters import local_cluster, peak_rss_mib, reset_peak_rss

    from cryoflow.pipelines.stages.classify import ClassifyParams, classify

    params = ClassifyParams(
        set=set_name,
        classes=2,
        seed_method="random",
        iterations=iterations,
        tolerance=0.0,
        seed=seed,
        batch_size=16,
    )
    with local_cluster(workers) as client:
        client.run(reset_peak_rss)
        t0 = time.perf_counter()
        classify(client, store, params, out / f"{set_name}-w{workers}-s{seed}")
        seconds = time.perf_counter() - t0
        return seconds, max(client.run(peak_rss_mib).values())


def main() -> None:
    from bench_average import tiled_set

    from tests.pipelines.stages.heterogeneity_phantoms import two_state_phantom, write_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--simulate", type=int, default=200, help="distinct particles simulated")
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--memory-factor", type=int, default=4, help="the larger set: N x this")
    a = ap.parse_args()
    rounds = 2 + a.iterations
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = str(root / "b.zarr")
        t0 = time.perf_counter()
        write_set(root / "b.zarr", "base", two_state_phantom(a.simulate, seed=4))
        tiled_set(root / "b.zarr", "base", "bench", a.n // a.simulate)
        tiled_set(root / "b.zarr", "base", "big", a.memory_factor * a.n // a.simulate)
        sim_s = time.perf_counter() - t0
        one, mem_one = _run(store, "bench", 1, 1, a.iterations, root)
        print(f"1 worker: {one:.1f} s, {mem_one:.0f} MiB", file=sys.stderr, flush=True)
        two, mem_two = _run(store, "bench", 2, 2, a.iterations, root)
        print(f"2 workers: {two:.1f} s, {mem_two:.0f} MiB", file=sys.stderr, flush=True)
        # peak memory of one worker, N vs factor x N particles, one classification round
        _, mem_small = _run(store, "bench", 1, 3, 1, root)
        print(f"memory, {a.n}: {mem_small:.0f} MiB", file=sys.stderr, flush=True)
        _, mem_big = _run(store, "big", 1, 3, 1, root)
    ceiling = concurrent_speedup(_setup, _work, n=2, repeat=2)
    speedup = one / two
    print(
        json.dumps(
            {
                "n": a.n,
                "simulated": a.simulate,
                "box": 24,
                "rounds": rounds,
                "simulate_seconds": round(sim_s, 1),
                "rounds_per_s_1_worker": round(rounds / one, 4),
                "rounds_per_s_2_workers": round(rounds / two, 4),
                "speedup_2_vs_1": round(speedup, 3),
                "ceiling_2_processes": round(ceiling, 3),
                "fraction_of_ceiling": round(speedup / ceiling, 3),
                "peak_worker_mib_1_worker": round(mem_one),
                "peak_worker_mib_2_workers": round(mem_two),
                f"peak_worker_mib_{a.n}_particles_3_rounds": round(mem_small),
                f"peak_worker_mib_{a.n * a.memory_factor}_particles_3_rounds": round(mem_big),
                "memory_ratio": round(mem_big / mem_small, 3),
                "load_average": round(os.getloadavg()[0], 2),
                "note": "machine shared with other users",
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
