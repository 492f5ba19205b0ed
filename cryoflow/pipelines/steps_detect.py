"""The ``detect`` step of ``cryoflow run``: the light 2D detector over every tilt.

Boxes around the connected components of ``results/annotate/<feature>`` above the model's
threshold (or a given one), per tilt, as ``cryoflow detect --method components`` makes them
(:func:`cryoflow.pipelines.detect.components_task`, one task per batch of tilts).
Chunked result: ``results/detect/<feature>_counts`` ``(tilt,)`` int32, the number of boxes on
each tilt (a quick look at where detection fails). The box table itself, whose length is known
only at the end, is the plan's end-of-step table ``results/detect/<feature>`` (columns
``tilt, class, score, y0, x0, y1, x1``), the input ``localize`` reads with
``boxes: detect/<feature>``. Faster R-CNN needs a training tomogram and is run with
``cryoflow detect --method fasterrcnn``.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import pandas as pd
from dask.base import tokenize

from cryoflow.io.layout import RESULTS, TOMOGRAMS
from cryoflow.pipelines.annotate import STEP as ANNOTATE
from cryoflow.pipelines.detect import box_table, components_task
from cryoflow.pipelines.steps import Plan, node_identity

STEP = "detect"


def _counts_block(
    probs: np.ndarray, feature: str, threshold: float, min_pixels: int, block_info: Any = None
) -> np.ndarray:
    """Boxes per tilt of one batch ``(b, Y, X)`` -> ``(b,)`` int32."""
    boxes = components_task(probs, 0, feature, threshold, min_pixels)
    return np.bincount(boxes["tilt"].to_numpy(dtype=np.int64), minlength=len(probs)).astype(
        np.int32
    )


def plan_detect(store: object, tomogram: str, params: Any) -> Plan:
    """The light detector on ``tomogram``'s probability maps of ``params.feature``.

    Parameters
    ----------
    params : cryoflow.pipelines.config.DetectParams
    """
    from cryoflow.io.store import open_result

    feature = params.feature
    path = f"{TOMOGRAMS}/{tomogram}/{RESULTS}/{ANNOTATE}/{feature}"
    probs = open_result(store, tomogram, ANNOTATE, feature)
    inputs = {path: node_identity(store, path, "probability maps")}
    threshold = (
        float(params.threshold)
        if params.threshold is not None
        else float(probs.attrs.get("threshold", 0.5))
    )
    data = probs.data.rechunk((params.batch_size, -1, -1))
    counts = data.map_blocks(
        _counts_block,
        feature,
        threshold,
        params.min_pixels,
        drop_axis=[1, 2],
        dtype=np.int32,
        meta=np.empty((0,), np.int32),
        name=f"detect:{tomogram}-counts-{tokenize(data.name, feature, threshold, params.min_pixels)}",
    )
    starts = np.concatenate([[0], np.cumsum(data.chunks[0])[:-1]]).astype(int)

    def finish(client: Any, arrays: dict[str, Any]) -> dict[str, pd.DataFrame]:
        tasks = [
            dask.delayed(components_task, pure=True)(
                block, int(s), feature, threshold, params.min_pixels
            )
            for block, s in zip(data.to_delayed().ravel(), starts, strict=True)
        ]
        return {feature: box_table(client.compute(tasks, sync=True))}

    return Plan(
        STEP,
        f"{feature}_counts",
        counts,
        ("tilt",),
        inputs,
        attrs={"feature": feature, "threshold": threshold, "method": "components"},
        tables=(feature,),
        finish=finish,
    )
