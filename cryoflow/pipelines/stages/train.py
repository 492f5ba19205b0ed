"""Train a few-shot segmentation network from a tomogram in the store.

The training set is cut from the tomogram's tilt images (or, with ``slices``, from the z
slices of its reconstruction ``volumes/<volume_key>``), with masks from one of:

- ``source="truth"``: the simulator's ground truth (``results/truth/masks2d_<feature>`` for
  tilts, ``volumes/truth_labels == id(feature)`` for slices);
- ``source="labels"``: a labels file (napari Labels as Zarr/MRC/TIFF, ``0`` = unlabelled);
- ``source="boxes"``: a JSON/CSV file of boxes with masks.

Training runs as one task on the cluster (asking for ``{"GPU": 1}`` on CUDA); the checkpoint
(``weights.pt`` + ``model.json``) is written to ``out``. A command stage: it makes a
checkpoint, not a result of a tomogram, so ``cryoflow run`` does not list it (``annotate``
reads what it writes).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import Field, model_validator

from cryoflow.errors import ConfigError
from cryoflow.pipelines.cluster.connect import gpu_resources
from cryoflow.pipelines.stages.base import StageParams
from cryoflow.pipelines.stages.fields import choice

if TYPE_CHECKING:  # torch-backed: imported where used, so the command line starts quickly
    from cryoflow.models.checkpoint import ModelConfig
    from cryoflow.models.train import TrainParams
    from cryoflow.models.trainset import BoxCounts, TrainingSet

NAME = "train"
SOURCES = ("truth", "labels", "boxes")
TRUTH_VOLUME = "truth_labels"


class TrainingParams(StageParams):
    """What ``cryoflow train`` does (see the module docstring).

    ``network``: the network and optimiser settings, a
    :class:`cryoflow.models.train.TrainParams` (the home of their defaults; None: those
    defaults; :func:`network` builds one from the command's options).
    """

    feature: str = Field(description="feature to learn, e.g. granule")
    source: Annotated[str, choice(lambda: SOURCES)] = Field(
        default="truth", description="where the masks come from: truth, labels, boxes"
    )
    labels: str | None = Field(
        default=None, description="labels file (Zarr/MRC/TIFF; 0 = unlabelled)"
    )
    boxes: str | None = Field(default=None, description="JSON/CSV file of boxes with masks")
    feature_value: int = Field(default=1, description="label value of the feature")
    n_boxes: int = Field(default=10, ge=1, le=200, description="positive boxes (5-20 is typical)")
    n_negative: int = Field(default=4, ge=0, description="negative boxes")
    box_size: int = Field(default=64, ge=8, description="box edge in pixels (EMAN2: 64)")
    margin: int = Field(default=0, ge=0, description="context pixels around each box")
    slices: bool = Field(default=False, description="train on tomogram z slices, not tilts")
    volume_key: str = Field(default="tomogram", description="with slices: the volume to slice")
    network: Any = Field(default=None, description="a cryoflow.models.train.TrainParams")

    @model_validator(mode="after")
    def _source_file(self) -> TrainingParams:
        if self.source == "labels" and self.labels is None:
            raise ValueError("source 'labels' needs --labels FILE")
        if self.source == "boxes" and self.boxes is None:
            raise ValueError("source 'boxes' needs --boxes FILE")
        return self


def network(
    *,
    arch: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> TrainParams:
    """A :class:`cryoflow.models.train.TrainParams` with its defaults, except what is given."""
    from dataclasses import replace

    from cryoflow.models.arch import ModelSpec
    from cryoflow.models.train import TrainParams

    base = TrainParams()
    return replace(
        base,
        spec=ModelSpec(arch=arch) if arch is not None else base.spec,
        steps=base.steps if steps is None else steps,
        seed=base.seed if seed is None else seed,
        device=base.device if device is None else device,
    )


def with_network(params: TrainingParams, *, source: str, network: Any) -> TrainingParams:
    """``params`` with its mask ``source`` and ``network`` settings set."""
    values = {k: getattr(params, k) for k in params.model_fields}
    return TrainingParams(**{**values, "source": source, "network": network})


def choose_source(from_truth: bool, labels: Any, boxes: Any) -> str:
    """The one mask source of ``--from-truth``, ``--labels FILE``, ``--boxes FILE``."""
    given = [s for s, on in (("truth", from_truth), ("labels", labels), ("boxes", boxes)) if on]
    if len(given) != 1:
        raise ConfigError("give exactly one of --from-truth, --labels FILE, --boxes FILE")
    return given[0]


def box_counts(sizes: Any) -> BoxCounts:
    """The box sampling of ``sizes`` (anything with ``n_boxes``, ``n_negative``, ``box_size``
    and ``margin``: :class:`TrainingParams`, the demo's comparison settings) as the keyword
    arguments of :mod:`cryoflow.models.trainset`'s training-set builders."""
    return {
        "n_positive": sizes.n_boxes,
        "n_negative": sizes.n_negative,
        "box_size": sizes.box_size,
        "margin": sizes.margin,
    }


def load_images(client: Any, store: Any, name: str, slices: bool, volume_key: str) -> np.ndarray:
    """The tilt images ``(tilt, y, x)`` or tomogram slices ``(z, y, x)`` as NumPy."""
    from cryoflow.io import store as S

    src = S.open_volume(store, name, volume_key) if slices else S.open_tilt_series(store, name)
    return np.asarray(client.compute(src.data).result())


def truth_masks(client: Any, store: Any, name: str, feature: str, slices: bool) -> np.ndarray:
    """The simulator's truth masks of ``feature``: ``(tilt, y, x)`` or ``(z, y, x)``, bool."""
    from cryoflow.io import store as S

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


def training_set(client: Any, store: Any, name: str, config: TrainingParams) -> TrainingSet:
    """Cut the training set described by ``config`` from tomogram ``name``."""
    from cryoflow.models.trainset import (
        from_box_file,
        from_labels,
        read_labels,
        training_set_from_masks,
    )

    images = load_images(client, store, name, config.slices, config.volume_key)
    rng = np.random.default_rng(_network(config).seed)
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
            rng=rng,
            source={**where, "path": str(config.labels)},
            **box_counts(config),
        )
    if config.source == "boxes" and config.boxes is not None:
        return from_box_file(
            images, config.boxes, feature=config.feature, margin=config.margin, source=where
        )
    masks = truth_masks(client, store, name, config.feature, config.slices)
    source = {"kind": "truth", **where}
    return training_set_from_masks(
        images, masks, feature=config.feature, rng=rng, source=source, **box_counts(config)
    )


def _network(params: TrainingParams) -> TrainParams:
    return params.network if params.network is not None else network()


def _train_task(ts: TrainingSet, params: TrainParams) -> tuple[dict[str, Any], ModelConfig]:
    from cryoflow.models.train import train_model

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
    from cryoflow.models.arch import build_model
    from cryoflow.models.checkpoint import save_checkpoint

    state, config = future.result()
    model = build_model(config.spec)
    model.load_state_dict(state)
    return save_checkpoint(out, model, config), config


def train_on_cluster(
    client: Any, ts: TrainingSet, params: TrainParams, out: Path
) -> tuple[str, ModelConfig]:
    """Train on one worker (a GPU worker for CUDA) and write the checkpoint to ``out``."""
    return save_trained(submit_training(client, ts, params), out)


def train(
    client: Any, store: Any, name: str, params: TrainingParams, *, out: str | Path
) -> tuple[str, ModelConfig]:
    """Build the training set from ``name``, train on the cluster, save the checkpoint to
    ``out``; return (checkpoint hash, config)."""
    ts = training_set(client, store, name, params)
    return train_on_cluster(client, ts, _network(params), Path(out))
