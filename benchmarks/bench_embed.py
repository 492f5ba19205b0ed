"""Conformation autoencoder throughput: embedding (particles/s) and training (particles/s).

Embedding: :func:`cryoflow.models.embed.embed_batch` through a ``ModelHandle`` (the form a
distributed task calls: the network looked up once per process, NumPy in and out) over the
particles in batches, against a plain single-process torch loop in the same run: the same
preparation (``prepare_batch``) and ``model.encode`` under ``torch.no_grad`` on the in-memory
network, no handle, tensors kept. The ratio is the per-batch function's overhead (target: >= 0.9;
the 1- and 2-worker figures of the distributed stage are measured against the same loop). The
share of the time spent preparing (reference frame, wedge, scale, filling) is printed beside it.

Training: optimiser steps of ``--batch`` particles (each seen through two wedges) on one process,
as particles per second.

Run: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/bench_embed.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from cryoflow.kernels.conformation_input import prepare_batch
from cryoflow.models.embed import embed_batch, save_embedding
from cryoflow.models.embed_fit import fit_embedding
from cryoflow.models.embed_train import EmbedTrainParams, train_embedding
from cryoflow.models.loader import ModelHandle
from cryoflow.simulate.subtomo import hinge_shape, simulate_subtomograms


def _best(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--box", type=int, default=32)
    ap.add_argument("--pixel", type=float, default=10.0)
    ap.add_argument("--resolution-px", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sim = simulate_subtomograms(
        [hinge_shape(-30.0), hinge_shape(30.0)], a.n, box=a.box, pixel_size_angstrom=a.pixel, seed=0
    )
    args = (sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges)
    trained, prep = fit_embedding(*args, EmbedTrainParams(steps=2), resolution_px=a.resolution_px)
    frame, net = trained.frame, trained.model

    def plain() -> None:
        with torch.no_grad():
            for s in range(0, a.n, a.batch):
                p = prepare_batch(*(x[s : s + a.batch] for x in args), frame, net.average)
                net.encode(p.inputs)

    def prepare_only() -> None:
        with torch.no_grad():
            for s in range(0, a.n, a.batch):
                prepare_batch(*(x[s : s + a.batch] for x in args), frame, net.average)

    with tempfile.TemporaryDirectory() as d:
        save_embedding(d, trained)
        handle = ModelHandle.from_directory(d)
        embed_batch(handle, *(x[:2] for x in args))  # loads the network once

        def per_batch() -> None:
            for s in range(0, a.n, a.batch):
                embed_batch(handle, *(x[s : s + a.batch] for x in args))

        t_plain = _best(plain, a.repeats)
        t_fn = _best(per_batch, a.repeats)
        t_prep = _best(prepare_only, a.repeats)
    params = EmbedTrainParams(steps=a.train_steps, batch_size=a.train_batch)
    t = time.perf_counter()
    train_embedding(prep.targets, prep.wedges, frame, net.average.numpy(), params)
    t_train = time.perf_counter() - t
    out = {
        "box": a.box,
        "work_box": frame.work_box,
        "n": a.n,
        "batch": a.batch,
        "threads": a.threads,
        "embed_plain_loop_per_s": a.n / t_plain,
        "embed_batch_fn_per_s": a.n / t_fn,
        "embed_ratio_fn_over_plain": t_plain / t_fn,
        "prepare_share": t_prep / t_plain,
        "train_particles_per_s_per_worker": a.train_steps * a.train_batch / t_train,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
