"""Threshold search with every candidate, divided by the cost of one forward projection.

The paper's Algorithm 1 re-projects ``votes > T`` for every candidate ``T``: its cost grows
with the number of candidates (K forward projections). ``cryoflow.select_threshold`` uses one
max-projection (``any(votes > T) == max(votes) > T`` along each ray) plus a histogram, so
the whole search should cost at most about 2 forward projections (the target).

Measured in one run, on one core (Dask's synchronous scheduler, torch 1 thread):

- one forward projection ``cryoflow.project(votes, angles, U, "any")``;
- the fast search over all ``n_tilts`` candidates (``cryoflow.select_threshold``);
- the naive search (one ``any`` projection of ``votes > T`` per candidate): run in full with
  ``--small``, else estimated from 3 candidates.

Usage: ``python benchmarks/bench_threshold.py [--small]``.
Default size: 61 tilts of 512 x 512, votes of 200 x 512 x 512.
"""

from __future__ import annotations

import argparse
import os
import time

import dask
import numpy as np
import torch

import cryoflow


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def make_case(n, V, U, Z, rng):
    """2D masks of random ellipsoids, corrupted (missed pixels, false blobs), and their votes."""
    angles = np.linspace(-60, 60, n)
    z, y, x = np.ogrid[:Z, :V, :U]
    truth = np.zeros((Z, V, U), bool)
    for _ in range(12):
        c = rng.uniform([0.3 * Z, 0.1 * V, 0.2 * U], [0.7 * Z, 0.9 * V, 0.8 * U])
        r = rng.uniform([0.05 * Z, 0.03 * V, 0.03 * U], [0.15 * Z, 0.08 * V, 0.08 * U])
        truth |= ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1
    masks = np.asarray(cryoflow.project(truth, angles, U, "any"))
    masks &= rng.random(masks.shape) > 0.1
    masks |= rng.random(masks.shape) > 0.995
    votes = np.asarray(cryoflow.backproject(masks, angles, (Z, V, U)))
    return angles, masks, votes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="25 tilts of 96^2, votes 48 x 96^2")
    args = parser.parse_args()
    n, V, U, Z = (25, 96, 96, 48) if args.small else (61, 512, 512, 200)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    with dask.config.set(scheduler="synchronous"):
        angles, masks, votes = make_case(n, V, U, Z, rng)
        print(
            f"threshold search: {n} tilts of {V} x {U}, votes {Z} x {V} x {U}, "
            f"{n} candidates; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
        )
        fp = min(
            timed(lambda: cryoflow.project(votes, angles, U, "any").values)[0] for _ in range(2)
        )
        search, result = min(
            (timed(lambda: cryoflow.select_threshold(votes, masks, angles)) for _ in range(2)),
            key=lambda r: r[0],
        )
        n_naive = n if args.small else 3
        naive = 0.0
        for t in result.thresholds[:n_naive]:
            naive += timed(lambda t=t: cryoflow.project(votes > t, angles, U, "any").values)[0]
        naive *= n / n_naive
    print(f"  one forward projection (any)     {fp:8.2f} s")
    print(
        f"  fast search, all candidates      {search:8.2f} s   (threshold {result.threshold:g}, "
        f"score {result.score:.3f})"
    )
    how = "measured" if n_naive == n else f"estimated from {n_naive}"
    print(f"  naive search ({how})  {naive:8.2f} s")
    print("ratios (targets in brackets):")
    print(f"  fast search / one projection     {search / fp:8.2f}  [<= 2]")
    print(f"  naive search / fast search       {naive / search:8.1f}")


if __name__ == "__main__":
    main()
