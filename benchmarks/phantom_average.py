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

``--stage`` runs the same refinement through the ``average`` stage instead: the particles
written as a particle set in a store, rounds on a local cluster of ``--workers`` processes
(``cryoflow.pipelines.stages.average``); ``refine_seconds`` then includes the cluster's start.

Run: ``nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/phantom_average.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace

import numpy as np
import torch

from cryoflow.kernels.align import AlignResult
from cryoflow.kernels.finish import finish_round
from cryoflow.kernels.fsc import FSCCurve, fsc, lowpass
from cryoflow.kernels.refine import (
    RefineParams,
    RefineResult,
    accumulate_all,
    refine,
    split_halves,
)
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
    ap.add_argument("--stage", action="store_true", help="through the average stage")
    ap.add_argument("--workers", type=int, default=2, help="with --stage")
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
    if a.stage:
        res = _via_stage(sim, a, start)
    else:
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


def _via_stage(sim: object, a: argparse.Namespace, start: np.ndarray | None) -> RefineResult:
    """The refinement through the ``average`` stage on a local cluster (``--stage``)."""
    import tempfile
    from pathlib import Path

    import dask.array as da
    import pandas as pd

    from cryoflow.io.layout import create_dataset
    from cryoflow.io.maps import write_map
    from cryoflow.io.particleset import write_particle_set
    from cryoflow.pipelines.cluster.connect import ClusterConfig, connect
    from cryoflow.pipelines.engine.rounds import run_rounds
    from cryoflow.pipelines.stages import average as stage

    tmp = Path(tempfile.mkdtemp(prefix="phantom-average-"))
    store = tmp / "phantom.zarr"
    create_dataset(store)
    n = len(sim.volumes)  # type: ignore[attr-defined]
    table = pd.DataFrame(
        {
            "tomogram": ["t"] * n,
            "x": np.zeros(n),
            "y": np.zeros(n),
            "z": np.zeros(n),
            "tilt_min_deg": sim.tilt_ranges[:, 0],  # type: ignore[attr-defined]
            "tilt_max_deg": sim.tilt_ranges[:, 1],  # type: ignore[attr-defined]
            "pixel_size_angstrom": np.full(n, a.pixel),
        }
    )
    stack = da.from_array(sim.volumes, chunks=(32, a.box, a.box, a.box))  # type: ignore[attr-defined]
    write_particle_set(store, "phantom", table, stack, provenance=None)
    ref = None if start is None else str(write_map(tmp / "start.mrc", start, a.pixel))
    params = stage.AverageParams(
        set="phantom",
        reference=ref,
        iterations=a.rounds,
        initial_resolution=a.init_res,
        seed=a.seed,
    )
    plan = stage.plan(store, [], params, log=print)
    with connect(ClusterConfig(n_workers=a.workers)) as client:
        state = run_rounds(client, store, plan, params.to_dict()).state
    curve = FSCCurve(state["fsc"][0], state["fsc"][1], a.box)
    hist = [dict(zip(stage.HISTORY, map(float, row), strict=True)) for row in state["history"]]
    outcome = SimpleNamespace(
        average=state["average"], resolution_0143_px=curve.resolution_px(0.143)
    )
    align = AlignResult(state["euler_deg"], state["shifts_zyx_px"], state["scores"])
    return RefineResult(outcome, align, state["half"] - 1, hist)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
