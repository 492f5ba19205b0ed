"""The ``localize`` stage: the 2D-to-3D paper's Algorithm 3, 2D boxes per tilt -> 3D boxes.

Per tomogram and class ``c``: the class's 2D boxes painted into per-tilt masks
(:func:`cryoflow.graph.boxes.box_masks_graph`), their vote map and threshold search
(Algorithm 1's selection, :func:`cryoflow.graph.lift.lift_graph`; ``T`` given or searched),
and the 3D connected components of ``votes > T`` labelled chunkwise and merged across chunk
borders (:func:`cryoflow.graph.labels.label`), all lazy. Written under ``results/<out>/``:
``labels_<c>`` ``(z, y, x)`` int32, ``votes_<c>``, ``threshold_<c>``, the score curve
``thresholds_<c>``/``scores_<c>`` and the table ``boxes3d`` (:func:`boxes3d_columns`). The
3D boxes have no size known in advance, so they are not a chunked output: the plan's
``finish`` reduces the written labels and votes once every chunk is written.

2D boxes come from ``boxes``: ``truth`` (boxes around the components of the simulator's
``truth/masks2d_<c>`` per tilt, optionally jittered with ``seed + i`` for the ``i``-th class;
default class ``mito_membrane``), ``STEP/KEY`` of a box table in the store (what
``cryoflow detect`` writes), or a CSV/JSON file (a ``tomogram`` column, if present, selects
each tomogram's rows; relative to the pipeline file in ``cryoflow run``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, field_validator

from cryoflow.errors import ConfigError
from cryoflow.pipelines.stages.base import Finished, Output, Plan, Stage, StageParams
from cryoflow.pipelines.stages.eager import Target, run_stage
from cryoflow.pipelines.stages.fields import Chunk, Classes, Thickness, Threshold, is_step_key
from cryoflow.pipelines.stages.inputs import (
    block_chunks,
    node_identity,
    result_input,
    tilt_series_input,
    volume_shape,
)
from cryoflow.pipelines.stages.lift import chosen_thresholds, class_outputs

if TYPE_CHECKING:
    import pandas as pd

NAME = "localize"
TRUTH_DEFAULT = ("mito_membrane",)
TABLE = "boxes3d"
#: columns of ``boxes3d`` after :data:`cryoflow.kernels.boxes.BOX3D_COLUMNS`
EXTRA_COLUMNS = ["label", "n_voxels", "threshold"]


def boxes3d_columns() -> list[str]:
    """The columns of the ``boxes3d`` table."""
    from cryoflow.kernels.boxes import BOX3D_COLUMNS

    return [*BOX3D_COLUMNS, *EXTRA_COLUMNS]


class LocalizeParams(StageParams):
    """Algorithm 3: 2D boxes per tilt to 3D boxes (see the module docstring)."""

    boxes: str = Field(
        default="truth",
        description="2D boxes: truth (around the simulator's 2D masks), STEP/KEY of a stored "
        "box table (e.g. detect/granule), or a .csv/.json file",
    )
    classes: Classes = Field(
        default=(), description="classes to localise; none: every class in the boxes"
    )
    threshold: Threshold = None
    min_score: float = Field(default=0.0, ge=0, description="weaker 2D boxes are ignored")
    connectivity: int = Field(default=1, ge=1, le=3, description="1 faces, 2 edges, 3 corners")
    min_voxels: int = Field(default=1, ge=1, description="smaller 3D components are dropped")
    fragment_fraction: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="a 3D box inside another box of its class with fewer than this fraction "
        "of its voxels is a fragment of that object and is dropped (the slivers the vote "
        "threshold leaves along an object's edges); 0 keeps every box",
    )
    jitter_px: float = Field(default=0.0, ge=0, description="truth boxes: edge jitter (px, sd)")
    seed: int = Field(default=0, description="truth boxes: seed of the jitter")
    thickness: Thickness = None
    chunk: Chunk = 64

    @field_validator("boxes")
    @classmethod
    def _boxes(cls, v: str) -> str:
        if v == "truth" or _is_file(v) or is_step_key(v):
            return v
        raise ValueError(
            f"boxes must be 'truth', STEP/KEY of a stored table or a .csv/.json file, got {v!r}"
        )

    def with_base(self, base: Path) -> LocalizeParams:
        if _is_file(self.boxes) and not Path(self.boxes).is_absolute():
            return self.model_copy(update={"boxes": str(base / self.boxes)})
        return self


def _is_file(boxes: str) -> bool:
    return boxes.lower().endswith((".csv", ".json"))


def truth_boxes2d(
    client: Any,
    store: object,
    name: str,
    classes: Sequence[str],
    *,
    jitter_px: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """2D boxes around the components of the simulator's ``truth/masks2d_<class>`` maps."""
    import pandas as pd

    from cryoflow.io.store import open_result
    from cryoflow.kernels.boxes import boxes_from_masks

    tables = []
    for i, c in enumerate(classes):
        masks = client.compute(open_result(store, name, "truth", f"masks2d_{c}").data, sync=True)
        tables.append(
            boxes_from_masks(np.asarray(masks) != 0, c, jitter_px=jitter_px, seed=seed + i)
        )
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _box_source(
    store: object, tomogram: str, params: LocalizeParams, inputs: dict[str, str]
) -> tuple[pd.DataFrame | None, tuple[str, ...]]:
    """The 2D box table (None for ``truth``) and the classes to localise; records inputs."""
    from cryoflow.io.boxes import read_boxes
    from cryoflow.io.layout import RESULTS, TOMOGRAMS
    from cryoflow.io.results import read_table
    from cryoflow.pipelines.engine.provenance import file_sha256

    if params.boxes == "truth":
        return None, tuple(params.classes) or TRUTH_DEFAULT
    if _is_file(params.boxes):
        boxes = read_boxes(params.boxes, ndim=2)
        inputs[params.boxes] = file_sha256(params.boxes)
        if "tomogram" in boxes.columns:
            boxes = boxes[boxes["tomogram"].astype(str) == tomogram]
    else:
        step, key = params.boxes.split("/")
        path = f"{TOMOGRAMS}/{tomogram}/{RESULTS}/{step}/{key}"
        inputs[path] = node_identity(store, path, "box table")
        boxes = read_table(store, tomogram, step, key)
    classes = tuple(params.classes) or tuple(sorted(set(boxes["class"].astype(str))))
    if not classes:
        raise ConfigError(f"{tomogram}: no 2D boxes in {params.boxes}, so no class to localise")
    return boxes, classes


def _masks(
    store: object,
    tomogram: str,
    boxes: pd.DataFrame | None,
    c: str,
    shape: tuple[int, ...],
    params: LocalizeParams,
    inputs: dict[str, str],
    index: int,
) -> Any:
    """Lazy per-tilt box masks ``(n, Y, U)`` bool of class ``c``."""
    from cryoflow.graph.boxes import box_masks_graph, truth_box_masks_graph

    if boxes is not None:
        return box_masks_graph(
            boxes,
            shape[0],
            (shape[1], shape[2]),
            class_name=c,
            min_score=params.min_score,
            name=f"localize:{tomogram}-boxes-{c}",
        )
    truth = result_input(store, tomogram, "truth", f"masks2d_{c}", inputs, "truth masks")
    return truth_box_masks_graph(
        truth.data,
        c,
        jitter_px=params.jitter_px,
        seed=params.seed + index,
        name=f"localize:{tomogram}-truthboxes-{c}",
    )


def plan(store: object, tomogram: str, params: LocalizeParams) -> Plan:
    """Algorithm 3 on ``tomogram`` (see the module docstring for what is written)."""
    from cryoflow.graph.labels import label
    from cryoflow.graph.lift import lift_graph
    from cryoflow.io.store import read_geometry

    # 1. inputs: the tilt series (geometry, shape) and the 2D boxes
    tilts, inputs = tilt_series_input(store, tomogram, "tilt_series")
    geometry = read_geometry(store, tomogram)
    shape = volume_shape(tilts, params.thickness)
    chunks = block_chunks(shape, params.chunk)
    boxes, classes = _box_source(store, tomogram, params, inputs)
    outputs: list[Output] = []
    for i, c in enumerate(classes):
        # 2. box masks -> vote map, threshold (Algorithm 1's selection) -> 3D components
        masks = _masks(store, tomogram, boxes, c, tuple(tilts.shape), params, inputs, i)
        g = lift_graph(
            masks, geometry, shape, chunks, params.threshold, prefix=f"localize:{tomogram}-{c}"
        )
        labels, _ = label(
            g.votes > g.threshold,
            connectivity=params.connectivity,
            name=f"localize:{tomogram}-label-{c}",
        )
        outputs.append(Output(f"labels_{c}", labels.rechunk(chunks), ("z", "y", "x"), {"class": c}))
        outputs.extend(class_outputs(g, c))
    outputs[0] = Output(
        outputs[0].key,
        outputs[0].data,
        outputs[0].dims,
        {**outputs[0].attrs, "classes": list(classes), "boxes": params.boxes},
    )

    def finish(client: Any, arrays: dict[str, Any]) -> Finished:
        chosen = chosen_thresholds(arrays, classes)
        table = boxes_table(client, arrays, chosen, params.min_voxels, params.fragment_fraction)
        return Finished(
            tables={TABLE: table},
            attrs={f"votes_{c}": {"threshold": t} for c, t in chosen.items()},
        )

    return Plan(NAME, tuple(outputs), inputs, tables=(TABLE,), finish=finish)


def boxes_table(
    client: Any,
    arrays: dict[str, Any],
    thresholds: dict[str, float],
    min_voxels: int,
    fragment_fraction: float = 0.0,
) -> pd.DataFrame:
    """3D boxes of every class from the written ``labels_<c>``/``votes_<c>`` arrays (Zarr),
    computed on the cluster (per-chunk statistics merged in one task), with each class's ``T``;
    fragments dropped (:func:`~cryoflow.kernels.boxes.outermost` with ``fragment_fraction``)."""
    import pandas as pd

    from cryoflow.graph.labels import component_boxes
    from cryoflow.io.layout import lazy
    from cryoflow.kernels.boxes import outermost

    tables = []
    for c, t in thresholds.items():
        pending = component_boxes(
            lazy(arrays[f"labels_{c}"], f"labels_{c}"),
            lazy(arrays[f"votes_{c}"], f"votes_{c}"),
            c,
            min_voxels=min_voxels,
        )
        boxes = client.compute(pending, sync=True)
        if fragment_fraction > 0:
            boxes = outermost(boxes, fragment_fraction)
        boxes["threshold"] = t
        tables.append(boxes)
    if not tables:
        return pd.DataFrame(columns=boxes3d_columns())
    return pd.concat(tables, ignore_index=True)[boxes3d_columns()]


def with_boxes(
    params: LocalizeParams, boxes: Path | str | None, from_truth: bool
) -> LocalizeParams:
    """``params`` with the boxes of a command's ``--boxes FILE`` or ``--from-truth`` (exactly
    one of them)."""
    if (boxes is None) == (not from_truth):
        raise ConfigError("give exactly one of --boxes FILE or --from-truth")
    return LocalizeParams(**{**params.to_dict(), "boxes": "truth" if from_truth else str(boxes)})


def check_boxes(params: LocalizeParams) -> None:
    """Read a box file now (before any cluster starts), so a bad file fails at once."""
    if _is_file(params.boxes):
        from cryoflow.io.boxes import read_boxes

        read_boxes(params.boxes, ndim=2)


def run(
    client: Any, target: Target, params: LocalizeParams, *, export: Path | None = None
) -> pd.DataFrame:
    """Algorithm 3 on each tomogram; all 3D boxes with a ``tomogram`` column (also written to
    ``export``, CSV or JSON, when given)."""
    import pandas as pd

    done = run_stage(client, STAGE, target, params)
    tables = [w.tables[TABLE].assign(tomogram=name) for name, w in done.items()]
    columns = ["tomogram", *boxes3d_columns()]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)
    table = table[columns]
    if export is not None:
        from cryoflow.io.boxes import write_boxes

        write_boxes(export, table, ndim=3)
    return table


def order(params: LocalizeParams, before: list[str], after: list[str]) -> str | None:
    """A stored box table's step (if it is in the pipeline) must come first."""
    if params.boxes == "truth" or _is_file(params.boxes):
        return None
    source = params.boxes.split("/")[0]
    if source in after or source == NAME:
        return f"localize reads {params.boxes}: the {source} step must come before it"
    return None


STAGE = Stage(NAME, LocalizeParams, plan=plan, order=order)
