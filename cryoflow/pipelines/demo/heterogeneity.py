"""The demo's heterogeneity stages: classification, the conformation autoencoder and multi-body
refinement on simulated subtomograms, each scored against the simulator's truth.

Each stage runs the real stage's Python API on ``ctx.client`` (what ``cryoflow average /
classify / embed / multibody`` run), with the outputs under ``<out>/heterogeneity/``:

1. :func:`stage_hetero_average`: ``n`` ribosome-like particles, half in each of its two
   conformations, in uniformly random orientations, SNR 0.5, +-60 degree wedge
   (:mod:`cryoflow.simulate.subtomo`), stored as particle set ``hetero`` without orientations
   (its tilt ranges in the table); ``cryoflow average`` aligns it from a starting model (the
   two conformations' mean truth map low-passed to 60 Å: a low-resolution initial model, as a
   user brings one) and its published orientations and shifts make set ``hetero_aligned``
   (``--quick`` skips the average to fit its time and stores the simulator's orientations as
   the set's alignment instead; the report says so);
2. :func:`stage_hetero_classify`: ``--method multiref`` and ``--method pca``
   on ``hetero_aligned`` (``class_accuracy``, ``pca_class_accuracy``) beside k-means on the raw
   voxels (``kmeans_raw_class_accuracy``, the peer: no alignment, no wedge handling);
3. ``stage_hetero_embed`` and 4. ``stage_hetero_multibody``
   (:mod:`cryoflow.pipelines.demo.heterogeneity_motion`): the autoencoder on
   ``hetero_aligned`` and multi-body refinement of a two-body hinge.

Sizes (:data:`SIZES`) are keyed by ``--quick``; training is a fixed number of steps.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cryoflow.pipelines.demo.context import DemoContext

__all__ = [
    "SIZES",
    "HeteroSizes",
    "stage_hetero_average",
    "stage_hetero_classify",
    "folder",
    "simulate",
    "sizes_of",
    "timing",
    "truth",
]

RAW, ALIGNED, HINGE = "hetero", "hetero_aligned", "hinge"
SNR, TILT = 0.5, (-60.0, 60.0)
#: multiref's local re-alignment per class (``cryoflow classify --realign-deg``; 0: off, the
#: stage's default). On this demo (seed 0) 20 degrees gave a class accuracy of 0.719, against
#: 0.766 without in the run before the option existed, at ~25 s more: the demo leaves it off
REALIGN_DEG = 0.0
#: multiref's global search per class (``--realign-global-deg``; 0: off). On the benchmark's
#: demo-sized sets (two seeds) 30 degrees took 0.72 / 0.64 to 0.86 / 0.84, at about a global
#: alignment per class per round (~1.5-5 min here): left off for the demo's time budget
REALIGN_GLOBAL_DEG = 0.0


@dataclass(frozen=True)
class HeteroSizes:
    """n, box, pixel : the two-conformation set (particles, box side, Å per voxel);
    consensus : ``"average"`` (aligned by ``cryoflow average``) or ``"truth"`` (the
    simulator's orientations stored as its alignment); iterations, global_step : the
    average's gold-standard rounds and global grid step (degrees); embed_steps, latent : the autoencoder's training steps and dimension;
    hinge_n, hinge_box, hinge_pixel, hinge_angles : the multi-body phantom; hinge_rounds,
    hinge_step, hinge_radius : its refinement rounds and the first round's coarsest step and
    search radius (degrees; the radius covers the arm's swing about the masks' middle pose);
    batch : particles per task."""

    n: int
    box: int
    pixel: float
    consensus: str
    iterations: int
    global_step: float
    embed_steps: int
    latent: int
    hinge_n: int
    hinge_box: int
    hinge_pixel: float
    hinge_angles: tuple[float, ...]
    hinge_rounds: int
    hinge_step: float
    hinge_radius: float
    batch: int


#: --quick -> sizes
SIZES: dict[bool, HeteroSizes] = {
    False: HeteroSizes(
        64, 20, 20.0, "average", 2, 25.0, 120, 4, 24, 20, 16.0, (0, 10, 20, 30), 2, 6.0, 18.0, 16
    ),
    True: HeteroSizes(
        24, 20, 20.0, "truth", 1, 30.0, 25, 2, 12, 16, 20.0, (0, 15, 30), 1, 9.0, 18.0, 8
    ),
}


def sizes_of(ctx: DemoContext) -> HeteroSizes:
    """This run's sizes (``ctx.state["hetero_sizes"]`` when a caller set them, e.g. a test)."""
    return ctx.state.get("hetero_sizes") or SIZES[bool(ctx.config.quick)]


def folder(ctx: DemoContext, name: str) -> Path:
    d = Path(ctx.config.out) / "heterogeneity" / name
    d.parent.mkdir(parents=True, exist_ok=True)
    return d


def timing(ctx: DemoContext, t0: float) -> None:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    ctx.report.note(f"Stage time {time.perf_counter() - t0:.1f} s; load average {load}.")


def simulate(shapes: list[Any], labels: np.ndarray, box: int, pixel: float, seed: int) -> Any:
    """Particles of ``shapes`` (``labels`` (n,) each one's), SNR 0.5, +-60 degree wedge."""
    from cryoflow.simulate.subtomo import simulate_subtomograms

    common: dict[str, Any] = {"box": box, "pixel_size_angstrom": pixel, "snr": SNR}
    common.update(tilt_range_deg=TILT, labels=labels, seed=seed)
    return simulate_subtomograms(shapes, len(labels), **common)


def truth(ctx: DemoContext) -> Any:
    if "hetero_sim" not in ctx.state:
        raise RuntimeError("the heterogeneity set is missing: stage hetero_average did not run")
    return ctx.state["hetero_sim"]


def stage_hetero_average(ctx: DemoContext) -> None:
    """Simulate the two-conformation set and align it (``cryoflow average``, or with
    ``consensus="truth"`` the simulator's orientations, said in the report)."""
    from cryoflow.simulate.subtomo import ribosome_shape
    from cryoflow.simulate.subtomo_sets import write_subtomo_set

    t0 = time.perf_counter()
    s, seed = sizes_of(ctx), ctx.config.seed
    labels = np.random.default_rng(seed).permutation(np.arange(s.n) % 2)
    sim = simulate([ribosome_shape(0), ribosome_shape(1)], labels, s.box, s.pixel, seed)
    ctx.state["hetero_sim"] = sim
    ctx.report.heading("Heterogeneity: the two-conformation set and its consensus")
    what = (
        f"{s.n} ribosome-like particles (two conformations, half each), {s.box}^3 voxels of "
        f"{s.pixel:g} Å, random orientations, SNR {SNR}, wedge {TILT[0]:g} to {TILT[1]:g} deg."
    )
    if s.consensus == "average":
        write_subtomo_set(ctx.store, RAW, sim, poses=False, batch=s.batch, overwrite=True)
        _consensus_by_average(ctx, sim, s, what)
    else:
        write_subtomo_set(ctx.store, ALIGNED, sim, batch=s.batch, overwrite=True)
        ctx.state["hetero_poses"] = "the simulator's true orientations (no average run)"
        ctx.report.note(
            f"{what} Not aligned here: to fit its time budget this preset stores the "
            "simulator's true orientations and shifts as the set's alignment, so the "
            "classification figures below do not include alignment errors."
        )
    timing(ctx, t0)


def _consensus_by_average(ctx: DemoContext, sim: Any, s: HeteroSizes, what: str) -> None:
    """``cryoflow average`` of set ``hetero`` from a 60 Å initial model; set ``hetero_aligned``
    gets its orientations; the median orientation error against the truth."""
    from cryoflow.geometry.orientation_error import orientation_errors_deg
    from cryoflow.geometry.rotation import matrix_xyz_from_euler
    from cryoflow.io.results import open_dataset_result
    from cryoflow.kernels.fsc import lowpass
    from cryoflow.pipelines.demo.heterogeneity_figures import central_slices
    from cryoflow.pipelines.stages import average as A
    from cryoflow.pipelines.stages.eager import Target
    from cryoflow.pipelines.stages.particle_inputs import write_map

    ref_path = folder(ctx, "initial_model.mrc")
    write_map(ref_path, lowpass(sim.truth.mean(axis=0), 60.0 / s.pixel), s.pixel)
    params = A.AverageParams(
        set=RAW,
        reference=str(ref_path),
        iterations=s.iterations,
        global_step=s.global_step,
        batch_size=s.batch,
        seed=ctx.config.seed,
    )
    target = Target(ctx.store, (), out=str(folder(ctx, "average")), overwrite=True, quiet=True)
    A.run(ctx.client, target, params)
    state = {
        k: np.asarray(open_dataset_result(ctx.store, A.step_name(RAW), k).values)
        for k in ("euler_deg", "shifts_zyx_px", "half", "average")
    }
    _write_aligned(ctx, sim, state, s.batch)
    err, _ = orientation_errors_deg(
        matrix_xyz_from_euler(state["euler_deg"]), matrix_xyz_from_euler(sim.euler_deg)
    )
    median = float(np.median(err))
    ctx.metrics["hetero_consensus_angle_error_deg"] = median
    ctx.state["hetero_poses"] = f"cryoflow average's orientations (median error {median:.1f} deg)"
    ctx.report.note(
        f"{what} cryoflow average ({s.iterations} gold-standard rounds, global step "
        f"{s.global_step:g} deg) aligned them from the conformations' mean truth map low-passed "
        f"to 60 Å; classification and the autoencoder below start from these orientations "
        f"(median error against the truth {median:.1f} deg), not the simulator's."
    )
    ctx.report.figure(
        central_slices({"consensus": state["average"], "truth (mean)": sim.truth.mean(0)}),
        "Central z, y, x slices of the consensus average and of the truth.",
    )


def _write_aligned(ctx: DemoContext, sim: Any, state: dict[str, np.ndarray], batch: int) -> None:
    """Set ``hetero_aligned``: the particles of ``hetero`` with the average's poses."""
    from cryoflow.io.particleset import open_particles, read_particle_table, write_particle_set
    from cryoflow.io.provenance import make_provenance
    from cryoflow.simulate.subtomo_sets import ORIGIN_COLUMNS, origins_angstrom

    table = read_particle_table(ctx.store, RAW).reset_index(drop=True)
    table[["rot", "tilt", "psi"]] = state["euler_deg"]
    origins = origins_angstrom(state["shifts_zyx_px"], sim.pixel_size_angstrom)
    table[list(ORIGIN_COLUMNS)] = origins
    table["half"] = np.asarray(state["half"]).astype(int)  # 1 or 2, as published
    stack = open_particles(ctx.store, RAW).data.rechunk((batch, -1, -1, -1))
    prov = make_provenance("demo-align", {"set": RAW, "from": "results/" + RAW})
    write_particle_set(ctx.store, ALIGNED, table, stack, provenance=prov, overwrite=True)


def stage_hetero_classify(ctx: DemoContext) -> None:
    """``cryoflow classify --method multiref`` and ``--method pca``; k-means on raw voxels."""
    import pandas as pd
    from sklearn.cluster import KMeans

    from cryoflow.kernels.heterogeneity.metrics import class_accuracy
    from cryoflow.pipelines.demo.heterogeneity_figures import central_slices, scatter
    from cryoflow.pipelines.stages.classify import ClassifyParams, classify

    t0 = time.perf_counter()
    s, sim = sizes_of(ctx), truth(ctx)
    found = {}
    for method in ("multiref", "pca"):
        params = ClassifyParams(
            set=ALIGNED,
            classes=2,
            method=method,
            realign_deg=REALIGN_DEG if method == "multiref" else 0.0,
            realign_global_deg=REALIGN_GLOBAL_DEG if method == "multiref" else 0.0,
            batch_size=s.batch,
            seed=ctx.config.seed,
        )
        found[method] = classify(
            ctx.client, ctx.store, params, folder(ctx, f"classify_{method}"), overwrite=True
        )
    raw = KMeans(2, n_init=10, random_state=ctx.config.seed).fit(sim.volumes.reshape(s.n, -1))
    acc = {m: class_accuracy(r.assign, sim.labels) for m, r in found.items()}
    ctx.metrics["class_accuracy"] = acc["multiref"]
    ctx.metrics["pca_class_accuracy"] = acc["pca"]
    ctx.metrics["kmeans_raw_class_accuracy"] = class_accuracy(raw.labels_, sim.labels)
    ctx.report.heading("Heterogeneity: classification (multiref, PCA)")
    ctx.report.table(
        {
            "class_accuracy (multiref)": acc["multiref"],
            "pca_class_accuracy": acc["pca"],
            "kmeans_raw_class_accuracy (peer)": ctx.metrics["kmeans_raw_class_accuracy"],
        },
        caption="Share of particles in their true conformation (best matching of class numbers; "
        f"0.5 is chance), starting from {ctx.state.get('hetero_poses', '?')}; "
        + (
            f"multiref re-aligns each particle to each class within {REALIGN_DEG:g} deg of its "
            "consensus pose every round (--realign-deg)."
            if REALIGN_DEG
            else "multiref scores each class at the consensus poses (no --realign-deg)."
        ),
    )
    pcs = pd.read_csv(folder(ctx, "classify_pca") / "pca.csv")
    ctx.report.figure(
        scatter(pcs[["pc1", "pc2"]].to_numpy(), sim.labels, ("PC 1", "PC 2"), "PCA coordinates"),
        "First two principal coordinates of the wedge-filled particles, coloured by true "
        "conformation.",
    )
    maps = {f"multiref class {k + 1}": v for k, v in enumerate(found["multiref"].maps)}
    maps.update({f"truth conf. {k}": v for k, v in enumerate(sim.truth)})
    ctx.report.figure(
        central_slices(maps),
        "Class averages of multiref (central z, y, x slices) beside the two true conformations.",
    )
    timing(ctx, t0)
