"""Applying a trained picker to a volume in memory: the score map and its picks.

The eager counterpart of :mod:`cryoflow.graph.pick` (the chunked, cluster-wide version), for
one tomogram at a time: the browser picker's quick predictions and tests. The volume (at the
picker's level) is normalised (mean 0, standard deviation 1), padded with zeros by the
network's halo, and scored block by block (``block`` core voxels per axis). Picks are the
score map's local maxima (:mod:`cryoflow.kernels.peaks`) at least half a particle diameter
apart and above the threshold, converted to level-0 ``x, y, z``.
"""

from __future__ import annotations

from itertools import product

import numpy as np
import pandas as pd

from cryoflow.kernels.peaks import local_maxima
from cryoflow.models.checkpoint import ModelConfig
from cryoflow.models.picknet import PickNet
from cryoflow.models.picktrain import level_to_voxels, normalise

__all__ = ["PICK_COLUMNS", "min_distance_px", "picks_from_scores", "score_volume"]

#: columns of a pick table (positions in level-0 voxels)
PICK_COLUMNS = ["tomogram", "x", "y", "z", "score"]


def score_volume(model: PickNet, volume: np.ndarray, *, block: int = 64) -> np.ndarray:
    """ndarray (Z, Y, X) float32 of pick probabilities over a volume at the picker's level."""
    vol = normalise(volume)
    h = model.halo
    padded = np.pad(vol, h, mode="constant")
    out = np.zeros(vol.shape, np.float32)
    for start in product(*(range(0, n, block) for n in vol.shape)):
        stop = [min(a + block, n) for a, n in zip(start, vol.shape, strict=True)]
        region = tuple(slice(a, b + 2 * h) for a, b in zip(start, stop, strict=True))
        out[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))] = model.score_block(
            padded[region]
        )
    return out


def min_distance_px(config: ModelConfig) -> float:
    """Picks are more than half a particle diameter apart (voxels of the picker's level)."""
    return 0.5 * float(config.spec.diameter_px)


def picks_from_scores(
    scores: np.ndarray, config: ModelConfig, tomogram: str, *, threshold: float | None = None
) -> pd.DataFrame:
    """The picks of a score map at the picker's level: :data:`PICK_COLUMNS`, best first."""
    thr = config.threshold if threshold is None else float(threshold)
    peaks = local_maxima(scores, min_distance=min_distance_px(config), threshold=thr)
    return peak_table(peaks, config, tomogram)


def peak_table(peaks: pd.DataFrame, config: ModelConfig, tomogram: str) -> pd.DataFrame:
    """A peak table (level voxels ``z, y, x``, ``score``) as picks in level-0 ``x, y, z``."""
    level = int(config.params.get("level", 0))
    xyz = level_to_voxels(peaks[["x", "y", "z"]].to_numpy(np.float64), level)
    out = pd.DataFrame(
        {
            "tomogram": [tomogram] * len(peaks),
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "score": peaks["score"].to_numpy(np.float64),
        }
    )
    return out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
