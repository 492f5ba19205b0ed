"""The ``lift`` stage: the 2D-to-3D paper's Algorithm 1 on every tomogram's 2D masks.

For each class: the 2D maps ``results/<STEP>/<KEY>`` (or ``<KEY>_<class>`` per class),
binarised (:func:`cryoflow.graph.lift.binarise`: annotate's probability maps at their
``threshold`` attribute), back-projected into vote counts ``M``, and the threshold ``T`` whose
``M > T`` re-projects best onto the maps (the score of every candidate is kept), all in one
lazy graph (:mod:`cryoflow.graph.lift`). Written under ``results/<out>/``: per class
``votes_<c>`` ``(z, y, x)``, ``threshold_<c>`` ``(1,)`` and the score curve
``thresholds_<c>``/``scores_<c>`` ``(candidate,)`` (``threshold`` in their attributes), and
the label volume: each voxel the passing class with the highest support (votes / n_tilts),
else 0. ``cryoflow lift`` writes the labels as the OME-Zarr label image ``labels/<out>``;
``cryoflow run`` as ``results/lift/labels``. Class ids are the simulator's
(:data:`cryoflow.simulate.classes.CLASS_IDS`) when every class is one of its names, else
``1..K`` in the order given; they are in the labels' attributes (``class_ids``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from cryoflow.errors import ConfigError
from cryoflow.pipelines.stages.base import Finished, Output, Plan, Stage, StageParams
from cryoflow.pipelines.stages.eager import Target, run_stage
from cryoflow.pipelines.stages.fields import Chunk, Classes, StepKey, Thickness, Threshold
from cryoflow.pipelines.stages.inputs import (
    block_chunks,
    result_input,
    tilt_series_input,
    volume_shape,
)

NAME = "lift"
LABELS = "labels"


class LiftParams(StageParams):
    """Algorithm 1: 2D masks of every tilt -> a 3D label volume (see the module docstring)."""

    masks: StepKey = Field(
        default="truth/masks2d",
        description="STEP/KEY of the 2D maps (tilt, y, x): truth/masks2d (simulator) or "
        "annotate/<feature>",
    )
    classes: Classes = Field(
        default=(), description="classes: maps are read from STEP/KEY_<class>; none: KEY itself"
    )
    threshold: Threshold = None
    thickness: Thickness = None
    chunk: Chunk = 64

    def maps(self) -> tuple[str, str, tuple[str, ...]]:
        """``(step, key, classes)``; without classes, one class named after ``key``."""
        step, key = self.masks.split("/")
        return step, key, tuple(self.classes) or (key,)


def class_ids(classes: Sequence[str]) -> dict[str, int]:
    """Label id of each class: the simulator's ids when all are known, the values themselves
    when all are positive integers (a user's masks, ``cryoflow lift --masks``), else ``1..K``."""
    from cryoflow.simulate.classes import CLASS_IDS

    if all(c.isdigit() and int(c) > 0 for c in classes):
        return {c: int(c) for c in classes}
    if all(c in CLASS_IDS and CLASS_IDS[c] > 0 for c in classes):
        return {c: CLASS_IDS[c] for c in classes}
    return {c: i + 1 for i, c in enumerate(classes)}


def class_outputs(graph: Any, c: str) -> list[Output]:
    """``votes_<c>``, ``thresholds_<c>``, ``scores_<c>``, ``threshold_<c>`` of one class's
    :class:`cryoflow.graph.lift.LiftGraph`."""
    return [
        Output(f"votes_{c}", graph.votes, ("z", "y", "x"), {"class": c}),
        Output(f"thresholds_{c}", graph.candidates, ("candidate",), {"class": c}),
        Output(f"scores_{c}", graph.scores, ("candidate",), {"class": c}),
        Output(f"threshold_{c}", graph.threshold, ("value",), {"class": c}),
    ]


def chosen_thresholds(arrays: dict[str, Any], classes: Sequence[str]) -> dict[str, float]:
    """The chosen ``T`` of each class, from the written ``threshold_<c>`` arrays."""
    return {c: float(np.asarray(arrays[f"threshold_{c}"][...]).ravel()[0]) for c in classes}


def threshold_attrs(arrays: dict[str, Any], classes: Sequence[str]) -> Finished:
    """Each class's ``T`` in the attributes of its vote map and score curve."""
    chosen = chosen_thresholds(arrays, classes)
    keys = ("votes", "thresholds", "scores")
    return Finished(attrs={f"{k}_{c}": {"threshold": t} for c, t in chosen.items() for k in keys})


def plan(store: object, tomogram: str, params: LiftParams) -> Plan:
    """Algorithm 1 on ``tomogram`` (see the module docstring for what is written)."""
    from cryoflow.graph.lift import binarise, labels_graph, lift_graph
    from cryoflow.io.store import read_geometry

    # 1. inputs: the tilt series (geometry, shape) and one 2D map stack per class
    tilts, inputs = tilt_series_input(store, tomogram, "tilt_series")
    geometry = read_geometry(store, tomogram)
    shape = volume_shape(tilts, params.thickness)
    chunks = block_chunks(shape, params.chunk)
    step, key, classes = params.maps()
    ids = class_ids(classes)
    graphs, outputs = [], []
    for c in classes:
        rkey = f"{key}_{c}" if params.classes else key
        maps = result_input(store, tomogram, step, rkey, inputs)
        if tuple(maps.shape) != tuple(tilts.shape):
            raise ConfigError(
                f"{tomogram}: masks {step}/{rkey} have shape {tuple(maps.shape)}, "
                f"the tilt series {tuple(tilts.shape)}"
            )
        # 2. per class: votes, the threshold search and the chosen T
        g = lift_graph(
            binarise(maps), geometry, shape, chunks, params.threshold, prefix=f"lift:{tomogram}-{c}"
        )
        graphs.append(g)
        outputs.extend(class_outputs(g, c))
    # 3. labels: each voxel the best-supported passing class
    labels = labels_graph(
        [g.votes for g in graphs],
        [g.threshold for g in graphs],
        [geometry.n_tilts] * len(classes),
        [ids[c] for c in classes],
        prefix=f"lift:{tomogram}",
    )
    attrs = {"classes": list(classes), "class_ids": ids, "masks": params.masks}
    main = Output(LABELS, labels, ("z", "y", "x"), attrs, volume="label")

    def finish(client: Any, arrays: dict[str, Any]) -> Finished:
        return threshold_attrs(arrays, classes)

    pixel = float(tilts.attrs["pixel_size_angstrom"])
    return Plan(NAME, (main, *outputs), inputs, finish=finish, pixel_size_angstrom=pixel)


def order(params: LiftParams, before: list[str], after: list[str]) -> str | None:
    """The step that makes the masks (if it is in the pipeline) must come first."""
    source = params.masks.split("/")[0]
    if source in after or source == NAME:
        return f"lift reads {params.masks}: the {source} step must come before it"
    return None


@dataclass(frozen=True)
class LiftedClass:
    """One class lifted to 3D on a client: its vote map (persisted) and the threshold search."""

    name: str
    votes: Any  # dask array (Z, Y, X), int, persisted on the cluster
    threshold: float
    thresholds: np.ndarray  # (n_candidates,)
    scores: np.ndarray  # (n_candidates,)
    n_tilts: int


def lift_masks(
    client: Any,
    masks: Any,
    geometry: Any,
    shape: tuple[int, int, int],
    *,
    name: str,
    threshold: float | None = None,
    chunks: int = 64,
) -> LiftedClass:
    """Algorithm 1 on 2D masks held in memory or lazily (not in a store), on ``client``.

    Parameters
    ----------
    masks : array of shape (n_tilts, Y, U)
        NumPy, Dask or xarray; binarised by :func:`cryoflow.graph.lift.binarise`.
    threshold : float or None
        None searches ``T`` (every integer candidate); a number is the only candidate.
    """
    import dask.array as da

    from cryoflow.graph.lift import binarise, lift_graph

    lazy = masks if hasattr(masks, "attrs") or isinstance(masks, da.Array) else None
    if lazy is None:
        lazy = da.from_array(np.asarray(masks), chunks=(-1, 64, -1))
    m = binarise(lazy)
    g = lift_graph(
        m, geometry, shape, block_chunks(shape, chunks), threshold, prefix=f"lift-{name}"
    )
    votes = client.persist(g.votes)
    t, ts, sc = client.compute([g.threshold, g.candidates, g.scores], sync=True)
    return LiftedClass(name, votes, float(t[0]), np.asarray(ts), np.asarray(sc), geometry.n_tilts)


def run(client: Any, target: Target, params: LiftParams) -> dict[str, dict[str, Any]]:
    """Algorithm 1 on each tomogram; per tomogram the chosen ``T`` of each class, the class
    ids and the label volume (read back lazily)."""
    from cryoflow.io.layout import open_dataset
    from cryoflow.io.store import open_volume

    done = run_stage(client, STAGE, target, params)
    _, _, classes = params.maps()
    root: Any = open_dataset(target.store)
    summary = {}
    for name, w in done.items():
        arrays = {
            f"threshold_{c}": root[f"tomograms/{name}/{w.locations[f'threshold_{c}']}"]
            for c in classes
        }
        summary[name] = {
            "thresholds": chosen_thresholds(arrays, classes),
            "class_ids": class_ids(classes),
            "labels": open_volume(target.store, name, w.out).data,
        }
    return summary


STAGE = Stage(NAME, LiftParams, plan=plan, order=order)
