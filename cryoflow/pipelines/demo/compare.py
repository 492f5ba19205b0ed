"""The paper's comparison (Zeng et al. 2023, sec. 3.1) reproduced on simulated tomograms.

Given a training and a test tomogram written by the simulator (tilt series, per-tilt truth
masks ``results/truth/masks2d_<class>``, truth label volume ``volumes/truth_labels`` and the
reconstruction ``volumes/tomogram``):

- **2D-to-3D** (``seg2d3d_iou``): a network trained on a few boxes of the training
  tomogram's *tilt images* annotates the test tomogram's tilt images; the thresholded maps are
  lifted to 3D with Algorithm 1 (:func:`cryoflow.pipelines.stages.lift.lift_masks`:
  back-projection + automatic threshold) and compared with the 3D truth.
- **Conventional** (``seg3d_conventional_iou``): the same kind of network, trained on as many
  boxes of the training tomogram's *reconstructed z slices* (truth label slices as masks), is
  applied slice by slice to the test tomogram's reconstruction, as EMAN2 does.
- ``annotate_iou_<feature>``: per-feature IoU on the test tilts of the combined multi-feature
  annotation (each pixel the best feature above its threshold) against the truth masks.
- ``detect_ap50``: AP at IoU 0.5 of per-tilt granule boxes from the segmentation maps'
  connected components (the light detector) against truth component boxes;
  ``detect_ap50_fasterrcnn`` too when ``fasterrcnn=True``.

Without a time budget (``time_budget_s=None``, the default and every preset's) every training
runs its number of steps, so a seed gives the same figures on an idle or a busy machine. With
one the trainings share it (each stops early when its share is spent), so the figures depend
on the machine's speed; the steps done are returned with them (``train_steps_*``).

With ``eval_every`` set (the paper preset) the detectors train until their validation AP
stops improving (:mod:`cryoflow.pipelines.demo.validation`): the tilt network of the lifted
feature (whose components are the light detector) and the Faster R-CNN on AP50 of held-out
tilts of the training tomogram, the conventional route's slice network on the IoU of held-out
slices, each looked at every ``eval_every`` steps, stopped after ``patience`` looks without
gain, at most ``steps`` (``detector_steps``) steps; the held-out images never train. The
steps each stopped at and its best are returned (``val_<network>_best_step``, ...).

Given several test tomograms, the networks are trained once and every figure is measured on
each test tomogram: the result holds the mean (under the figure's own name), ``<name>_std``
(the spread over test tomograms) and ``<name>_n`` (how many were scored)
(:func:`cryoflow.pipelines.demo.presets.over_tomograms`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd

from cryoflow.errors import ConfigError
from cryoflow.io import store as S
from cryoflow.kernels.boxes import boxes_from_masks
from cryoflow.kernels.combine import combine_features
from cryoflow.kernels.iou import mask_iou
from cryoflow.models.arch import ModelSpec
from cryoflow.models.detector import (
    DetectorParams,
    average_precision,
    box_targets,
    boxes_from_probabilities,
)
from cryoflow.models.early_stop import StopRule
from cryoflow.models.loader import ModelHandle, ModelPlugin
from cryoflow.models.train import TrainParams
from cryoflow.models.trainset import training_set_from_masks
from cryoflow.pipelines.cluster.connect import gpu_resources
from cryoflow.pipelines.stages.annotate import infer_on_cluster
from cryoflow.pipelines.stages.train import (
    box_counts,
    load_images,
    save_trained,
    submit_training,
    truth_masks,
)


@dataclass(frozen=True)
class CompareConfig:
    """Parameters of the comparison.

    feature : the lifted feature (the paper's calcium-phosphate granules); features : the
    features annotated together for ``annotate_iou_<feature>``; n_boxes, n_negative, box_size :
    the few-shot training set (same for both routes); spec, steps, batch_size : network and
    training; time_budget_s : rough wall-time budget of the whole comparison, or ``None`` (the
    default: every training runs its steps, so a seed gives the same figures on any machine);
    fasterrcnn :
    also train and score the Faster R-CNN, for ``detector_steps`` steps (on the demo's
    tomograms 150 steps gave AP50 0.197, 400 steps 0.312: it is still learning there);
    detector_image_size : the edge its images are resized to inside the network;
    eval_every, patience : early stopping on a validation split (``None``: fixed steps);
    device : ``cpu``/``cuda``.
    """

    feature: str = "granule"
    features: tuple[str, ...] = ("granule", "mito_membrane", "membrane")
    n_boxes: int = 12
    n_negative: int = 8
    box_size: int = 64
    margin: int = 0
    spec: ModelSpec = ModelSpec(arch="unet", base_channels=8)
    steps: int = 200
    batch_size: int = 8
    time_budget_s: float | None = None
    fasterrcnn: bool = False
    detector_steps: int = 300
    detector_image_size: int = 128
    eval_every: int | None = None
    patience: int = 3
    device: str = "cpu"
    seed: int = 0

    def stop_rule(self, max_steps: int) -> StopRule | None:
        """The early-stopping rule of a training of at most ``max_steps`` (``None``: fixed)."""
        if self.eval_every is None:
            return None
        return StopRule(every=self.eval_every, patience=self.patience, max_steps=max_steps)

    def __post_init__(self) -> None:
        if self.feature not in self.features:
            raise ConfigError(
                f"feature {self.feature!r} must be one of features {list(self.features)}"
            )
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError(f"time_budget_s must be > 0, got {self.time_budget_s}")


def _infer(
    client: Any, images: np.ndarray | da.Array, model_dir: Path, config: CompareConfig, label: str
) -> np.ndarray:
    handle = ModelHandle.from_directory(model_dir, device=config.device)
    client.register_plugin(ModelPlugin(handle), name=handle.plugin_name)
    lazy = images if isinstance(images, da.Array) else da.from_array(images, chunks=(8, -1, -1))
    probs = infer_on_cluster(
        client, lazy, handle, batch_size=8, label=label, resources=gpu_resources(config.device)
    )
    return np.asarray(client.compute(probs, sync=True))


def compare_routes(
    client: Any,
    store: Any,
    train_name: str,
    test_name: str | Sequence[str],
    config: CompareConfig | None = None,
    *,
    model_dir: Path | None = None,
) -> dict[str, float]:
    """Run the comparison; return the metrics (see the module docstring).

    Parameters
    ----------
    train_name : the simulated tomogram the networks train on; test_name : one tomogram (or
        several) of ``store`` they are scored on (distinct phantoms).
    model_dir : where to keep the trained networks (default: a temporary directory).

    Returns
    -------
    dict of float: ``seg2d3d_iou``, ``seg3d_conventional_iou``, ``annotate_iou_<feature>``,
    ``detect_ap50`` (and ``detect_ap50_fasterrcnn``), ``seg2d_test_iou`` (2D IoU of the lifted
    feature's maps on the test tilts), ``lift_threshold``, ``train_steps_*`` and ``compare_seconds``
    (with ``<name>_std`` and ``<name>_n`` for the per-test figures given several test tomograms).
    """
    from cryoflow.pipelines.demo.presets import over_tomograms

    cfg = config or CompareConfig()
    tests = [test_name] if isinstance(test_name, str) else list(test_name)
    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="cryoflow-compare-") if model_dir is None else None
    root = Path(tmp.name if tmp is not None else model_dir)  # type: ignore[arg-type]
    try:
        # 1. data: tilts and truth of the training tomogram, slices of its reconstruction
        tilts_train = load_images(client, store, train_name, False, "tomogram")
        slices_train = load_images(client, store, train_name, True, "tomogram")
        truth3d_train = truth_masks(client, store, train_name, cfg.feature, True)
        masks_train = {f: truth_masks(client, store, train_name, f, False) for f in cfg.features}

        # 2. train every network at once on the cluster, each with its share of the budget
        n_models = len(cfg.features) + 1
        n_parallel = max(1, min(n_models, len(client.scheduler_info()["workers"])))
        share = (
            None if cfg.time_budget_s is None else 0.6 * cfg.time_budget_s * n_parallel / n_models
        )
        same = ("spec", "steps", "batch_size", "seed", "device")  # CompareConfig's own fields
        params = TrainParams(**{k: getattr(cfg, k) for k in same}, max_seconds=share)
        split = _Split.of(tilts_train, slices_train, masks_train[cfg.feature], truth3d_train, cfg)
        rng = np.random.default_rng(cfg.seed)
        jobs = {}
        for f in cfg.features:
            where = {"kind": "truth", "tomogram": train_name, "images": "tilts"}
            ts = training_set_from_masks(
                tilts_train[split.tilts],
                masks_train[f][split.tilts],
                feature=f,
                rng=rng,
                source=where,
                **box_counts(cfg),
            )
            held = (tilts_train[split.val_tilts], masks_train[f][split.val_tilts], "ap50")
            jobs[f"tilts_{f}"] = _submit(client, ts, params, split.rule, held, f == cfg.feature)
        where = {"kind": "truth", "tomogram": train_name, "images": "slices"}
        ts3d = training_set_from_masks(
            slices_train[split.slices],
            truth3d_train[split.slices],
            feature=cfg.feature,
            rng=rng,
            source=where,
            **box_counts(cfg),
        )
        held = (slices_train[split.val_slices], truth3d_train[split.val_slices], "iou")
        jobs["slices"] = _submit(client, ts3d, replace(params, seed=cfg.seed + 1), split.rule, held)
        trained = {k: save_trained(fut, root / k) for k, fut in jobs.items()}
        metrics: dict[str, float] = {
            f"train_steps_{k}": float(c.metrics["steps_done"]) for k, (_, c) in trained.items()
        }
        for k, (_, c) in trained.items():
            metrics.update({f"{n}_{k}": v for n, v in c.metrics.items() if n.startswith("val_")})
        detector = None
        if cfg.fasterrcnn:
            detector, done = _train_fasterrcnn(
                client, tilts_train, masks_train[cfg.feature], cfg, share, split
            )
            metrics["train_steps_fasterrcnn"] = float(done["steps_done"])
            metrics.update({f"{n}_fasterrcnn": v for n, v in done.items() if n.startswith("val_")})

        # 3.-6. every test tomogram
        per = [_score_test(client, store, name, root, trained, detector, cfg) for name in tests]
        metrics.update(per[0] if len(per) == 1 else over_tomograms(per))
        metrics["compare_seconds"] = time.perf_counter() - t0
        return metrics
    finally:
        if tmp is not None:
            tmp.cleanup()


def _score_test(
    client: Any,
    store: Any,
    test_name: str,
    root: Path,
    trained: dict[str, Any],
    detector: Any,
    cfg: CompareConfig,
) -> dict[str, float]:
    """Steps 3-6 of the comparison on one test tomogram, with the trained networks."""
    from cryoflow.pipelines.stages.lift import lift_masks

    tilts_test = load_images(client, store, test_name, False, "tomogram")
    slices_test = S.open_volume(store, test_name, "tomogram").data
    truth3d_test = truth_masks(client, store, test_name, cfg.feature, True)
    masks_test = {f: truth_masks(client, store, test_name, f, False) for f in cfg.features}
    metrics: dict[str, float] = {}

    # 3. 2D-to-3D: annotate the test tilts, lift the feature with Algorithm 1
    probs = {
        f: _infer(client, tilts_test, root / f"tilts_{f}", cfg, f"compare-{test_name}-{f}")
        for f in cfg.features
    }
    thresholds = {f: trained[f"tilts_{f}"][1].threshold for f in cfg.features}
    masks2d = probs[cfg.feature] > 255 * thresholds[cfg.feature]
    metrics["seg2d_test_iou"] = mask_iou(masks2d, masks_test[cfg.feature])
    geometry = S.read_geometry(store, test_name)
    lifted = lift_masks(client, masks2d, geometry, tuple(truth3d_test.shape), name=cfg.feature)
    pred3d = np.asarray(client.compute(lifted.votes > lifted.threshold).result())
    metrics["seg2d3d_iou"] = mask_iou(pred3d, truth3d_test)
    metrics["lift_threshold"] = float(lifted.threshold)

    # 4. conventional: the slice network over the test reconstruction, slice by slice
    p3d = _infer(client, slices_test, root / "slices", cfg, f"compare-{test_name}-slices")
    metrics["seg3d_conventional_iou"] = mask_iou(
        p3d > 255 * trained["slices"][1].threshold, truth3d_test
    )

    # 5. multi-feature annotation quality on the test tilts
    names = list(cfg.features)
    combined = combine_features(np.stack([probs[f] for f in names]), [thresholds[f] for f in names])
    for k, f in enumerate(names):
        metrics[f"annotate_iou_{f}"] = mask_iou(combined == k + 1, masks_test[f])

    # 6. detection: component boxes of the feature's maps against truth component boxes
    truth_boxes = _truth_table(masks_test[cfg.feature])
    pred = boxes_from_probabilities(
        probs[cfg.feature],
        class_name=cfg.feature,
        threshold=thresholds[cfg.feature],
        min_pixels=4,
    )
    metrics["detect_ap50"] = average_precision(pred, truth_boxes)
    metrics["detect_n_truth_boxes"] = float(len(truth_boxes))
    if detector is not None:
        from cryoflow.models.detector import detect

        found = detect(detector, tilts_test, class_name=cfg.feature)
        metrics["detect_ap50_fasterrcnn"] = average_precision(found, truth_boxes)
    return metrics


def _truth_table(masks: np.ndarray, min_pixels: int = 4) -> pd.DataFrame:
    """The true boxes: every component of each tilt's mask."""
    return boxes_from_masks(masks, "truth", min_pixels=min_pixels)


@dataclass(frozen=True)
class _Split:
    """Which training images train and which validate (all train without early stopping)."""

    tilts: np.ndarray
    val_tilts: np.ndarray
    slices: np.ndarray
    val_slices: np.ndarray
    rule: StopRule | None

    @classmethod
    def of(
        cls,
        tilts: np.ndarray,
        slices: np.ndarray,
        tilt_masks: np.ndarray,
        slice_masks: np.ndarray,
        cfg: CompareConfig,
    ) -> _Split:
        from cryoflow.pipelines.demo.validation import split_indices, validation_picks

        rule = cfg.stop_rule(cfg.steps)
        if rule is None:
            every_tilt, every_slice = np.arange(len(tilts)), np.arange(len(slices))
            empty = np.zeros(0, dtype=int)
            return cls(every_tilt, empty, every_slice, empty, None)
        fit_t, held_t = split_indices(len(tilts))
        fit_z, held_z = split_indices(len(slices))
        val_t = validation_picks(held_t, tilt_masks, by_content=False)
        val_z = validation_picks(held_z, slice_masks, by_content=True)
        return cls(fit_t, val_t, fit_z, val_z, rule)


def _submit(
    client: Any,
    ts: Any,
    params: TrainParams,
    rule: StopRule | None,
    held: tuple[np.ndarray, np.ndarray, str],
    stops: bool = True,
) -> Any:
    """A training future: fixed steps, or (``rule`` and ``stops``) until validation on
    ``held`` (images, masks, score) stops improving."""
    if rule is None or not stops:
        return submit_training(client, ts, params)
    from cryoflow.pipelines.demo.validation import train_unet_until

    return client.submit(
        train_unet_until,
        ts,
        replace(params, steps=rule.max_steps),
        rule,
        *held,
        resources=gpu_resources(params.device),
        pure=False,
        key=f"train-until-{ts.feature}-{ts.identity[:12]}-{params.seed}",
    )


def _train_fasterrcnn(
    client: Any,
    tilts_train: np.ndarray,
    masks_train: np.ndarray,
    cfg: CompareConfig,
    seconds: float | None,
    split: _Split,
) -> tuple[Any, dict[str, float]]:
    """The Faster R-CNN trained on six training tilts of the training tomogram (on a worker),
    for ``detector_steps`` steps or until its AP50 on the held-out tilts stops improving, and
    its training figures (``steps_done``, ``final_loss``, ``val_*``)."""
    from cryoflow.models.detector import train_detector
    from cryoflow.pipelines.demo.validation import train_detector_until

    fit = split.tilts
    pick = fit[np.unique(np.linspace(0, len(fit) - 1, 6).round().astype(int))]
    params = DetectorParams(
        image_size=cfg.detector_image_size,
        steps=cfg.detector_steps,
        seed=cfg.seed,
        device=cfg.device,
        max_seconds=seconds,
    )
    rule = cfg.stop_rule(cfg.detector_steps)
    data = (tilts_train[pick], box_targets(masks_train[pick]), params)
    if rule is None:
        fut = client.submit(train_detector, *data, resources=gpu_resources(cfg.device), pure=False)
    else:
        held = (tilts_train[split.val_tilts], masks_train[split.val_tilts])
        fut = client.submit(
            train_detector_until,
            *data,
            rule,
            *held,
            resources=gpu_resources(cfg.device),
            pure=False,
        )
    model, done = fut.result()
    return model, done


def compare_metrics_names(features: Sequence[str]) -> list[str]:
    """The metric names :func:`compare_routes` reports for ``features`` (for reports)."""
    return [
        "seg2d3d_iou",
        "seg3d_conventional_iou",
        *[f"annotate_iou_{f}" for f in features],
        "detect_ap50",
    ]
