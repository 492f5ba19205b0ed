"""Lazy graphs of the 2D-to-3D paper's Algorithm 1: vote map, threshold search, label volume.

For one class, :func:`lift_graph` builds the vote map ``M`` (the chunkwise back-projection of
the binary 2D masks), the score of every candidate ``T`` (mean over tilts of
IoU(mask, FP_any(M > T)), from one max-projection: :mod:`cryoflow.graph.threshold`) and the
chosen ``T`` (first maximum, so ties go to the lowest, as :func:`cryoflow.select_threshold`),
all without computing anything; the chosen ``T`` is a one-element array. :func:`labels_graph`
turns several classes' vote maps and thresholds into one label volume
(:func:`cryoflow.kernels.lift.assign_classes`), each block receiving the thresholds as a
small array argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from cryoflow.geometry import TiltGeometry
from cryoflow.graph.backproject import backproject_graph
from cryoflow.graph.threshold import counts_split, threshold_counts_graph
from cryoflow.kernels.lift import assign_classes
from cryoflow.kernels.threshold import iou_from_counts, parse_candidates

__all__ = ["LiftGraph", "binarise", "labels_graph", "lift_graph"]


@dataclass(frozen=True)
class LiftGraph:
    """Algorithm 1 for one class, lazily.

    votes : (Z, Y, X) integer vote counts; candidates, scores : (K,) float64, the score
    curve; threshold : (1,) float64, the chosen ``T``.
    """

    votes: da.Array
    candidates: da.Array
    scores: da.Array
    threshold: da.Array


def binarise(maps: Any) -> da.Array:
    """2D maps ``(n, Y, U)`` -> bool.

    Probability maps stored as integers ``0..scale`` (``attrs["scale"]``, as ``cryoflow
    annotate`` writes them) are cut at ``attrs["threshold"]`` (default 0.5) times the scale;
    float maps at ``>= 0.5``; other integer maps (masks, label counts) at ``!= 0``.
    """
    attrs = getattr(maps, "attrs", None) or {}
    arr = da.asarray(getattr(maps, "data", maps))
    if arr.dtype == np.bool_:
        return arr
    if attrs.get("scale") is not None:
        return arr >= float(attrs.get("threshold", 0.5)) * float(attrs["scale"])
    if arr.dtype.kind == "f":
        return arr >= 0.5
    return arr != 0


def _scores_block(counts: np.ndarray, k: int) -> np.ndarray:
    """Counts ``(n_tilts, 2K+1)`` -> mean IoU over tilts per candidate, ``(K,)`` float64."""
    return iou_from_counts(*counts_split(np.asarray(counts), k)).mean(axis=0)


def _best_block(scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The best candidate ``(1,)`` (first maximum: ties go to the lowest)."""
    return np.array([candidates[int(np.argmax(scores))]], dtype=np.float64)


def lift_graph(
    masks: da.Array,
    geometry: TiltGeometry,
    shape: tuple[int, int, int],
    chunks: tuple[int, ...],
    threshold: float | None = None,
    *,
    prefix: str = "lift",
) -> LiftGraph:
    """Algorithm 1 for one class's binary masks ``(n_tilts, Y, U)``.

    ``threshold``: a fixed ``T`` (then the only candidate, still scored) or None to search
    every integer ``0 .. n_tilts-1``. Tasks are named ``<prefix>-...``.
    """
    votes = backproject_graph(masks, geometry, shape, chunks=chunks).rechunk(chunks)
    cands = (
        parse_candidates(None, geometry.n_tilts)
        if threshold is None
        else np.array([float(threshold)])
    )
    counts = threshold_counts_graph(
        votes, masks, geometry, cands, prefix=f"{prefix}-threshold"
    ).rechunk(-1)
    tok = tokenize(counts.name, cands)
    scores = counts.map_blocks(
        _scores_block,
        cands.size,
        drop_axis=0,
        chunks=((cands.size,),),
        dtype=np.float64,
        meta=np.empty((0,), np.float64),
        name=f"{prefix}-scores-{tok}",
    )
    best = scores.map_blocks(
        _best_block,
        cands,
        chunks=((1,),),
        dtype=np.float64,
        meta=np.empty((0,), np.float64),
        name=f"{prefix}-best-{tok}",
    )
    candidates = da.from_array(cands, chunks=-1, name=f"lift-candidates-{tokenize(cands)}")
    return LiftGraph(votes, candidates, scores, best)


def _labels_block(
    votes: np.ndarray, thresholds: np.ndarray, n_tilts: list[int], ids: list[int]
) -> np.ndarray:
    """``votes`` ``(K, z, y, x)`` and thresholds ``(K,)`` -> labels ``(z, y, x)`` uint8."""
    return assign_classes(votes, [float(t) for t in thresholds], n_tilts, ids)


def labels_graph(
    votes: Sequence[da.Array],
    thresholds: Sequence[da.Array],
    n_tilts: Sequence[int],
    class_ids: Sequence[int],
    *,
    prefix: str = "lift",
) -> da.Array:
    """One label volume ``(Z, Y, X)`` uint8 from K classes' vote maps and ``(1,)`` thresholds:
    each voxel the best-supported passing class (one block holds every class)."""
    stack = da.stack(list(votes)).rechunk({0: len(votes)})
    chosen = da.concatenate(list(thresholds)).rechunk(-1)
    return da.blockwise(
        _labels_block,
        "zyx",
        stack,
        "kzyx",
        chosen,
        "k",
        list(n_tilts),
        None,
        list(class_ids),
        None,
        concatenate=True,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), np.uint8),
        name=f"{prefix}-labels-{tokenize(stack.name, chosen.name, list(class_ids))}",
    )
