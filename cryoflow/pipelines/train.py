"""Train a few-shot segmentation network from a tomogram in the store.

The training set is cut from the tomogram's tilt images (or, with ``slices``, from the z
slices of its reconstruction ``volumes/<volume_key>``), with masks from one of:

- ``source="truth"``: the simulator's ground truth (``results/truth/masks2d_<feature>`` for
  tilts, ``volumes/truth_labels == id(feature)`` for slices);
- ``source="labels"``: a labels file (napari Labels as Zarr/MRC/TIFF, ``0`` = unlabelled);
- ``source="boxes"``: a JSON/CSV file of boxes with masks.

Training runs as one task on the cluster (asking for ``{"GPU": 1}`` on CUDA); the checkpoint
(``weights.pt`` + ``model.json``) is written to ``out``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cryoflow.errors import ConfigError
from cryoflow.io import store as S
from cryoflow.models.arch import build_model
from cryoflow.models.checkpoint import ModelConfig, save_checkpoint
from cryoflow.models.train import TrainParams, train_model
from cryoflow.models.trainset import (
    TrainingSet,
    boxes_from_masks,
    from_box_file,
    from_labels,
    read_labels,
)
from cryoflow.pipelines.annotate import gpu_resources

SOURCES = ("truth", "labels", "boxes")
TRUTH_VOLUME = "truth_labels"


@dataclass(frozen=True)
class TrainConfig:
    """What ``cryoflow train`` does (see the module docstring)."""

    feature: str
    out: Path
    source: str = "truth"
    labels: Path | None = None
    boxes: Path | None = None
    feature_value: int = 1
    n_boxes: int = 10
    n_negative: int = 4
    box_size: int = 64
    margin: int = 0
    slices: bool = False
    volume_key: str = "tomogram"
    params: TrainParams = field(default_factory=TrainParams)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"source must be one of {list(SOURCES)}, got {self.source!r}")
        if self.source == "labels" and self.labels is None:
            raise ConfigError("source 'labels' needs --labels FILE")
        if self.source == "boxes" and self.boxes is None:
            raise ConfigError("source 'boxes' needs --boxes FILE")
        if self.margin < 0:
            raise ConfigError(f"margin must be >= 0 pixels, got {self.margin}")
        if not 1 <= self.n_boxes <= 200:
            raise ConfigError(f"n_boxes must be 1..200, got {self.n_boxes}")


def load_images(client: Any, store: Any, name: str, slices: bool, volume_key: str) -> np.ndarray:
    """The tilt images ``(tilt, y, x)`` or tomogram slices ``(z, y, x)`` as NumPy."""
    src = S.open_volume(store, name, volume_key) if slices else S.open_tilt_series(store, name)
    return np.asarray(client.compute(src.data).result())


def truth_masks(client: Any, store: Any, name: str, feature: str, slices: bool) -> np.ndarray:
    """The simulator's truth masks of ``feature``: ``(tilt, y, x)`` or ``(z, y, x)``, bool."""
    if slices:
        from cryoflow.simulate.classes import CLASS_IDS

        if feature not in CLASS_IDS:
            raise ConfigError(
                f"unknown feature {feature!r}; the simulator's are {sorted(CLASS_IDS)}"
            )
        data = S.open_volume(store, name, TRUTH_VOLUME).data == CLASS_IDS[feature]
    else:
        data = S.open_result(store, name, "truth", f"masks2d_{feature}").data != 0
    return np.asarray(client.compute(data).result()).astype(bool)


def training_set(client: Any, store: Any, name: str, config: TrainConfig) -> TrainingSet:
    """Cut the training set described by ``config`` from tomogram ``name``."""
    images = load_images(client, store, name, config.slices, config.volume_key)
    rng = np.random.default_rng(config.params.seed)
    where = {
        "store": str(store),
        "tomogram": name,
        "images": "slices" if config.slices else "tilts",
    }
    if config.source == "labels" and config.labels is not None:
        labels = read_labels(config.labels)
        return from_labels(
            images,
            labels,
            feature=config.feature,
            feature_value=config.feature_value,
            n_positive=config.n_boxes,
            n_negative=config.n_negative,
            box_size=config.box_size,
            margin=config.margin,
            rng=rng,
            source={**where, "path": str(config.labels)},
        )
    if config.source == "boxes" and config.boxes is not None:
        return from_box_file(
            images, config.boxes, feature=config.feature, margin=config.margin, source=where
        )
    masks = truth_masks(client, store, name, config.feature, config.slices)
    return boxes_from_masks(
        images,
        masks,
        feature=config.feature,
        n_positive=config.n_boxes,
        n_negative=config.n_negative,
        box_size=config.box_size,
        margin=config.margin,
        rng=rng,
        source={"kind": "truth", **where},
    )


def _train_task(ts: TrainingSet, params: TrainParams) -> tuple[dict[str, Any], ModelConfig]:
    model, config = train_model(ts, params)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, config


def submit_training(client: Any, ts: TrainingSet, params: TrainParams) -> Any:
    """Start training on one worker (a GPU worker for CUDA); returns the future."""
    return client.submit(
        _train_task,
        ts,
        params,
        resources=gpu_resources(params.device),
        pure=False,
        key=f"train-{ts.feature}-{ts.identity[:12]}-{params.seed}",
    )


def save_trained(future: Any, out: Path) -> tuple[str, ModelConfig]:
    """Wait for a :func:`submit_training` future and write its checkpoint to ``out``."""
    state, config = future.result()
    model = build_model(config.spec)
    model.load_state_dict(state)
    return save_checkpoint(out, model, config), config


def train_on_cluster(
    client: Any, ts: TrainingSet, params: TrainParams, out: Path
) -> tuple[str, ModelConfig]:
    """Train on one worker (a GPU worker for CUDA) and write the checkpoint to ``out``."""
    return save_trained(submit_training(client, ts, params), out)


def train(client: Any, store: Any, name: str, config: TrainConfig) -> tuple[str, ModelConfig]:
    """Build the training set from ``name``, train, save; return (checkpoint hash, config)."""
    ts = training_set(client, store, name, config)
    return train_on_cluster(client, ts, config.params, Path(config.out))
