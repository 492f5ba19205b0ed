"""The demo's figures, each measured against the simulator's ground truth.

- :func:`seg3d_metrics`: Algorithm 1 on the truth 2D masks corrupted like a segmenter's output;
- :func:`sphere_metrics`: Algorithm 2 on the paper's hollow sphere (experiment 3.2), before and
  after refinement (:func:`hollow_sphere`);
- :func:`box_metrics`: Algorithm 3 from jittered truth 2D boxes against the truth 3D boxes
  (:func:`truth_boxes3d`).

Each runs its stage's own entry point (:mod:`cryoflow.pipelines.stages`) with the stage's
parameter model, so the demo measures exactly what the commands compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
from scipy import ndimage

from cryoflow.geometry import TiltGeometry
from cryoflow.graph import edges as G
from cryoflow.graph.labels import component_boxes, label
from cryoflow.io import store as S
from cryoflow.kernels.boxes import outermost
from cryoflow.kernels.iou import mask_iou, match_boxes, surface_scores
from cryoflow.kernels.project import project_block
from cryoflow.pipelines.cluster.progress import runner
from cryoflow.pipelines.stages import lift, localize
from cryoflow.pipelines.stages.eager import Target
from cryoflow.pipelines.stages.edges import EdgesParams
from cryoflow.pipelines.stages.lift import LiftParams
from cryoflow.pipelines.stages.localize import LocalizeParams

__all__ = [
    "SpherePhantom",
    "box_metrics",
    "hollow_sphere",
    "seg3d_metrics",
    "sphere_metrics",
    "truth_boxes3d",
]


# ---------------------------------------------------------------------------- Algorithm 1
def seg3d_metrics(
    client: Any, target: Target, *, class_name: str = "granule", seed: int = 0
) -> dict[str, Any]:
    """Algorithm 1 on the simulator's truth 2D masks corrupted like a segmenter's output, on
    the first tomogram of ``target`` (its store, whether to overwrite, whether quiet).

    Reads ``truth/masks2d_<class_name>``, corrupts it with
    :func:`cryoflow.kernels.corrupt.corrupt_masks` (``seed``), writes it to
    ``corrupt/masks2d_<class_name>``, lifts it into ``seg3d`` and compares the 3D mask with
    ``truth_labels == id(class_name)``.

    Returns
    -------
    dict
        ``seg3d_iou`` (3D IoU with the truth; NaN when the truth has no voxel of the class),
        ``seg3d_n_truth_voxels``, ``seg3d_iou_2d_input`` (mean per-tilt IoU of
        the corrupted vs true 2D masks), ``seg3d_threshold``, ``seg3d_thresholds`` and
        ``seg3d_scores`` (the score curve, 1-D arrays), ``seg3d_slice_z`` and
        ``seg3d_slice`` = ``{"truth", "pred", "votes"}``: 2-D ``(Y, X)`` arrays at the z slice
        holding the most true voxels (for an overlay figure).
    """
    from cryoflow.kernels.corrupt import corrupt_masks
    from cryoflow.simulate.classes import CLASS_IDS

    store, name, overwrite = target.store, target.names[0], target.overwrite
    key = f"masks2d_{class_name}"
    true2d = client.compute(S.open_result(store, name, "truth", key).data).result().astype(bool)
    bad2d = corrupt_masks(true2d, seed=seed)
    prov = {
        "step": "corrupt",
        "parameters": {"seed": seed, "class": class_name},
        "inputs": {"maps": f"truth/{key}"},
    }
    S.write_result(
        store,
        name,
        "corrupt",
        key,
        bad2d,
        dims=("tilt", "y", "x"),
        provenance=prov,
        overwrite=overwrite,
        compute=False,
    ).run(runner(client, "corrupt", target.quiet))
    truth3d = S.open_volume(store, name, "truth_labels").data == CLASS_IDS[class_name]
    params = LiftParams(
        masks="corrupt/masks2d", classes=(class_name,), thickness=int(truth3d.shape[0])
    )
    res = lift.run(client, replace(target, out="seg3d"), params)[name]
    pred = res["labels"] == res["class_ids"][class_name]
    truth_np, pred_np = client.compute([truth3d, pred], sync=True)
    votes = S.open_result(store, name, "seg3d", f"votes_{class_name}").data
    z = int(np.argmax(truth_np.sum(axis=(1, 2))))
    curve_t = np.asarray(S.open_result(store, name, "seg3d", f"thresholds_{class_name}"))
    curve_s = np.asarray(S.open_result(store, name, "seg3d", f"scores_{class_name}"))
    n_truth = int(truth_np.sum())
    return {
        # no true voxel: nothing to measure (mask_iou of two empty masks would say 1.0)
        "seg3d_iou": mask_iou(pred_np, truth_np) if n_truth else float("nan"),
        "seg3d_n_truth_voxels": n_truth,
        "seg3d_iou_2d_input": float(
            np.mean([mask_iou(a, b) for a, b in zip(bad2d, true2d, strict=True)])
        ),
        "seg3d_threshold": res["thresholds"][class_name],
        "seg3d_thresholds": curve_t,
        "seg3d_scores": curve_s,
        "seg3d_slice_z": z,
        "seg3d_slice": {
            "truth": truth_np[z],
            "pred": pred_np[z],
            "votes": client.compute(votes[z], sync=True),
        },
    }


# ---------------------------------------------------------------------------- Algorithm 2
def hollow_sphere(
    size: int, radius: float, thickness: float, centre: Sequence[float] = (0.0, 0.0, 0.0)
) -> np.ndarray:
    """Boolean ``(size, size, size)`` shell ``radius - thickness < r <= radius`` (voxels)."""
    g = np.indices((size,) * 3, dtype=np.float64) - (size - 1) / 2
    r = np.sqrt(sum((g[i] - centre[i]) ** 2 for i in range(3)))
    return (r <= radius) & (r > radius - thickness)


@dataclass(frozen=True)
class SpherePhantom:
    """The hollow sphere of experiment 3.2 and how it is imaged: outer radius ``radius_frac``
    of the volume's side, ``shell_px`` thick, tilts ``-max_tilt_deg..+max_tilt_deg`` every
    ``tilt_step_deg``, a Gaussian PSF of ``psf_sigma_px``."""

    radius_frac: float = 0.35
    shell_px: float = 2.0
    tilt_step_deg: float = 2.0
    max_tilt_deg: float = 50.0
    psf_sigma_px: float = 1.0


def sphere_metrics(
    client: Any,
    store: Any = None,
    name: str | None = None,
    *,
    size: int = 100,
    phantom: SpherePhantom = SpherePhantom(),  # noqa: B008 (frozen)
    noise: float = 0.1,
    config: EdgesParams | None = None,
    iterations: int = 8,
    tolerance_px: float = 1.5,
    seed: int = 0,
) -> dict[str, Any]:
    """The paper's experiment 3.2, scored before and after refinement.

    A hollow sphere (``phantom``: outer radius ``radius_frac * size``, ``shell_px`` thick) in
    a ``size^3`` volume is projected (contract ``sum`` mode) at ``-max_tilt..+max_tilt`` in
    ``tilt_step`` steps, blurred by a Gaussian PSF (``psf_sigma_px``) and given Gaussian noise
    of standard deviation ``noise`` x the brightest projected pixel. Edges are detected per tilt
    and lifted with ``m = 0`` (no refinement) and ``m = iterations``. ``store``/``name`` are
    accepted for a uniform demo signature and unused (the phantom is built in memory).

    F1 uses :func:`cryoflow.kernels.iou.surface_scores` with ``tolerance_px``. The main figures
    are each case's F1 at its best threshold ``T`` (every ``T`` is scored, the same way for
    both), so neither side is favoured by one fixed ``T``; F1 at ``config.threshold`` is
    reported too. The shell's poles lie in the missing wedge and cannot be recovered by any
    tilt range of +-50 degrees, which caps recall.

    Returns
    -------
    dict
        ``edges_f1_before``, ``edges_f1_after`` (best T), ``edges_precision_before/after``,
        ``edges_recall_before/after``, ``edges_T_before/after``, ``edges_f1_fixed_before/after``
        (at ``config.threshold``), ``edges_f1_curve_before/after`` (1-D over T = 0..n-1),
        ``edges_slice`` = ``{"truth", "before", "after"}`` 2-D ``(Z, X)`` arrays at the central
        y row, and ``edges_params``.
    """
    radius_frac, shell_px, psf_sigma_px = (
        phantom.radius_frac,
        phantom.shell_px,
        phantom.psf_sigma_px,
    )
    max_tilt_deg, tilt_step_deg = phantom.max_tilt_deg, phantom.tilt_step_deg
    cfg = config or EdgesParams(denoise="gaussian", iterations=iterations)
    truth = hollow_sphere(size, radius_frac * size, shell_px)
    geometry = TiltGeometry.single_axis(
        np.arange(-max_tilt_deg, max_tilt_deg + 1e-9, tilt_step_deg)
    )
    whole = (slice(0, size), slice(0, size), slice(0, size))
    proj = project_block(
        truth.astype(np.float32), geometry, (size, size, size), (size, size), whole
    )
    rng = np.random.default_rng(seed)
    proj = ndimage.gaussian_filter(proj.astype(np.float64), (0, psf_sigma_px, psf_sigma_px))
    proj += rng.normal(0.0, noise * proj.max(), proj.shape)
    images = da.from_array(proj.astype(np.float32), chunks=(1, size, size))
    e2d = client.persist(G.edge_maps(images, **cfg.detector(), name="edges2d-sphere"))
    out: dict[str, Any] = {}
    slices = {"truth": truth[:, size // 2, :]}
    dist_truth = ndimage.distance_transform_edt(~truth)
    for case, m in (("before", 0), ("after", cfg.iterations)):
        refinement = {**cfg.refinement(), "iterations": m}
        sums = G.edge_sums(
            e2d, geometry, truth.shape, chunks=cfg.chunk, **refinement, name=f"edges3d-sphere-{m}"
        )
        s = client.compute(sums, sync=True)
        curve = []
        for t in range(geometry.n_tilts):
            pred = s > t
            if not pred.any():
                curve.append({"f1": 0.0, "precision": 0.0, "recall": 0.0})
                continue
            curve.append(surface_scores(pred, truth, tolerance_px, dist_truth=dist_truth))
        f1 = np.array([c["f1"] for c in curve])
        best = int(np.argmax(f1))
        out[f"edges_f1_{case}"] = float(f1[best])
        out[f"edges_precision_{case}"] = float(curve[best]["precision"])
        out[f"edges_recall_{case}"] = float(curve[best]["recall"])
        out[f"edges_T_{case}"] = best
        fixed = int(np.clip(np.floor(cfg.threshold), 0, geometry.n_tilts - 1))
        out[f"edges_f1_fixed_{case}"] = float(f1[fixed])
        out[f"edges_f1_curve_{case}"] = f1
        slices[case] = s[:, size // 2, :] > best
    out["edges_slice"] = slices
    out["edges_params"] = {
        "size": size,
        "radius_px": radius_frac * size,
        "shell_px": shell_px,
        "tilts_deg": [-max_tilt_deg, max_tilt_deg, tilt_step_deg],
        "noise": noise,
        "psf_sigma_px": psf_sigma_px,
        "tolerance_px": tolerance_px,
        **cfg.to_dict(),
    }
    return out


# ---------------------------------------------------------------------------- Algorithm 3
def truth_boxes3d(
    client: Any, store: Any, name: str, class_name: str, *, min_voxels: int = 8
) -> pd.DataFrame:
    """3D boxes of the objects of class ``class_name`` in the simulator's ``truth_labels``.

    Objects are the 26-connected components of ``truth_labels == class``; a component whose
    box lies inside another's is part of that object (the inner membrane of a mitochondrion
    inside its outer membrane) and is dropped.
    """
    from cryoflow.simulate.classes import CLASS_IDS

    truth = S.open_volume(store, name, "truth_labels").data == CLASS_IDS[class_name]
    labels, _ = label(truth, connectivity=3, name=f"label-truth-{name}")
    boxes = client.compute(
        component_boxes(labels, None, class_name, min_voxels=min_voxels), sync=True
    )
    return outermost(boxes)


def box_metrics(
    client: Any, target: Target, *, class_name: str = "mito_membrane", jitter_px: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Algorithm 3 from jittered truth 2D boxes, scored against the truth 3D boxes, on the
    first tomogram of ``target``.

    Returns
    -------
    dict
        ``localize_box_iou``: mean 3D IoU over matched pairs (Hungarian matching on IoU;
        pairs with IoU 0 are not matches; 0.0 when nothing matches);
        ``localize_box_iou_all``: the same sum divided by the number of true boxes (missed
        boxes count 0); ``localize_n_pred``, ``localize_n_truth``, ``localize_n_matched``,
        ``localize_threshold``; ``localize_boxes`` and ``localize_truth_boxes`` (DataFrames of
        3D boxes); ``localize_slice`` = ``{"votes": (Y, X) array, "z": int}`` at the centre of
        the first true box (for drawing boxes over a slice).
    """
    store, name = target.store, target.names[0]
    depth = int(S.open_volume(store, name, "truth_labels").shape[0])
    params = LocalizeParams(
        boxes="truth", classes=(class_name,), jitter_px=jitter_px, seed=seed, thickness=depth
    )
    truth = truth_boxes3d(client, store, name, class_name)
    pred = localize.run(client, target, params)
    cols = ["z0", "y0", "x0", "z1", "y1", "x1"]
    pi, ti, iou = match_boxes(pred[cols].to_numpy(float), truth[cols].to_numpy(float))
    votes = S.open_result(store, name, "localize", f"votes_{class_name}").data
    z = int((truth["z0"].iloc[0] + truth["z1"].iloc[0]) // 2) if len(truth) else votes.shape[0] // 2
    return {
        "localize_box_iou": float(iou.mean()) if iou.size else 0.0,
        "localize_box_iou_all": float(iou.sum() / len(truth)) if len(truth) else 0.0,
        "localize_n_pred": len(pred),
        "localize_n_truth": len(truth),
        "localize_n_matched": int(iou.size),
        "localize_threshold": float(pred["threshold"].iloc[0]) if len(pred) else float("nan"),
        "localize_boxes": pred,
        "localize_truth_boxes": truth,
        "localize_slice": {"votes": client.compute(votes[z], sync=True), "z": z},
    }
