"""The ``lift`` step of ``cryoflow run``: Algorithm 1 as one lazy graph per tomogram.

Same mathematics as ``cryoflow lift`` (:mod:`cryoflow.pipelines.lift`), built without any
intermediate ``compute`` so the run engine can write it chunk by chunk: the vote map
(:func:`cryoflow.backproject` of the binary 2D masks), the threshold search
(:func:`cryoflow.graph.threshold.threshold_counts_graph`, scored like
:func:`cryoflow.select_threshold`), and the label volume
(:func:`cryoflow.kernels.lift.assign_classes`) all stay Dask arrays; the chosen threshold
reaches the label blocks as a small array argument, not as a Python number.

Results under ``tomograms/<t>/results/lift/``: ``labels`` ``(z, y, x)`` uint8 (class ids of
:func:`cryoflow.pipelines.lift.class_ids` in the attributes), and per class ``c``:
``votes_<c>`` ``(z, y, x)``, ``threshold_<c>`` ``(1,)`` float64 (the chosen ``T``) and the
score curve ``thresholds_<c>``/``scores_<c>`` ``(candidate,)`` (a given ``T`` is the only
candidate, so its score is still recorded).
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from cryoflow.errors import ConfigError
from cryoflow.graph.threshold import counts_split, threshold_counts_graph
from cryoflow.io.layout import RESULTS, TOMOGRAMS
from cryoflow.kernels.lift import assign_classes
from cryoflow.kernels.threshold import iou_from_counts, parse_candidates
from cryoflow.pipelines.steps import Output, Plan, node_identity, tilt_series_input

STEP = "lift"


def _scores_block(counts: np.ndarray, k: int) -> np.ndarray:
    """Counts ``(n_tilts, 2K+1)`` -> mean IoU over tilts per candidate, ``(K,)`` float64."""
    return iou_from_counts(*counts_split(np.asarray(counts), k)).mean(axis=0)


def _best_block(scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The best candidate ``(1,)`` (first maximum: ties go to the lowest, like select_threshold)."""
    return np.array([candidates[int(np.argmax(scores))]], dtype=np.float64)


def _labels_block(
    votes: np.ndarray, thresholds: np.ndarray, n_tilts: list[int], ids: list[int]
) -> np.ndarray:
    """``votes`` ``(K, z, y, x)`` and thresholds ``(K,)`` -> labels ``(z, y, x)`` uint8."""
    return assign_classes(votes, [float(t) for t in thresholds], n_tilts, ids)


def binary_masks(maps: Any) -> da.Array:
    """2D maps ``(n, Y, U)`` as bool, by :func:`cryoflow.pipelines.lift.binarise`'s rule."""
    from cryoflow.pipelines.lift import binarise

    return binarise(maps)


def plan_lift(store: object, tomogram: str, params: Any) -> Plan:
    """Algorithm 1 on ``tomogram``'s 2D masks (see the module docstring for what is written).

    Parameters
    ----------
    params : cryoflow.pipelines.config.LiftParams
    """
    from cryoflow.io.store import open_result, read_geometry
    from cryoflow.pipelines.lift import class_ids, volume_shape

    # 1. inputs: the tilt series (geometry, shape) and one 2D map stack per class
    tilts, inputs = tilt_series_input(store, tomogram, "tilt_series")
    geometry = read_geometry(store, tomogram)
    shape = volume_shape(tilts, params.thickness)
    step, key = params.masks.split("/")
    classes = tuple(params.classes) or (key,)
    ids = class_ids(classes)
    chunks = tuple(min(int(params.chunk), s) for s in shape)
    votes: list[da.Array] = []
    chosen: list[da.Array] = []
    more: list[Output] = []
    for c in classes:
        rkey = f"{key}_{c}" if params.classes else key
        path = f"{TOMOGRAMS}/{tomogram}/{RESULTS}/{step}/{rkey}"
        maps = open_result(store, tomogram, step, rkey)
        inputs[path] = node_identity(store, path, "result")
        if tuple(maps.shape) != tuple(tilts.shape):
            raise ConfigError(
                f"{tomogram}: masks {step}/{rkey} have shape {tuple(maps.shape)}, "
                f"the tilt series {tuple(tilts.shape)}"
            )
        v, t, outs = lift_class(
            binary_masks(maps), geometry, shape, chunks, params.threshold, f"lift:{tomogram}", c
        )
        votes.append(v)
        chosen.append(t)
        more.extend(outs)
    # 4. labels: each voxel the best-supported passing class (one block holds every class)
    stack = da.stack(votes).rechunk({0: len(classes)})
    thresholds = da.concatenate(chosen).rechunk(-1)
    labels = da.blockwise(
        _labels_block,
        "zyx",
        stack,
        "kzyx",
        thresholds,
        "k",
        [geometry.n_tilts] * len(classes),
        None,
        [ids[c] for c in classes],
        None,
        concatenate=True,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), np.uint8),
        name=f"lift:{tomogram}-labels-{tokenize(stack.name, thresholds.name, ids)}",
    )
    attrs = {"classes": list(classes), "class_ids": ids, "masks": params.masks}
    return Plan(STEP, "labels", labels, ("z", "y", "x"), inputs, attrs=attrs, more=tuple(more))


def lift_class(
    masks: da.Array,
    geometry: Any,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    threshold: float | None,
    prefix: str,
    c: str,
) -> tuple[da.Array, da.Array, list[Output]]:
    """Algorithm 1 for one class, lazily: the vote map ``M``, the chosen ``T`` (a ``(1,)``
    array) and the outputs ``votes_<c>``, ``thresholds_<c>``, ``scores_<c>``, ``threshold_<c>``.

    ``threshold``: a fixed ``T`` (then the only candidate, still scored) or None to search.
    """
    import cryoflow

    # the vote map M (integer counts)
    v = da.asarray(cryoflow.backproject(masks, geometry, shape, chunks=chunks).data)
    v = v.rechunk(chunks)
    # T: the best-scoring candidate, lazily
    cands = (
        parse_candidates(None, geometry.n_tilts)
        if threshold is None
        else np.array([float(threshold)])
    )
    counts = threshold_counts_graph(
        v, masks, geometry, cands, prefix=f"{prefix}-threshold-{c}"
    ).rechunk(-1)
    tok = tokenize(counts.name, cands)
    scores = counts.map_blocks(
        _scores_block,
        cands.size,
        drop_axis=0,
        chunks=((cands.size,),),
        dtype=np.float64,
        meta=np.empty((0,), np.float64),
        name=f"{prefix}-scores-{c}-{tok}",
    )
    t = scores.map_blocks(
        _best_block,
        cands,
        chunks=((1,),),
        dtype=np.float64,
        meta=np.empty((0,), np.float64),
        name=f"{prefix}-best-{c}-{tok}",
    )
    cand_arr = da.from_array(cands, chunks=-1, name=f"lift-candidates-{tokenize(cands)}")
    outputs = [
        Output(f"votes_{c}", v, ("z", "y", "x"), {"class": c}),
        Output(f"thresholds_{c}", cand_arr, ("candidate",), {"class": c}),
        Output(f"scores_{c}", scores, ("candidate",), {"class": c}),
        Output(f"threshold_{c}", t, ("value",), {"class": c}),
    ]
    return v, t, outputs
