"""The demo's conformational-landscape and motion stages (after
:mod:`cryoflow.pipelines.demo.heterogeneity`'s set and classification):

- :func:`stage_hetero_embed`: ``cryoflow embed`` on the aligned two-conformation set
  (``embed_class_accuracy``: its Gaussian-mixture classes, K = 2), the latent scatter and the
  volumes decoded along the main latent axis;
- :func:`stage_hetero_multibody`: a two-body hinge whose arm swings by a known angle per
  particle, the fixed body's true pose as the set's consensus pose (set ``hinge``);
  ``cryoflow multibody`` with the two bodies' soft masks; ``multibody_angle_error_deg`` is
  the arm's median angle error (:mod:`cryoflow.simulate.hinge`), ``multibody_body<k>_fsc05_
  ratio`` (and ``_fsc08_ratio``) each body map's FSC-0.5 (0.8) resolution against the truth
  in its mask over the consensus map's (below 1: sharper).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from cryoflow.pipelines.demo import heterogeneity as H
from cryoflow.pipelines.demo.context import DemoContext

__all__ = ["stage_hetero_embed", "stage_hetero_multibody"]


def stage_hetero_embed(ctx: DemoContext) -> None:
    """``cryoflow embed``: latent points, classes and a decoded trajectory."""
    import mrcfile

    from cryoflow.kernels.heterogeneity.metrics import class_accuracy
    from cryoflow.pipelines.demo.heterogeneity_figures import scatter, trajectory_slices
    from cryoflow.pipelines.stages.embed import EmbedParams, embed

    t0 = time.perf_counter()
    s, sim = H.sizes_of(ctx), H.truth(ctx)
    params = EmbedParams(
        latent=s.latent, classes=2, steps=s.embed_steps, batch_size=s.batch, seed=ctx.config.seed
    )
    out = H.folder(ctx, "embed")
    res = embed(ctx.client, ctx.store, H.ALIGNED, params, out, overwrite=True)
    acc = class_accuracy(res.table["class"].to_numpy() - 1, sim.labels)
    ctx.metrics["embed_class_accuracy"] = acc
    ctx.report.heading("Heterogeneity: the conformation autoencoder (cryoflow embed)")
    ctx.report.note(
        f"Latent dimension {s.latent}, {s.embed_steps} training steps, Gaussian mixture with "
        f"K = 2 in latent space: embed_class_accuracy {acc:.3f} (pca_class_accuracy above is "
        "PCA + k-means on the same aligned particles)."
    )
    ctx.report.figure(
        scatter(res.latent[:, :2], sim.labels, ("z0", "z1"), "latent space"),
        "The first two latent coordinates of every particle, coloured by true conformation.",
    )
    steps = sorted((out / "trajectory").glob("axis0_step*.mrc"), key=lambda p: int(p.stem[10:]))
    vols = []
    for p in steps:
        with mrcfile.open(p, permissive=True) as mrc:
            vols.append(np.asarray(mrc.data, dtype=np.float32))
    ctx.report.figure(
        trajectory_slices(np.stack(vols)),
        "Volumes decoded along the main latent axis (-2 to +2 standard deviations), central "
        "z, y, x slices.",
    )
    H.timing(ctx, t0)


def _sharpness(
    out: Any, masks: np.ndarray, a0: float, pixel: float, threshold: float
) -> list[dict[str, float]]:
    """Per body, the FSC resolution of its map and of the consensus against the truth in its
    mask (:func:`cryoflow.simulate.hinge.body_sharpness`)."""
    import mrcfile

    from cryoflow.simulate.hinge import body_sharpness

    def read(name: str) -> np.ndarray:
        with mrcfile.open(out / name, permissive=True) as mrc:
            return np.asarray(mrc.data, dtype=np.float32)

    bodies = np.stack([read(f"body_{k}.mrc") for k in range(1, len(masks) + 1)])
    return body_sharpness(bodies, read("consensus.mrc"), masks, a0, pixel, threshold)


def stage_hetero_multibody(ctx: DemoContext) -> None:
    """``cryoflow multibody`` on the two-body hinge phantom: per-body angle errors."""
    import starfile

    from cryoflow.pipelines.demo.heterogeneity_figures import motions_figure
    from cryoflow.pipelines.stages.multibody import MultibodyParams, multibody
    from cryoflow.pipelines.stages.particle_inputs import write_map
    from cryoflow.simulate.hinge import hinge_angle_errors, hinge_body_masks
    from cryoflow.simulate.subtomo import hinge_shape
    from cryoflow.simulate.subtomo_sets import write_subtomo_set

    t0 = time.perf_counter()
    s = H.sizes_of(ctx)
    angles = np.asarray(s.hinge_angles, dtype=float)
    labels = np.arange(s.hinge_n) % len(angles)
    shapes = [hinge_shape(a) for a in angles]
    sim = H.simulate(shapes, labels, s.hinge_box, s.hinge_pixel, ctx.config.seed + 1)
    write_subtomo_set(ctx.store, H.HINGE, sim, batch=s.batch, overwrite=True)
    bodies = []
    masks = hinge_body_masks(float(np.median(angles)), s.hinge_box, s.hinge_pixel)
    for k, m in enumerate(masks):
        bodies.append(H.folder(ctx, f"body{k + 1}_mask.mrc"))
        write_map(bodies[-1], m, s.hinge_pixel)
    params = MultibodyParams(
        set=H.HINGE,
        bodies=tuple(str(b) for b in bodies),
        rounds=s.hinge_rounds,
        first_step_deg=s.hinge_step,
        first_radius_deg=s.hinge_radius,
        batch_size=s.batch,
        seed=ctx.config.seed,
    )
    out = H.folder(ctx, "multibody")
    summary = multibody(ctx.client, ctx.store, params, out, overwrite=True)
    star = starfile.read(out / "particles.star")
    cols = [[f"rlnAngle{a}_body{b}" for a in ("Rot", "Tilt", "Psi")] for b in (1, 2)]
    body_euler = np.stack([star[c].to_numpy(float) for c in cols], axis=1)
    swing = angles[labels]
    scored = hinge_angle_errors(body_euler, sim.euler_deg, swing)
    med = np.median(scored.errors, axis=0)
    ctx.metrics["multibody_angle_error_deg"] = float(med[1])
    ctx.metrics["multibody_fixed_body_error_deg"] = float(med[0])
    ctx.metrics["multibody_consensus_arm_error_deg"] = float(np.median(scored.consensus[:, 1]))
    sharp = {t: _sharpness(out, masks, scored.a0, s.hinge_pixel, t) for t in (0.5, 0.8)}
    for t, figs in sharp.items():
        for k, f in enumerate(figs, start=1):
            ctx.metrics[f"multibody_body{k}_fsc{int(t * 10):02d}_ratio"] = f["ratio"]
    ctx.report.heading("Heterogeneity: multi-body refinement (two-body hinge)")
    ctx.report.note(
        f"{s.hinge_n} hinge particles, {s.hinge_box}^3 voxels of {s.hinge_pixel:g} Å, the arm "
        f"at {', '.join(f'{a:g}' for a in angles)} deg about the hinge, H.SNR {H.SNR}, wedge "
        f"{H.TILT[0]:g} to {H.TILT[1]:g} deg. The set's consensus pose is the simulator's pose of "
        f"the fixed body (not refined here); {s.hinge_rounds} body rounds. Median angle error "
        f"against the truth: arm {med[1]:.2f} deg (multibody_angle_error_deg), fixed body "
        f"{med[0]:.2f} deg; the consensus pose alone errs by "
        f"{ctx.metrics['multibody_consensus_arm_error_deg']:.2f} deg on the arm (rotation prior "
        f"sigma {params.sigma_deg:g} deg about the consensus)."
    )
    ctx.report.table(
        {
            f"body {k} FSC-{t:g} vs truth in its mask (Å): body map / consensus map": (
                f"{f['body_angstrom']:.1f} / {f['consensus_angstrom']:.1f} (ratio {f['ratio']:.3f})"
            )
            for t, figs in sharp.items()
            for k, f in enumerate(figs, start=1)
        },
        caption="Each body's map against the consensus map in the body's own region (the truth: "
        "the hinge with its arm at the fitted offset a0); a ratio below 1 means the body map "
        "is the sharper (multibody_body<k>_fsc05_ratio, _fsc08_ratio).",
    )
    motion = star["cryoflow_motion1"].to_numpy(float) if "cryoflow_motion1" in star else None
    explained = [m["explained"] for m in summary.get("principal_motions", [])]
    ctx.report.figure(
        motions_figure(swing, motion, scored.errors, explained),
        "Principal motion 1 per particle against the true swing, the variance each principal "
        "motion explains, and the per-body angle errors.",
    )
    H.timing(ctx, t0)
