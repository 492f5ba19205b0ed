"""Subtomogram averaging on ribosome-like phantoms: the figures the demo reports.

Simulates ``--n`` ribosome-like particles (``cryoflow.simulate.subtomo``) in random
orientations at ``--snr`` with a ``--tilt`` wedge, refines them (``cryoflow.kernels.refine``)
from ``--start truth`` (the truth low-passed to the initial resolution; the result lies in its
frame) or ``--start none`` (template-free initial model), and prints:

- ``orientation_error_deg``: median angle between estimated and true orientations (after
  registering the frame, template-free);
- ``average_fsc05_px``: FSC-0.5 resolution of the average against the truth, beside the ideal
  average's (the same particles averaged with their true orientations and shifts);
- ``gold_standard_fsc0143_px``: the half maps' FSC-0.143 resolution.

Run: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/phantom_average.py``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from cryoflow.kernels.align import AlignResult
from cryoflow.kernels.finish import finish_round
from cryoflow.kernels.fsc import fsc, lowpass
from cryoflow.kernels.refine import RefineParams, accumulate_all, refine, split_halves
from cryoflow.kernels.truth_metrics import truth_figures
from cryoflow.simulate.subtomo import ribosome_shape, simulate_subtomograms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--box", type=int, default=32)
    ap.add_argument("--pixel", type=float, default=14.0, help="voxel size, Å")
    ap.add_argument("--snr", type=float, default=0.5)
    ap.add_argument("--tilt", type=float, default=60.0, help="tilt range +-DEG")
    ap.add_argument("--start", choices=("truth", "none"), default="truth")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--highpass", type=float, default=None, help="px; default from the mask")
    ap.add_argument("--init-res", type=float, default=60.0, help="initial low-pass, Å")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sim = simulate_subtomograms(
        [ribosome_shape()],
        a.n,
        box=a.box,
        pixel_size_angstrom=a.pixel,
        snr=a.snr,
        tilt_range_deg=(-a.tilt, a.tilt),
        seed=a.seed,
    )
    truth = sim.truth[0]
    params = RefineParams(
        rounds=a.rounds,
        initial_resolution_px=a.init_res / a.pixel,
        highpass_px=a.highpass,
        seed=a.seed,
    )
    halves = split_halves(a.n, a.seed)
    ideal = AlignResult(sim.euler_deg, sim.shifts_zyx_px, np.zeros(a.n))
    ideal_sums = accumulate_all(
        sim.volumes, ideal, sim.tilt_ranges, halves, symmetry="C1", batch_size=32, device="cpu"
    )
    ideal_out = finish_round(ideal_sums, voxel_size_angstrom=a.pixel)
    ideal_res = fsc(ideal_out.average, truth).resolution_px(0.5)
    t0 = time.perf_counter()
    start = lowpass(truth, a.init_res / a.pixel) if a.start == "truth" else None
    res = refine(
        sim.volumes,
        sim.tilt_ranges,
        voxel_size_angstrom=a.pixel,
        params=params,
        reference=start,
        half_ids=halves,
    )
    wall = time.perf_counter() - t0
    figs = truth_figures(
        res.outcome.average,
        truth,
        res.alignment.euler_deg,
        sim.euler_deg,
        template_free=a.start == "none",
    )
    out = {
        "n": a.n,
        "box": a.box,
        "pixel_angstrom": a.pixel,
        "snr": a.snr,
        "tilt": a.tilt,
        "start": a.start,
        "orientation_error_deg": round(figs.orientation_error_deg, 2),
        "orientation_error_p25_p75_p90_deg": [
            round(float(np.percentile(figs.errors_deg, q)), 1) for q in (25, 75, 90)
        ],
        "fraction_within_15_deg": round(float(np.mean(figs.errors_deg < 15.0)), 3),
        "body_x_axis_error_deg": round(figs.axis_error_deg, 2),
        "average_fsc05_px": round(figs.average_fsc05_px, 3),
        "ideal_average_fsc05_px": round(ideal_res, 3),
        "ratio_to_ideal": round(figs.average_fsc05_px / ideal_res, 3),
        "gold_standard_fsc0143_px": round(res.outcome.resolution_0143_px, 3),
        "ideal_gold_standard_fsc0143_px": round(ideal_out.resolution_0143_px, 3),
        "refine_seconds": round(wall, 1),
        "history": res.history,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
