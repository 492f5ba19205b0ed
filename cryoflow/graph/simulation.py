"""The lazy graph of one simulated tomogram: the phantom, its tilt series and 2D truth.

One phantom task per tomogram (:func:`cryoflow.simulate.dataset.simulate_phantom`); its tilts
split into tasks of :func:`tilts_per_task` tilts (:func:`cryoflow.simulate.dataset.simulate_tilts`,
images and per-class 2D masks together).
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from cryoflow.simulate.dataset import SimulationConfig, simulate_phantom, simulate_tilts

__all__ = ["tilts_per_task", "tomogram_graph"]


def tilts_per_task(config: SimulationConfig) -> int:
    """Tilts projected per task: all of them for small volumes, 8 for large ones."""
    n = config.angles_deg.size
    return n if int(np.prod(config.shape)) <= 2**21 else min(n, 8)


def tomogram_graph(config: SimulationConfig, index: int) -> dict[str, Any]:
    """Lazy simulation of tomogram ``index``.

    Returns
    -------
    dict with
        ``density`` (Z, Y, X) float32, ``labels`` (Z, Y, X) uint8, ``tilt_series``
        (n_tilts, Y, X) float32, ``masks2d`` {class: (n_tilts, Y, X) uint8} (Dask arrays),
        ``particles`` and ``mito_boxes`` (lazy DataFrames).
    """
    name = config.tomogram_name(index)
    tok = tokenize(config.to_dict(), index)
    Z, Y, X = config.shape
    angles = config.angles_deg
    # 1. the phantom: one task
    phantom = dask.delayed(simulate_phantom, pure=True)(
        config, index, dask_key_name=f"simulate-phantom-{name}-{tok}"
    )

    def field(attr: str) -> Any:
        return dask.delayed(getattr, pure=True)(
            phantom, attr, dask_key_name=f"simulate-{attr}-{name}-{tok}"
        )

    density = da.from_delayed(
        field("density"), (Z, Y, X), dtype=np.float32, meta=np.empty((0, 0, 0), np.float32)
    )
    labels = da.from_delayed(
        field("labels"), (Z, Y, X), dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8)
    )
    # 2. tilt images and 2D masks, a block of tilts per task
    step = tilts_per_task(config)
    image_blocks: list[da.Array] = []
    mask_blocks: dict[str, list[da.Array]] = {c: [] for c in config.classes}
    for start in range(0, angles.size, step):
        idx = list(range(start, min(start + step, angles.size)))
        block = dask.delayed(simulate_tilts, pure=True, nout=2)(
            config, index, phantom, idx, dask_key_name=f"simulate-tilts-{name}-{start}-{tok}"
        )
        image_blocks.append(
            da.from_delayed(
                block[0], (len(idx), Y, X), dtype=np.float32, meta=np.empty((0, 0, 0), np.float32)
            )
        )
        for c in config.classes:
            mask_blocks[c].append(
                da.from_delayed(
                    block[1][c], (len(idx), Y, X), dtype=bool, meta=np.empty((0, 0, 0), bool)
                )
            )
    tilt_series = da.concatenate(image_blocks, axis=0)
    masks2d = {c: da.concatenate(b, axis=0).astype(np.uint8) for c, b in mask_blocks.items()}
    return {
        "density": density,
        "labels": labels,
        "tilt_series": tilt_series,
        "masks2d": masks2d,
        "particles": field("particles"),
        "mito_boxes": field("mito_boxes"),
    }
