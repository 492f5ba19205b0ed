"""Picking from 8 examples on a crowded target/decoy phantom: the network vs a blob detector.

Data: :func:`cryoflow.simulate.crowded.simulate_crowded` (default: 96 x 192 x 192 voxels of
10 Å, 30 targets ("dimer", 200 Å) and 30 decoys of the same size and mass but other shapes
("trimer", "rod"), small clutter proteins, a -60..60° tilt series at SNR 0.1 with a CTF,
reconstructed by filtered back-projection: the real missing wedge), written to a cryoflow
store. ``--examples`` targets (seeded choice) are the user's marks.

Measured in one run, F1 within ``--tolerance`` voxels (one-to-one matching,
:func:`cryoflow.kernels.match.match_picks`) against every target:

* **network**: :func:`cryoflow.pipelines.stages.pick.find_particles` (given the particle's
  diameter, as a user would; ``--estimate-diameter`` lets it estimate it from the examples;
  everything else at its defaults), on a real LocalCluster of ``--workers``
  single-threaded worker processes (``--workers 0``: in this process);
* **blob detector (peer)**: Laplacian-of-Gaussian peaks at the particle's true scale
  (``sigma = D / (2 sqrt 3)``) and polarity, half a diameter apart; its threshold is the best
  of all (chosen on the truth, so this is an upper bound of what a blob detector can do), and
  also the one the examples suggest (the lowest LoG response at the examples).

Also printed: precision, recall, picks on decoys, F1 over the targets that were not examples,
and seconds (train + apply). Usage::

    python benchmarks/phantom_pick.py [--seed 0] [--examples 8] [--workers 1] [--snr 0.1]
        [--shape 96 192 192]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cryoflow.kernels.blob_peer import blob_f1, blob_peaks
from cryoflow.kernels.match import match_picks
from cryoflow.pipelines.stages.pick import find_particles
from cryoflow.simulate.crowded import CrowdedConfig, simulate_crowded
from cryoflow.simulate.crowded_store import write_crowded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--snr", type=float, default=0.1)
    ap.add_argument("--shape", type=int, nargs=3, default=(96, 192, 192))
    ap.add_argument("--tolerance", type=float, default=6.0)
    ap.add_argument(
        "--estimate-diameter",
        action="store_true",
        help="let the picker estimate the diameter (default: give it, as a user would)",
    )
    args = ap.parse_args()

    cfg = CrowdedConfig(shape=tuple(args.shape), snr=args.snr, seed=args.seed)
    t0 = time.perf_counter()
    tomo = simulate_crowded(cfg)
    t_sim = time.perf_counter() - t0
    truth = tomo.truth
    targets = truth[truth["kind"] == "target"][["x", "y", "z"]].to_numpy(np.float64)
    decoys = truth[truth["kind"] == "decoy"][["x", "y", "z"]].to_numpy(np.float64)
    rng = np.random.default_rng(args.seed + 1000)
    chosen = rng.choice(len(targets), size=args.examples, replace=False)
    examples = targets[chosen]
    others = np.delete(targets, chosen, axis=0)
    table = pd.DataFrame(
        {"tomogram": "t", "x": examples[:, 0], "y": examples[:, 1], "z": examples[:, 2]}
    )
    print(
        f"phantom {cfg.shape} at {cfg.pixel_size_angstrom} Å, {len(targets)} targets "
        f"({cfg.target}), {len(decoys)} decoys {cfg.decoys}, SNR {cfg.snr}, "
        f"{args.examples} examples; simulated in {t_sim:.0f} s"
    )

    with tempfile.TemporaryDirectory() as d:
        store = str(Path(d) / "bench.zarr")
        write_crowded(store, "t", tomo)
        kw = {} if args.estimate_diameter else {"diameter_angstrom": cfg.diameter_angstrom}
        t1 = time.perf_counter()
        if args.workers:
            from _clusters import local_cluster

            with local_cluster(args.workers) as client:
                picks = find_particles(store, ["t"], table, client=client, **kw)
        else:
            picks = find_particles(store, ["t"], table, **kw)
        t_net = time.perf_counter() - t1
    got = picks[["x", "y", "z"]].to_numpy(np.float64)
    net = match_picks(got, targets, args.tolerance)
    far = np.min(np.linalg.norm(got[:, None] - examples[None], axis=2), axis=1) > args.tolerance
    net_others = match_picks(got[far], others, args.tolerance)
    on_decoys = match_picks(got, decoys, args.tolerance).tp
    peaks = blob_peaks(tomo.tomogram, cfg.diameter_px, +1.0 if cfg.contrast == "mass" else -1.0)
    blob = blob_f1({"t": peaks}, {"t": targets}, {"t": examples}, args.tolerance)
    print(
        f"network: F1 {net.f1:.3f} (precision {net.precision:.3f}, recall {net.recall:.3f}; "
        f"{len(got)} picks, {on_decoys} on decoys); F1 on the non-example targets "
        f"{net_others.f1:.3f}; {t_net:.0f} s train + apply ({args.workers} workers)"
    )
    print(
        f"blob detector (LoG at the true scale): best-threshold F1 {blob['best_f1']:.3f}, "
        f"example-threshold F1 {blob['example_threshold_f1']:.3f}"
    )
    print(f"ratio network / best blob F1: {net.f1 / max(blob['best_f1'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
