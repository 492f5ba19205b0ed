"""The ``detect`` stage: per-tilt 2D boxes, the input of Algorithm 3.

The table ``results/detect/<feature>`` (columns ``tilt, class, score, y0, x0, y1, x1``,
:data:`cryoflow.kernels.boxes.BOX2D_COLUMNS`), the input ``localize`` reads with
``boxes: detect/<feature>``, comes from one of two detectors:

- ``components`` (light; the plan, also run by ``cryoflow run``): boxes around connected
  components of ``annotate``'s probability maps ``results/annotate/<feature>`` above the
  model's threshold (or a given one), one task per batch of tilts. Its chunked result
  ``results/detect/<feature>_counts`` ``(tilt,)`` int32 counts the boxes on each tilt; the
  table, whose length is known only at the end, is the plan's ``finish``.
- ``fasterrcnn`` (``cryoflow detect`` only): torchvision's Faster R-CNN trained from scratch on
  a few tilt images of a training tomogram (boxes from the simulator's truth masks), then run
  over every tilt.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from cryoflow.errors import ConfigError
from cryoflow.io.names import NAME_RULE, is_valid_name
from cryoflow.pipelines.cluster.connect import gpu_resources
from cryoflow.pipelines.stages.base import CheckContext, Finished, Output, Plan, Stage, StageParams
from cryoflow.pipelines.stages.eager import Target, run_stage
from cryoflow.pipelines.stages.fields import choice
from cryoflow.pipelines.stages.inputs import result_input

if TYPE_CHECKING:
    import pandas as pd

NAME = "detect"
ANNOTATE = "annotate"
METHODS = ("components", "fasterrcnn")
BOX_DTYPES = {
    "tilt": "int64",
    "score": "float64",
    "y0": "float64",
    "x0": "float64",
    "y1": "float64",
    "x1": "float64",
}


class DetectParams(StageParams):
    """Per-tilt 2D boxes of one feature (see the module docstring)."""

    feature: str = Field(description="the class to detect (results/annotate/<feature>)")
    method: Annotated[str, choice(lambda: METHODS)] = Field(
        default="components", description="components (light) or fasterrcnn"
    )
    threshold: float | None = Field(
        default=None, gt=0, lt=1, description="components: probability cut (default: the model's)"
    )
    min_pixels: int = Field(default=4, ge=1, description="smaller 2D components are dropped")
    batch_size: int = Field(default=8, ge=1, description="tilts per task")
    train_name: str | None = Field(default=None, description="fasterrcnn: training tomogram")
    n_train_images: int = Field(default=4, ge=1, description="fasterrcnn: tilts to train on")
    steps: int = Field(default=60, ge=1, description="fasterrcnn: training steps")
    device: str = Field(default="cpu", description="fasterrcnn: cpu or cuda")

    @field_validator("feature")
    @classmethod
    def _feature(cls, v: str) -> str:
        if not is_valid_name(f"{v}_counts"):
            raise ValueError(f"invalid feature name {v!r}: {NAME_RULE}")
        return v

    @model_validator(mode="after")
    def _method(self) -> DetectParams:
        if self.method == "fasterrcnn" and not self.train_name:
            raise ValueError("method 'fasterrcnn' needs --train-name TOMO (a tomogram with truth)")
        return self

    def detector(self) -> Any:
        """The Faster R-CNN's :class:`cryoflow.models.detector.DetectorParams`."""
        from cryoflow.models.detector import DetectorParams

        return DetectorParams(steps=self.steps, device=self.device)


def box_table(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-batch box tables as one table of ``BOX2D_COLUMNS`` with fixed dtypes."""
    import pandas as pd

    from cryoflow.kernels.boxes import BOX2D_COLUMNS

    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=BOX2D_COLUMNS)
    return table.astype(BOX_DTYPES)


def components_task(
    probs: np.ndarray, start: int, feature: str, threshold: float, min_pixels: int
) -> pd.DataFrame:
    """The light detector on one batch of maps whose first tilt is ``start``."""
    from cryoflow.models.detector import boxes_from_probabilities

    return boxes_from_probabilities(
        probs, class_name=feature, threshold=threshold, min_pixels=min_pixels, first_index=start
    )


def plan(store: object, tomogram: str, params: DetectParams) -> Plan:
    """The light detector on ``tomogram``'s probability maps of ``params.feature``."""
    from cryoflow.graph.boxes import box_counts_graph, box_tables_graph

    if params.method != "components":
        raise ConfigError(
            "detect method 'fasterrcnn' trains a network: run it with cryoflow detect"
        )
    feature = params.feature
    inputs: dict[str, str] = {}
    probs = result_input(store, tomogram, ANNOTATE, feature, inputs, "probability maps")
    threshold = (
        float(params.threshold)
        if params.threshold is not None
        else float(probs.attrs.get("threshold", 0.5))
    )
    args = (feature, threshold, params.min_pixels)
    data = probs.data
    counts = box_counts_graph(
        data, params.batch_size, components_task, *args, name=f"detect:{tomogram}-counts"
    )

    def finish(client: Any, arrays: dict[str, Any]) -> Finished:
        tasks = box_tables_graph(
            data, params.batch_size, components_task, *args, name=f"detect:{tomogram}"
        )
        return Finished(tables={feature: box_table(client.compute(tasks, sync=True))})

    attrs = {"feature": feature, "threshold": threshold, "method": "components"}
    out = Output(f"{feature}_counts", counts, ("tilt",), attrs)
    return Plan(NAME, (out,), inputs, tables=(feature,), finish=finish)


def check(params: DetectParams, ctx: CheckContext) -> list[str]:
    """``cryoflow run`` runs the light detector only."""
    if params.method != "components":
        raise ConfigError(
            "detect method 'fasterrcnn' trains a network: run it with cryoflow detect"
        )
    return []


def order(params: DetectParams, before: list[str], after: list[str]) -> str | None:
    """The annotate step (if it is in the pipeline) must come first."""
    if ANNOTATE in after:
        return f"detect reads {ANNOTATE}/{params.feature}: the {ANNOTATE} step must come before it"
    return None


# ---------------------------------------------------------------------------- Faster R-CNN
def train_fasterrcnn(client: Any, store: object, params: DetectParams) -> Any:
    """Train the Faster R-CNN on ``n_train_images`` tilts of ``train_name`` (one cluster task)."""
    from cryoflow.models.detector import box_targets, train_detector
    from cryoflow.pipelines.stages.train import load_images, truth_masks

    name = str(params.train_name)
    images = load_images(client, store, name, False, "tomogram")
    masks = truth_masks(client, store, name, params.feature, False)
    pick = np.unique(np.linspace(0, len(images) - 1, params.n_train_images).round().astype(int))
    boxes = box_targets(masks[pick], min_pixels=params.min_pixels)
    detector = params.detector()
    future = client.submit(
        train_detector,
        images[pick],
        boxes,
        detector,
        resources=gpu_resources(detector.device),
        pure=False,
    )
    model, _metrics = future.result()
    return model


def _detect_task(images: np.ndarray, start: int, model: Any, feature: str) -> pd.DataFrame:
    from cryoflow.models.detector import detect

    return detect(model, images, class_name=feature, first_index=start)


def _fasterrcnn(client: Any, target: Target, params: DetectParams) -> dict[str, pd.DataFrame]:
    """Train the Faster R-CNN once, then box every tilt of each tomogram with it."""
    import dask

    from cryoflow.graph.boxes import box_tables_graph
    from cryoflow.io.store import open_tilt_series, write_table
    from cryoflow.pipelines.cluster.progress import wait_with_progress

    store = target.store
    model = train_fasterrcnn(client, store, params)
    [model_future] = client.scatter([model], broadcast=True)
    detector = params.detector()
    resources = gpu_resources(detector.device)
    out = {}
    for name in target.names:
        data = open_tilt_series(store, name).data
        ctx = dask.annotate(resources=resources) if resources else contextlib.nullcontext()
        with ctx:
            tasks = box_tables_graph(
                data,
                params.batch_size,
                _detect_task,
                model_future,
                params.feature,
                name=f"detect-{name}",
                pure=False,
            )
        futures = client.compute(tasks, optimize_graph=resources is None)
        table = box_table(wait_with_progress(client, futures, f"detect {name}", quiet=target.quiet))
        provenance = {
            "step": NAME,
            "parameters": {
                "method": "fasterrcnn",
                "train_name": params.train_name,
                **detector.to_dict(),
            },
            "inputs": {"images": f"{name}/tilt_series"},
        }
        write_table(
            store,
            name,
            NAME,
            params.feature,
            table,
            provenance=provenance,
            overwrite=target.overwrite,
        )
        out[name] = table
    return out


def run(client: Any, target: Target, params: DetectParams) -> dict[str, pd.DataFrame]:
    """Boxes of every tilt of each tomogram (written to ``results/detect/<feature>``)."""
    if params.method == "fasterrcnn":
        return _fasterrcnn(client, target, params)
    done = run_stage(client, STAGE, target, params)
    return {name: w.tables[params.feature] for name, w in done.items()}


STAGE = Stage(NAME, DetectParams, plan=plan, check=check, order=order)
