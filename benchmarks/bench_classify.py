"""Classification rounds per second on a particle set, 2 workers vs 1, against the ceiling.

Writes ``--n`` simulated particles (two hinge conformations, ``--box``^3, true poses) as a
particle set, then runs ``cryoflow classify``'s rounds (``multiref``, random seeds, so the
rounds are: consensus, class sums, ``--iterations`` classification rounds with no early stop)
through the stage's Python entry on a ``LocalCluster`` of 1 and of 2 worker processes (one
thread each). Prints rounds per second for each, their ratio, and the ceiling: the same batch
work (``classify_batch`` on one batch) in 1 and in 2 plain processes at once
(``benchmarks/_concurrent.py``), measured in the same run; the figure is
``(2-worker speed-up) / ceiling``.

Run: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/bench_classify.py --n 1000``.
"""

from __future__ import annotations

import argparse
import json
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


def _run(store: str, workers: int, seed: int, iterations: int, out: Path) -> float:
    from distributed import Client, LocalCluster

    from cryoflow.pipelines.stages.classify import ClassifyParams, classify

    params = ClassifyParams(
        set="bench",
        classes=2,
        seed_method="random",
        iterations=iterations,
        tolerance=0.0,
        seed=seed,
        batch_size=16,
    )
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        classify(client, store, params, out / f"w{workers}")
        return time.perf_counter() - t0


def main() -> None:
    from tests.pipelines.stages.heterogeneity_phantoms import two_state_phantom, write_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--iterations", type=int, default=2)
    a = ap.parse_args()
    rounds = 2 + a.iterations
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_set(root / "b.zarr", "bench", two_state_phantom(a.n, seed=4))
        sim_s = time.perf_counter() - t0
        one = _run(str(root / "b.zarr"), 1, 1, a.iterations, root)
        two = _run(str(root / "b.zarr"), 2, 2, a.iterations, root)
    ceiling = concurrent_speedup(_setup, _work, n=2, repeat=2)
    speedup = one / two
    print(
        json.dumps(
            {
                "n": a.n,
                "rounds": rounds,
                "simulate_seconds": round(sim_s, 1),
                "rounds_per_s_1_worker": round(rounds / one, 4),
                "rounds_per_s_2_workers": round(rounds / two, 4),
                "speedup_2_vs_1": round(speedup, 3),
                "ceiling_2_processes": round(ceiling, 3),
                "fraction_of_ceiling": round(speedup / ceiling, 3),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
