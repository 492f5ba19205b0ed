"""The ``localize`` step of ``cryoflow run``: Algorithm 3 as one lazy graph per tomogram.

Same mathematics as ``cryoflow localize`` (:mod:`cryoflow.pipelines.localize`), built without
intermediate ``compute`` so the run engine writes it chunk by chunk: per class ``c``, the 2D
boxes painted as per-tilt masks (:func:`cryoflow.pipelines.localize.lazy_box_masks`), their
vote map and threshold search (:func:`cryoflow.pipelines.steps_lift.lift_class`), and the 3D
connected components of ``votes > T`` labelled chunkwise and merged across chunk borders
(:func:`cryoflow.graph.labels.label`). The 3D boxes have no size known in advance, so they are
not a chunked output: the plan's ``finish`` computes them from the staged labels and votes once
every chunk is written, and the engine stores them as the table ``boxes3d`` before it publishes
the arrays.

2D boxes come from ``boxes``: ``truth`` (the components of the simulator's
``truth/masks2d_<c>``, per tilt, optionally jittered; default class ``mito_membrane`` as in
``cryoflow localize --from-truth``), ``STEP/KEY`` of a box table in the store (what
``cryoflow detect`` writes), or a CSV/JSON file (rows of other tomograms ignored when it has a
``tomogram`` column).
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
from dask.base import tokenize

from cryoflow.errors import ConfigError
from cryoflow.io.boxes import read_boxes
from cryoflow.io.layout import RESULTS, TOMOGRAMS
from cryoflow.kernels.boxes import box_masks, boxes_from_masks
from cryoflow.pipelines.steps import Output, Plan, node_identity, tilt_series_input

STEP = "localize"
TRUTH_DEFAULT = ("mito_membrane",)
TABLE = "boxes3d"


def _truth_box_mask(
    block: np.ndarray, class_name: str, jitter_px: float, seed: int, block_info: Any = None
) -> np.ndarray:
    """One tilt's truth mask ``(1, Y, U)`` -> the mask of the boxes around its components."""
    tilt = int(block_info[0]["chunk-location"][0]) if block_info else 0
    boxes = boxes_from_masks(
        np.asarray(block) != 0, class_name, jitter_px=jitter_px, seed=seed + tilt
    )
    return box_masks(boxes.assign(tilt=0), 1, block.shape[1:], class_name=class_name)


def _box_source(
    store: object, tomogram: str, params: Any, inputs: dict[str, str]
) -> tuple[pd.DataFrame | None, tuple[str, ...]]:
    """The 2D box table (None for ``truth``) and the classes to localise; records inputs."""
    from cryoflow.io.results import read_table
    from cryoflow.pipelines.provenance import file_sha256

    if params.boxes == "truth":
        return None, tuple(params.classes) or TRUTH_DEFAULT
    if params.boxes.lower().endswith((".csv", ".json")):
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
    params: Any,
    inputs: dict[str, str],
    index: int,
) -> da.Array:
    """Lazy per-tilt box masks ``(n, Y, U)`` bool of class ``c``."""
    from cryoflow.io.store import open_result
    from cryoflow.pipelines.localize import lazy_box_masks

    if boxes is not None:
        return lazy_box_masks(
            boxes,
            shape[0],
            (shape[1], shape[2]),
            class_name=c,
            min_score=params.min_score,
            name=f"localize:{tomogram}-boxes-{c}",
        )
    key = f"masks2d_{c}"
    path = f"{TOMOGRAMS}/{tomogram}/{RESULTS}/truth/{key}"
    inputs[path] = node_identity(store, path, "truth masks")
    truth = open_result(store, tomogram, "truth", key).data.rechunk((1, -1, -1))
    seed = params.seed + 1000 * index
    return truth.map_blocks(
        _truth_box_mask,
        c,
        params.jitter_px,
        seed,
        dtype=bool,
        meta=np.empty((0, 0, 0), bool),
        name=f"localize:{tomogram}-truthboxes-{c}-{tokenize(truth.name, params.jitter_px, seed)}",
    )


def plan_localize(store: object, tomogram: str, params: Any) -> Plan:
    """Algorithm 3 on ``tomogram`` (see the module docstring for what is written).

    Parameters
    ----------
    params : cryoflow.pipelines.config.LocalizeParams
    """
    from cryoflow.graph.labels import label
    from cryoflow.io.store import read_geometry
    from cryoflow.pipelines.lift import volume_shape
    from cryoflow.pipelines.steps_lift import lift_class

    # 1. inputs: the tilt series (geometry, shape) and the 2D boxes
    tilts, inputs = tilt_series_input(store, tomogram, "tilt_series")
    geometry = read_geometry(store, tomogram)
    shape = volume_shape(tilts, params.thickness)
    chunks = tuple(min(int(params.chunk), s) for s in shape)
    boxes, classes = _box_source(store, tomogram, params, inputs)
    outputs: list[Output] = []
    for i, c in enumerate(classes):
        # 2. box masks -> vote map, threshold (Algorithm 1's selection) -> 3D components
        masks = _masks(store, tomogram, boxes, c, tuple(tilts.shape), params, inputs, i)
        votes, t, outs = lift_class(
            masks, geometry, shape, chunks, params.threshold, f"localize:{tomogram}", c
        )
        labels, _ = label(
            votes > t, connectivity=params.connectivity, name=f"localize:{tomogram}-label-{c}"
        )
        outputs.append(Output(f"labels_{c}", labels.rechunk(chunks), ("z", "y", "x"), {"class": c}))
        outputs.extend(outs)
    main, *more = outputs

    def finish(client: Any, arrays: dict[str, Any]) -> dict[str, pd.DataFrame]:
        return {TABLE: boxes_table(client, arrays, classes, params.min_voxels)}

    return Plan(
        STEP,
        main.key,
        main.data,
        main.dims,
        inputs,
        attrs={"class": classes[0], "classes": list(classes), "boxes": params.boxes},
        more=tuple(more),
        tables=(TABLE,),
        finish=finish,
    )


def boxes_table(
    client: Any, arrays: dict[str, Any], classes: tuple[str, ...], min_voxels: int
) -> pd.DataFrame:
    """3D boxes of every class from the written ``labels_<c>``/``votes_<c>``/``threshold_<c>``
    arrays (Zarr), computed on the cluster: per-chunk statistics merged in one task."""
    from cryoflow.pipelines.localize import boxes3d_table, class_boxes

    return boxes3d_table(
        [
            class_boxes(
                client,
                da.from_zarr(arrays[f"labels_{c}"]),
                da.from_zarr(arrays[f"votes_{c}"]),
                c,
                float(np.asarray(arrays[f"threshold_{c}"][...]).ravel()[0]),
                min_voxels,
            )
            for c in classes
        ]
    )
