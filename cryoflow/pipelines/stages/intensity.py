"""The ``intensity`` stage: robust intensity statistics of a whole dataset's tilt series.

A dataset-level stage (:mod:`cryoflow.pipelines.engine.rounds`): the items are every tilt
image of every tomogram, in order; each round maps batches of images to partial statistics
``(n, mean, M2)`` of their pixels, combines them (Chan et al.'s pairwise update, in a fixed
tree) and takes the mean and standard deviation of all of them. Round 1 uses every pixel;
round ``k > 1`` only the pixels within ``clip`` standard deviations of round ``k - 1``'s mean
(iterative sigma clipping, so gold fiducials, dead pixels and empty margins do not set a
dataset's normalisation). Written under the dataset's ``results/intensity/``: ``mean``,
``std`` and ``count`` ``(1,)`` of the last round and ``history`` ``(round, stat)`` (the mean,
std and count of every round). Networks that normalise across tomograms can read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from cryoflow.pipelines.stages.base import Stage, StageParams
from cryoflow.pipelines.stages.eager import Target

NAME = "intensity"
OUTPUTS = ("mean", "std", "count", "history")


class IntensityParams(StageParams):
    """Dataset-wide sigma-clipped mean and standard deviation of the tilt series' pixels."""

    clip: float = Field(default=3.0, gt=0, description="keep pixels within clip x std of the mean")
    rounds: int = Field(default=4, ge=1, le=100, description="rounds (the first keeps every pixel)")
    batch_size: int = Field(default=8, ge=1, description="tilt images per task")


@dataclass(frozen=True)
class _Images:
    """The items: tilt image ``i`` is tilt ``i - first[j]`` of ``names[j]``."""

    store: Any
    names: tuple[str, ...]
    first: tuple[int, ...]  # item index of each tomogram's first tilt, and the total last

    def read(self, start: int, stop: int) -> list[np.ndarray]:
        """Images ``start:stop`` as float64 blocks, one per tomogram they belong to."""
        from cryoflow.io.chunks import read_checked
        from cryoflow.io.layout import TILT_SERIES, TOMOGRAMS, open_dataset
        from cryoflow.io.nodes import open_node

        root = open_dataset(self.store)
        blocks = []
        for j, name in enumerate(self.names):
            a, b = max(start, self.first[j]), min(stop, self.first[j + 1])
            if a < b:
                arr = open_node(root, f"{TOMOGRAMS}/{name}/{TILT_SERIES}", what="tilt series")
                offset = self.first[j]
                block = read_checked(arr, slice(a - offset, b - offset))
                blocks.append(block.astype(np.float64, copy=False))
        return blocks


def moments(x: np.ndarray) -> np.ndarray:
    """``(n, mean, M2)`` of the values ``x`` (``M2`` = sum of squared deviations), float64."""
    n = x.size
    if n == 0:
        return np.zeros(3)
    mean = float(x.mean())
    return np.array([n, mean, float(np.square(x - mean).sum())])


def combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The moments of two sets of values together (Chan, Golub and LeVeque's update)."""
    na, nb = a[0], b[0]
    if na == 0 or nb == 0:
        return a if nb == 0 else b
    n = na + nb
    delta = b[1] - a[1]
    return np.array([n, a[1] + delta * nb / n, a[2] + b[2] + delta * delta * na * nb / n])


def plan(store: object, names: list[str], params: IntensityParams) -> Any:
    """The rounds over every tilt image of ``names`` (see the module docstring)."""
    from cryoflow.io.layout import TILT_SERIES, TOMOGRAMS
    from cryoflow.io.store import open_tilt_series
    from cryoflow.pipelines.engine.rounds import Rounds
    from cryoflow.pipelines.stages.inputs import node_identity

    inputs, sizes = {}, []
    for name in names:
        path = f"{TOMOGRAMS}/{name}/{TILT_SERIES}"
        inputs[path] = node_identity(store, path, "tilt series")
        sizes.append(int(open_tilt_series(store, name).shape[0]))
    first = tuple(int(v) for v in np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]))
    images = _Images(store, tuple(names), first)
    clip = float(params.clip)

    def start() -> dict[str, np.ndarray]:
        return {
            "mean": np.zeros(1),
            "std": np.full(1, np.inf),
            "count": np.zeros(1),
            "history": np.zeros((0, 3)),
        }

    def map_batch(state: dict[str, np.ndarray], a: int, b: int) -> np.ndarray:
        mean, std = float(state["mean"][0]), float(state["std"][0])
        out = np.zeros(3)
        for block in images.read(a, b):
            x = block.ravel()
            x = x[np.isfinite(x)]
            if np.isfinite(std):
                x = x[np.abs(x - mean) <= clip * std]
            out = combine(out, moments(x))
        return out

    def update(state: dict[str, np.ndarray], total: Any, k: int) -> dict[str, np.ndarray]:
        n, mean, m2 = (float(v) for v in (total if total is not None else np.zeros(3)))
        std = float(np.sqrt(m2 / n)) if n else 0.0
        history = np.vstack([state["history"].reshape(-1, 3), [[mean, std, n]]])
        return {
            "mean": np.array([mean]),
            "std": np.array([std]),
            "count": np.array([n]),
            "history": history,
        }

    return Rounds(
        NAME,
        OUTPUTS,
        n_items=first[-1],
        batch_size=params.batch_size,
        rounds=params.rounds,
        inputs=inputs,
        start=start,
        map=map_batch,
        combine=combine,
        update=update,
        dims={
            "mean": ("value",),
            "std": ("value",),
            "count": ("value",),
            "history": ("round", "stat"),
        },  # fmt: skip
        attrs={"history_columns": ["mean", "std", "count"], "clip": clip},
    )


def run(client: Any, target: Target, params: IntensityParams) -> Any:
    """The statistics of ``target.names`` of ``target.store`` (every complete tomogram when
    empty): the same rounds as ``cryoflow run``, resumed from the store; returns
    :class:`~cryoflow.pipelines.engine.rounds.RoundsDone`."""
    from cryoflow.pipelines.engine.rounds import run_rounds
    from cryoflow.pipelines.stages.inputs import select_tomograms

    names = list(target.names) or select_tomograms(target.store)
    return run_rounds(client, target.store, plan(target.store, names, params), params.to_dict())


STAGE = Stage(NAME, IntensityParams, dataset=plan)
