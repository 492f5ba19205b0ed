"""The demo's structure half: crowded particle tomograms, picking, extraction, averaging.

Four demo stages, each running the real stage on the demo's cluster (the code of
``cryoflow pick``, ``cryoflow extract`` and ``cryoflow average``, through their files):

1. ``particles``: a few crowded tomograms (:mod:`cryoflow.simulate.crowded`: an asymmetric
   ``dimer`` target of the preset's diameter among decoys of the same size and mass but other
   shapes, small clutter proteins, a tilt series at the preset's per-tilt SNR with a CTF, the
   tomogram reconstructed by filtered back-projection, so its missing wedge is the real one of
   the tilt range), written into the demo store with their tilt range;
2. ``pick``: the picker trained on ``n_examples`` targets of the first tomogram, applied to
   every one: ``pick_f1`` within ``tolerance_px`` voxels against every target; the blob
   detector peer (:mod:`cryoflow.kernels.blob_peer`) in the same run, ``pick_f1_blob`` at its
   best threshold (chosen on the truth: an upper bound) and ``pick_f1_blob_examples``;
3. ``extract``: a particle set cut around the *picks* (the honest chain: false positives
   included);
4. ``average``: gold-standard refinement of that set from the preset's start, its figures
   against the truth (:mod:`cryoflow.pipelines.demo.particle_figures`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryoflow.pipelines.demo.context import DemoContext

__all__ = ["PARTICLE_STAGES"]

SET = "demo_picks"


def _work(ctx: DemoContext) -> Path:
    d = Path(ctx.store).parent / "particles"
    d.mkdir(parents=True, exist_ok=True)
    return d


def stage_particles(ctx: DemoContext) -> None:
    """Simulate the crowded particle tomograms into the demo store (truth kept in ``state``)."""
    from cryoflow.simulate.crowded import CrowdedConfig, simulate_crowded
    from cryoflow.simulate.crowded_store import write_crowded

    p = ctx.config.sizes.particles
    truths: dict[str, pd.DataFrame] = {}
    for i in range(p.n_tomograms):
        cfg = CrowdedConfig(**p.crowded, seed=ctx.config.seed * 1000 + i)
        tomo = simulate_crowded(cfg)
        name = f"crowded{i}"
        write_crowded(ctx.store, name, tomo)
        truths[name] = tomo.truth
    ctx.state["crowded"] = truths
    ctx.state["crowded_config"] = cfg
    n_t = sum(int((t["kind"] == "target").sum()) for t in truths.values())
    n_d = sum(int((t["kind"] == "decoy").sum()) for t in truths.values())
    ctx.metrics["particles_n_targets"] = n_t
    ctx.report.heading("Structure half: crowded particle tomograms")
    ctx.report.note(
        f"{p.n_tomograms} tomograms of {' x '.join(map(str, cfg.shape))} voxels of "
        f"{cfg.pixel_size_angstrom:g} Å: {n_t} '{cfg.target}' targets of {cfg.diameter_angstrom:g} Å "
        f"(asymmetric, ribosome-like two-lobed body) and {n_d} decoys of the same size and mass "
        f"({', '.join(cfg.decoys)}), clutter proteins, tilts {cfg.tilt_min_deg:g} to "
        f"{cfg.tilt_max_deg:g} deg every {cfg.tilt_step_deg:g} deg at per-tilt SNR {cfg.snr} "
        "with a CTF, reconstructed by filtered back-projection (the real missing wedge)."
    )


def stage_pick(ctx: DemoContext) -> None:
    """``cryoflow pick`` from ``n_examples`` examples over every crowded tomogram; the blob peer."""
    from cryoflow.io.particles import read_particles, write_particles
    from cryoflow.kernels.blob_peer import blob_f1, blob_peaks
    from cryoflow.kernels.match import match_picks
    from cryoflow.pipelines.demo.particle_figures import picks_figure
    from cryoflow.pipelines.stages import pick
    from cryoflow.pipelines.stages.eager import Target
    from cryoflow.pipelines.stages.extract import tomogram_infos
    from cryoflow.simulate.crowded_store import example_marks, target_xyz

    p = ctx.config.sizes.particles
    truths: dict[str, pd.DataFrame] = ctx.state["crowded"]
    names = list(truths)
    targets = {n: target_xyz(t) for n, t in truths.items()}
    examples = example_marks(names[0], targets[names[0]], p.n_examples, ctx.config.seed + 1000)
    work = _work(ctx)
    ex_file = write_particles(work / "examples.csv", examples)
    cfg = ctx.state["crowded_config"]
    out = str(work / "picks.star")
    kw = {"diameter_angstrom": cfg.diameter_angstrom, "seed": ctx.config.seed, **p.pick}
    params = pick.PickParams(examples=str(ex_file), out=out, **kw)
    pick.run(ctx.client, Target(ctx.store, tuple(names), overwrite=True, quiet=True), params)
    picks = read_particles(params.out, tomograms=tomogram_infos(ctx.store, "tomogram"))
    tp = fp = fn = 0
    for n in names:
        got = picks[picks["tomogram"].astype(str) == n][["x", "y", "z"]].to_numpy(np.float64)
        s = match_picks(got, targets[n], p.tolerance_px)
        tp, fp, fn = tp + s.tp, fp + s.fp, fn + s.fn
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    # the peer, in the same run: LoG blobs at the particle's true scale and polarity
    from cryoflow.io.store import open_volume

    d_px = cfg.diameter_px
    vols = {n: np.asarray(open_volume(ctx.store, n, "tomogram").values) for n in names}
    peaks = {n: blob_peaks(v, d_px, +1.0) for n, v in vols.items()}
    ex_xyz = {names[0]: examples[["x", "y", "z"]].to_numpy(np.float64)}
    blob = blob_f1(peaks, targets, ex_xyz, p.tolerance_px)
    ctx.state["picks"] = picks
    ctx.metrics.update(
        pick_f1=float(f1),
        pick_precision=tp / (tp + fp) if tp + fp else 0.0,
        pick_recall=tp / (tp + fn) if tp + fn else 0.0,
        pick_n=len(picks),
        pick_f1_blob=float(blob["best_f1"]),
        pick_f1_blob_examples=float(blob["example_threshold_f1"]),
    )
    decoys = {n: target_xyz(t, "decoy") for n, t in truths.items()}
    ctx.report.heading("Picking from 8 examples (pick stage) vs a blob detector")
    ctx.report.note(
        f"Trained on {len(examples)} example targets of {names[0]}, applied to all "
        f"{len(names)} tomograms: pick_f1={f1:.3f} within {p.tolerance_px:g} voxels against "
        f"every target ({tp} true, {fp} false picks, {fn} missed); the blob detector (LoG at "
        f"the true scale) reaches {blob['best_f1']:.3f} at its best threshold (chosen on the "
        f"truth) and {blob['example_threshold_f1']:.3f} at the examples' threshold."
    )
    n0 = names[0]
    ctx.report.figure(
        picks_figure(
            vols[n0],
            picks[picks["tomogram"].astype(str) == n0],
            targets[n0],
            decoys[n0],
            p.tolerance_px,
            d_px,
        ),  # fmt: skip
        f"{n0}: central slab (mean over a particle's depth) with the picks marked: true "
        "positives (green), false positives (red), missed targets (yellow), decoys (blue).",
    )


def stage_extract(ctx: DemoContext) -> None:
    """``cryoflow extract`` around the picks into particle set ``demo_picks``."""
    from cryoflow.pipelines.stages import extract
    from cryoflow.pipelines.stages.eager import Target

    p = ctx.config.sizes.particles
    params = extract.ExtractParams(particles=str(_work(ctx) / "picks.star"), box=p.box, set=SET)
    out = extract.run(ctx.client, Target(ctx.store, (), overwrite=True, quiet=True), params)
    ctx.metrics["extract_n_particles"] = int(out["n_particles"])
    ctx.report.heading("Extraction (extract stage)")
    ctx.report.note(
        f"{out['n_particles']} boxes of {p.box}^3 voxels cut around the picks (not the true "
        "positions: false picks are averaged too, as they would be), each with its tomogram's "
        "tilt range."
    )


def stage_average(ctx: DemoContext) -> None:
    """``cryoflow average`` of the set; figures against the truth (module docstring)."""
    from cryoflow.pipelines.demo.particle_figures import average_figures, report_average

    figs = average_figures(ctx, SET, _work(ctx))
    ctx.metrics.update({k: v for k, v in figs.items() if isinstance(v, float | int)})
    report_average(ctx.report, figs)


PARTICLE_STAGES: list[tuple[str, Any]] = [
    ("particles", stage_particles),
    ("pick", stage_pick),
    ("extract", stage_extract),
    ("average", stage_average),
]
