"""The stages ``cryoflow demo`` runs, in order. Each adds figures and pictures to the context.

Every figure is measured against the simulator's ground truth; none is fixed in code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cryoflow.pipelines.demo.context import DemoContext, DemoStage
from cryoflow.pipelines.demo.dewedge import stage_dewedge
from cryoflow.pipelines.demo.heterogeneity import stage_hetero_average, stage_hetero_classify
from cryoflow.pipelines.demo.heterogeneity_motion import stage_hetero_embed, stage_hetero_multibody
from cryoflow.pipelines.demo.particles import PARTICLE_STAGES
from cryoflow.pipelines.demo.report import curve, slice_overlay


def _scalars(ctx: DemoContext, metrics: dict[str, Any], names: list[str] | None = None) -> None:
    """Copy the finite scalar figures of ``metrics`` (or only ``names``) into the demo metrics."""
    for k, v in metrics.items():
        if names is not None and k not in names:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            continue
        ctx.metrics[k] = float(v) if isinstance(v, float | np.floating) else int(v)


def _figures(ctx: DemoContext, per: list[dict[str, Any]]) -> None:
    """The figures of one stage measured on each test tomogram: as they are for one (the small
    demo), else their mean, ``_std`` and ``_n`` over the test tomograms."""
    from cryoflow.pipelines.demo.presets import over_tomograms

    if len(per) == 1:
        _scalars(ctx, per[0])
    else:
        _scalars(ctx, over_tomograms([{k: v for k, v in m.items() if _is_scalar(v)} for m in per]))


def _is_scalar(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float | np.integer | np.floating)


def _granules(ctx: DemoContext) -> int:
    """Granules (connected truth components) over the test tomograms."""
    from scipy import ndimage

    from cryoflow.io import store as S
    from cryoflow.simulate.classes import GRANULE

    if "granules" not in ctx.state:
        ctx.state["granules"] = sum(
            int(ndimage.label(S.open_volume(ctx.store, name, "truth_labels").values == GRANULE)[1])
            for name in ctx.state["tests"]
        )
    return int(ctx.state["granules"])


def _objects(ctx: DemoContext, figures: list[str], count: float) -> None:
    """``<figure>_objects``: the true objects behind each figure, over the test tomograms."""
    for f in figures:
        if f in ctx.metrics:
            ctx.metrics[f"{f}_objects"] = int(round(count))


def _target(ctx: DemoContext, name: str) -> Any:
    """Tomogram ``name`` of the demo store, its results replaced, quietly."""
    from cryoflow.pipelines.stages.eager import Target

    return Target(ctx.store, (name,), overwrite=True, quiet=True)


def stage_simulate(ctx: DemoContext) -> None:
    """Simulate a small cellular dataset (tilt series, truth, reconstruction) into the store."""
    from cryoflow.io import store as S
    from cryoflow.pipelines.stages import simulate
    from cryoflow.pipelines.stages.eager import Target

    sizes = ctx.config.sizes
    preset = sizes.simulate.get("preset", "tiny")
    params = sizes.simulate_params(ctx.config.seed)
    names = simulate.run(ctx.client, Target(ctx.store, (), quiet=True), params)
    ctx.state["names"] = list(names)
    ctx.state["train"], ctx.state["test"] = names[0], names[-1]
    ctx.state["tests"] = list(names[sizes.n_train :]) if sizes.per_tomogram else [names[-1]]
    name = names[-1]
    ts = S.open_tilt_series(ctx.store, name)
    mid = int(np.argmin(np.abs(ts["angle"].values)))
    image = np.asarray(ts[mid])
    masks = {}
    for cls in ("granule", "mito_membrane", "membrane"):
        try:
            masks[cls] = np.asarray(S.open_result(ctx.store, name, "truth", f"masks2d_{cls}")[mid])
        except FileNotFoundError:
            continue
    ctx.metrics["sim_tomograms"] = len(names)
    ctx.metrics["sim_tilts"] = int(ts.sizes["tilt"])
    ctx.report.heading("Simulated data")
    ctx.report.note(
        f"{len(names)} tomograms, demo preset '{sizes.name}' (simulation preset '{preset}'), "
        f"seed {ctx.config.seed}: "
        f"{ts.sizes['tilt']} tilts of {ts.sizes['y']} x {ts.sizes['x']} px, "
        f"angles {float(ts['angle'].min()):.0f} to {float(ts['angle'].max()):.0f} deg."
    )
    ctx.report.figure(
        slice_overlay(
            image,
            masks,
            f"{name}: tilt image at {float(ts['angle'][mid]):.0f} deg with truth 2D masks",
        ),
        "A simulated tilt image with the simulator's per-tilt truth masks outlined.",
    )
    tomo = S.open_volume(ctx.store, name, "tomogram")
    labels = S.open_volume(ctx.store, name, "truth_labels")
    z = tomo.sizes["z"] // 2
    lab = np.asarray(labels[z])
    ctx.report.figure(
        slice_overlay(
            np.asarray(tomo[z]),
            {"granule": lab == 3, "mito_membrane": lab == 2, "membrane": lab == 1},
            f"{name}: tomogram z={z}",
        ),
        "Central slice of the weighted back-projection with the 3D truth outlined.",
    )


def stage_seg3d(ctx: DemoContext) -> None:
    """Algorithm 1 on the granules, from true 2D masks corrupted as a segmenter errs."""
    from cryoflow.pipelines.demo.figures import seg3d_metrics

    per = [
        seg3d_metrics(ctx.client, _target(ctx, name), class_name="granule", seed=ctx.config.seed)
        for name in ctx.state["tests"]
    ]
    m = per[0]
    _figures(ctx, per)
    _objects(ctx, ["seg3d_iou"], _granules(ctx))
    ctx.report.heading("Algorithm 1: 2D-to-3D segmentation (granules)")
    ctx.report.figure(
        curve(
            np.asarray(m["seg3d_thresholds"]),
            {"mean IoU": np.asarray(m["seg3d_scores"])},
            "Threshold auto-selection",
            "threshold T (votes)",
            "mean 2D IoU",
            mark_x=m.get("seg3d_threshold"),
        ),
        "Score of every candidate threshold: mean over tilts of IoU(2D mask, FP(votes > T)).",
    )
    sl = m["seg3d_slice"]
    ctx.report.figure(
        slice_overlay(
            np.asarray(sl["votes"]),
            {"truth": sl["truth"], "lifted": sl["pred"]},
            f"vote map z={m.get('seg3d_slice_z')}: seg3d_iou={m['seg3d_iou']:.3f}",
        ),
        "Vote map slice with the 3D truth and the lifted segmentation outlined.",
    )


def stage_edges(ctx: DemoContext) -> None:
    """Algorithm 2 on the paper's hollow-sphere experiment (3.2)."""
    from cryoflow.pipelines.demo.figures import sphere_metrics

    size = ctx.config.sizes.sphere_size
    m = sphere_metrics(ctx.client, size=size, seed=ctx.config.seed)
    _scalars(ctx, m)
    ctx.report.heading("Algorithm 2: edge detection (hollow sphere, tilts -50 to +50 deg)")
    curves = {label: np.asarray(m[f"edges_f1_curve_{label}"]) for label in ("before", "after")}
    ctx.report.figure(
        curve(
            np.arange(curves["before"].size),
            curves,
            "F1 against the final threshold T",
            "T (summed per-tilt back-projections)",
            "F1 vs truth shell",
        ),
        "Edge F1 before and after iterative refinement; edges_f1_* are taken at each curve's best "
        "T, edges_f1_fixed_* at the configured T.",
    )
    sl = m["edges_slice"]
    ctx.report.figure(
        slice_overlay(
            np.asarray(sl["truth"], dtype=float),
            {"before": sl["before"], "after": sl["after"]},
            "central y slice",
        ),
        "Truth shell (grey) with the edges detected before and after refinement.",
    )


def stage_localize(ctx: DemoContext) -> None:
    """Algorithm 3: mitochondria 3D boxes from per-tilt 2D boxes."""
    from cryoflow.pipelines.demo.figures import box_metrics

    per = [
        box_metrics(ctx.client, _target(ctx, name), seed=ctx.config.seed)
        for name in ctx.state["tests"]
    ]
    m = per[0]
    _figures(ctx, per)
    mitochondria = sum(int(p["localize_n_truth"]) for p in per)
    _objects(ctx, ["localize_box_iou", "localize_box_iou_all"], mitochondria)
    ctx.report.heading("Algorithm 3: object localisation (mitochondria)")
    for key, caption in (
        ("localize_boxes", "predicted 3D boxes"),
        ("localize_truth_boxes", "true 3D boxes"),
    ):
        ctx.report.table(m[key].to_dict("records"), caption=caption)
    sl = m["localize_slice"]
    z = int(sl["z"])
    boxes = {}
    for key, label in (("localize_boxes", "predicted"), ("localize_truth_boxes", "truth")):
        mask = np.zeros(np.asarray(sl["votes"]).shape, dtype=bool)
        for r in m[key].to_dict("records"):
            if r["z0"] <= z < r["z1"]:
                mask[int(r["y0"]) : int(r["y1"]), int(r["x0"]) : int(r["x1"])] = True
        boxes[label] = mask
    ctx.report.figure(
        slice_overlay(np.asarray(sl["votes"]), boxes, f"vote map z={z}"),
        "Box-mask vote map slice with predicted and true 3D boxes.",
    )


def stage_compare(ctx: DemoContext) -> None:
    """Few-shot CNN: 2D-to-3D route vs the conventional slice-by-slice route; annotation; detector."""
    from dataclasses import asdict

    from cryoflow.pipelines.demo.compare import CompareConfig, compare_routes

    cfg = CompareConfig(**asdict(ctx.config.sizes.training), seed=ctx.config.seed, fasterrcnn=True)
    tests = ctx.state["tests"]
    m = compare_routes(ctx.client, ctx.store, ctx.state["train"], tests, cfg)
    _scalars(ctx, m)
    granule_figures = ["seg2d3d_iou", "seg3d_conventional_iou", "annotate_iou_granule"]
    _objects(ctx, granule_figures, _granules(ctx))
    boxes = m["detect_n_truth_boxes"] * m.get("detect_n_truth_boxes_n", 1.0)
    _objects(ctx, ["detect_ap50", "detect_ap50_fasterrcnn"], boxes)
    ctx.report.heading("Few-shot CNN annotation and the paper's comparison")
    ctx.report.table(
        {k: v for k, v in m.items() if isinstance(v, int | float)},
        caption=(
            "Trained on one simulated tomogram, scored on another against 3D/2D truth."
            if len(tests) == 1
            else f"Trained on {ctx.state['train']}, scored on {len(tests)} other tomograms "
            "against 3D/2D truth: mean, spread (_std) and tomograms scored (_n)."
        ),
    )


STAGES: list[tuple[str, DemoStage]] = [
    ("simulate", stage_simulate),
    ("seg3d", stage_seg3d),
    ("edges", stage_edges),
    ("localize", stage_localize),
    ("compare", stage_compare),
    ("dewedge", stage_dewedge),
    *PARTICLE_STAGES,
    ("hetero_average", stage_hetero_average),
    ("hetero_classify", stage_hetero_classify),
    ("hetero_embed", stage_hetero_embed),
    ("hetero_multibody", stage_hetero_multibody),
]
