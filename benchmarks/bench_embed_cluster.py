"""Distributed embedding throughput of ``cryoflow embed`` (particles/s), 1 and 2 workers.

A particle set of ``--n`` hinge phantoms (box ``--box``) is written to a store in batches of
``--batch``; a network is trained for a few steps and checkpointed. Measured in the same run:

- ``plain``: a plain single-process torch loop over the same particles in memory (the same
  ``prepare_batch`` + ``encode`` under ``no_grad``, the network in memory);
- ``cluster_1w`` / ``cluster_2w``: the stage's embedding (one task per stored batch, reading
  its particles from the store, the network loaded once per worker by ``ModelPlugin``) on a
  ``LocalCluster`` of 1 and 2 worker processes (one thread each), after a warm-up pass;
- ``ceiling_2``: how much faster two plain loops run at once than one on this machine
  (``benchmarks/_concurrent.py``), the most 2 workers can reach;
- ``train_particles_per_s``: training (``train_embedding``, what the stage's training task runs)
  in one process, one thread.

Ratios: ``per_worker_1w = cluster_1w / plain`` (target >= 0.9) and ``two_over_ceiling =
(cluster_2w / cluster_1w) / ceiling_2`` (target >= 0.85).

Run: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/bench_embed_cluster.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_STATE: dict[str, str] = {}


def _plain_setup():  # type: ignore[no-untyped-def]
    import torch

    from cryoflow.models.embed import as_embedder
    from cryoflow.models.loader import ModelHandle

    torch.set_num_threads(1)
    d = np.load(Path(_STATE["dir"]) / "particles.npz")
    emb = as_embedder(ModelHandle.from_directory(Path(_STATE["dir"]) / "model"))
    return d, emb, int(_STATE["batch"])


def _plain_run(state) -> None:  # type: ignore[no-untyped-def]
    import torch

    from cryoflow.kernels.conformation_input import prepare_batch

    d, emb, batch = state
    arrays = (d["volumes"], d["euler"], d["shifts"], d["tilts"])
    with torch.no_grad():
        for s in range(0, len(arrays[0]), batch):
            p = prepare_batch(*(x[s : s + batch] for x in arrays), emb.frame, emb.model.average)
            emb.model.encode(p.inputs)


def _cluster_rate(store: Path, model: Path, workers: int, n: int) -> float:
    from cryoflow.io.particleset import open_particles, read_particle_table
    from cryoflow.pipelines.cluster.connect import ClusterConfig, connect
    from cryoflow.pipelines.stages.embed import _embed_all
    from cryoflow.pipelines.stages.embed_inputs import set_inputs

    stack = open_particles(store, "bench")
    table = read_particle_table(store, "bench")
    inputs = set_inputs(store, "bench", table, tuple(stack.data.chunks[0]), int(stack.shape[1]))
    blocks = list(stack.data.to_delayed().ravel())
    with connect(ClusterConfig(n_workers=workers, dashboard=False), quiet=True) as client:
        _embed_all(client, blocks, inputs, model, "cpu")  # warm-up: imports, first loads
        t = time.perf_counter()
        _embed_all(client, blocks, inputs, model, "cpu")
        return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--box", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    import dask.array as da
    import pandas as pd

    from cryoflow.io.particleset import write_particle_set
    from cryoflow.io.provenance import make_provenance
    from cryoflow.models.embed import save_embedding
    from cryoflow.models.embed_fit import fit_embedding
    from cryoflow.models.embed_train import EmbedTrainParams
    from cryoflow.simulate.subtomo import hinge_shape, simulate_subtomograms

    sim = simulate_subtomograms(
        [hinge_shape(-30.0), hinge_shape(30.0)], a.n, box=a.box, pixel_size_angstrom=10.0, seed=0
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        np.savez(
            d / "particles.npz",
            volumes=sim.volumes,
            euler=sim.euler_deg,
            shifts=sim.shifts_zyx_px,
            tilts=sim.tilt_ranges,
        )
        args = (sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges)
        trained, _ = fit_embedding(*args, EmbedTrainParams(steps=2), resolution_px=a.box / 8)
        save_embedding(d / "model", trained)
        rot, tilt, psi = sim.euler_deg.T
        sz, sy, sx = sim.shifts_zyx_px.T
        table = pd.DataFrame(
            {
                "tomogram": "t",
                "x": np.arange(a.n, dtype=float),
                "y": 0.0,
                "z": 0.0,
                "rot": rot,
                "tilt": tilt,
                "psi": psi,
                "origin_x_angstrom": -sx * 10.0,
                "origin_y_angstrom": -sy * 10.0,
                "origin_z_angstrom": -sz * 10.0,
                "tilt_min_deg": sim.tilt_ranges[:, 0],
                "tilt_max_deg": sim.tilt_ranges[:, 1],
                "pixel_size_angstrom": 10.0,
            }
        )
        stack = da.from_array(sim.volumes, chunks=(a.batch, a.box, a.box, a.box))
        write_particle_set(d / "s.zarr", "bench", table, stack, provenance=make_provenance("bench"))
        _STATE.update(dir=str(d), batch=str(a.batch))
        sys.path.insert(0, str(Path(__file__).parent))
        from _concurrent import concurrent_speedup

        state = _plain_setup()
        _plain_run(state)
        times = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            _plain_run(state)
            times.append(time.perf_counter() - t)
        plain = a.n / min(times)
        one = _cluster_rate(d / "s.zarr", d / "model", 1, a.n)
        two = _cluster_rate(d / "s.zarr", d / "model", 2, a.n)
        ceiling = concurrent_speedup(_ceiling_setup(d, a.batch), _plain_run, 2, a.repeats)
        train = _train_rate(trained, a.train_steps)
    out = {
        "n": a.n,
        "box": a.box,
        "work_box": trained.frame.work_box,
        "batch": a.batch,
        "plain_per_s": plain,
        "cluster_1w_per_s": one,
        "cluster_2w_per_s": two,
        "per_worker_1w": one / plain,
        "speedup_2w": two / one,
        "ceiling_2": ceiling,
        "two_over_ceiling": (two / one) / ceiling,
        "train_particles_per_s": train,
    }
    print(json.dumps(out, indent=1))


def _ceiling_setup(d: Path, batch: int):  # type: ignore[no-untyped-def]
    import functools

    return functools.partial(_setup_in_child, str(d), batch)


def _setup_in_child(d: str, batch: int):  # type: ignore[no-untyped-def]
    _STATE.update(dir=d, batch=str(batch))
    return _plain_setup()


def _train_rate(trained, steps: int) -> float:  # type: ignore[no-untyped-def]
    """Particles per second of the stage's training task on one worker (prepared inputs)."""
    import torch

    from cryoflow.models.embed_train import EmbedTrainParams, train_embedding

    torch.set_num_threads(1)
    b = trained.frame.work_box
    rng = np.random.default_rng(0)
    n = 64
    shape = (n, b, b, b // 2 + 1)
    targets = torch.as_tensor(
        (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    )
    wedges = torch.ones(shape)
    params = EmbedTrainParams(steps=steps, batch_size=16)
    t = time.perf_counter()
    train_embedding(targets, wedges, trained.frame, trained.model.average.numpy(), params)
    return steps * 16 / (time.perf_counter() - t)


if __name__ == "__main__":
    main()
