"""Per-tilt 2D boxes for Algorithm 3, mapped over tilt batches on the cluster.

Two detectors, both writing the table ``results/detect/<feature>`` with columns
``tilt, class, score, y0, x0, y1, x1``:

- ``components`` (light): boxes around connected components of the segmentation network's
  probability maps ``results/annotate/<feature>`` (run ``cryoflow annotate`` first), above
  the model's threshold;
- ``fasterrcnn``: torchvision's Faster R-CNN trained from scratch on a few tilt images of a
  training tomogram (boxes from the simulator's truth masks), then run over every tilt.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import pandas as pd
from dask.base import tokenize

from cryoflow.errors import ConfigError
from cryoflow.io import store as S
from cryoflow.models.detector import (
    BOX_COLUMNS,
    DetectorParams,
    boxes_from_masks,
    boxes_from_probabilities,
    detect,
    train_detector,
)
from cryoflow.pipelines.annotate import STEP as ANNOTATE_STEP
from cryoflow.pipelines.annotate import gpu_resources
from cryoflow.pipelines.cluster import wait_with_progress
from cryoflow.pipelines.train import load_images, truth_masks

STEP = "detect"
METHODS = ("components", "fasterrcnn")


@dataclass(frozen=True)
class DetectConfig:
    """What ``cryoflow detect`` does (see the module docstring).

    feature : class to detect; method : ``components`` or ``fasterrcnn``; threshold : for
    ``components``, probability cut (None: the model's threshold recorded with the maps);
    train_name, n_train_images : for ``fasterrcnn``, the training tomogram and how many of
    its tilt images (evenly spread) to train on; batch_size : tilts per task.
    """

    feature: str
    method: str = "components"
    threshold: float | None = None
    min_pixels: int = 4
    train_name: str | None = None
    n_train_images: int = 4
    batch_size: int = 8
    detector: DetectorParams = field(default_factory=DetectorParams)
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        if self.method == "fasterrcnn" and not self.train_name:
            raise ConfigError("method 'fasterrcnn' needs --train-name TOMO (a tomogram with truth)")
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise ConfigError(f"threshold must lie in (0, 1), got {self.threshold}")


BOX_DTYPES = {
    "tilt": "int64",
    "score": "float64",
    "y0": "float64",
    "x0": "float64",
    "y1": "float64",
    "x1": "float64",
}


def box_table(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-batch box tables as one table of ``BOX_COLUMNS`` with fixed dtypes."""
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=BOX_COLUMNS)
    return table.astype(BOX_DTYPES)


def components_task(
    probs: np.ndarray, start: int, feature: str, threshold: float, min_pixels: int
) -> pd.DataFrame:
    """The light detector on one batch of maps whose first tilt is ``start``."""
    return boxes_from_probabilities(
        probs, class_name=feature, threshold=threshold, min_pixels=min_pixels, first_index=start
    )


def _detect_task(model: Any, images: np.ndarray, start: int, feature: str) -> pd.DataFrame:
    return detect(model, images, class_name=feature, first_index=start)


def _batches(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def train_fasterrcnn(client: Any, store: Any, config: DetectConfig) -> Any:
    """Train the Faster R-CNN on ``n_train_images`` tilts of ``train_name`` (one cluster task)."""
    name = str(config.train_name)
    images = load_images(client, store, name, False, "tomogram")
    masks = truth_masks(client, store, name, config.feature, False)
    pick = np.unique(np.linspace(0, len(images) - 1, config.n_train_images).round().astype(int))
    boxes = boxes_from_masks(masks[pick], min_pixels=config.min_pixels)
    future = client.submit(
        train_detector,
        images[pick],
        boxes,
        config.detector,
        resources=gpu_resources(config.detector.device),
        pure=False,
    )
    model, _metrics = future.result()
    return model


def detect_tomogram(
    client: Any,
    store: Any,
    name: str,
    config: DetectConfig,
    *,
    model: Any = None,
    quiet: bool = False,
) -> pd.DataFrame:
    """Boxes of every tilt of ``name``; written to ``results/detect/<feature>`` and returned."""
    if config.method == "components":
        probs = S.open_result(store, name, ANNOTATE_STEP, config.feature)
        threshold = (
            config.threshold
            if config.threshold is not None
            else float(probs.attrs.get("threshold", 0.5))
        )
        data = probs.data
        tasks = [
            dask.delayed(components_task, pure=True)(
                data[a:b],
                a,
                config.feature,
                threshold,
                config.min_pixels,
                dask_key_name=f"detect-{name}-{tokenize(data.name, a, b, threshold)}",
            )
            for a, b in _batches(int(data.shape[0]), config.batch_size)
        ]
        params: dict[str, Any] = {"method": "components", "threshold": threshold}
        resources = None
    else:
        if model is None:
            model = train_fasterrcnn(client, store, config)
        data = S.open_tilt_series(store, name).data
        [model_future] = client.scatter([model], broadcast=True)
        resources = gpu_resources(config.detector.device)
        ctx = dask.annotate(resources=resources) if resources else contextlib.nullcontext()
        with ctx:
            tasks = [
                dask.delayed(_detect_task, pure=False)(model_future, data[a:b], a, config.feature)
                for a, b in _batches(int(data.shape[0]), config.batch_size)
            ]
        params = {
            "method": "fasterrcnn",
            "train_name": config.train_name,
            **config.detector.to_dict(),
        }
    futures = client.compute(tasks, optimize_graph=resources is None)
    tables = wait_with_progress(client, futures, f"detect {name}", quiet=quiet)
    table = box_table(tables)
    S.write_table(
        store,
        name,
        STEP,
        config.feature,
        table,
        overwrite=config.overwrite,
        provenance={
            "step": STEP,
            "parameters": params,
            "inputs": {"maps": f"{ANNOTATE_STEP}/{config.feature}"}
            if config.method == "components"
            else {"images": f"{name}/tilt_series"},
        },
    )
    return table


def detect_dataset(
    client: Any, store: Any, names: list[str], config: DetectConfig, *, quiet: bool = False
) -> dict[str, pd.DataFrame]:
    """:func:`detect_tomogram` over many tomograms (the Faster R-CNN is trained once)."""
    model = train_fasterrcnn(client, store, config) if config.method == "fasterrcnn" else None
    return {n: detect_tomogram(client, store, n, config, model=model, quiet=quiet) for n in names}
