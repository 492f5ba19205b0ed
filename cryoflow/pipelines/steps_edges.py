"""The ``edges`` step of ``cryoflow run``: Algorithm 2 as one lazy graph per tomogram.

The graph builders of ``cryoflow edges`` (:mod:`cryoflow.graph.edges`) without its
intermediate writes: per-tilt edge maps, refined per-voxel sums ``S`` and ``E3D = S > T``.
Results under ``tomograms/<t>/results/edges/``: ``labels`` ``(z, y, x)`` uint8 (1 = edge),
``edges2d`` ``(tilt, y, x)`` bool and ``sums`` ``(z, y, x)`` uint16.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from cryoflow.pipelines.steps import Output, Plan, tilt_series_input

STEP = "edges"


def plan_edges(store: object, tomogram: str, params: Any) -> Plan:
    """Algorithm 2 on ``tomogram``'s tilt series.

    Parameters
    ----------
    params : cryoflow.pipelines.config.EdgesParams
    """
    from cryoflow.graph import edges as G
    from cryoflow.io.store import read_geometry
    from cryoflow.pipelines.lift import volume_shape

    # 1. input: the tilt series (n_tilts, Y, U) and its geometry
    tilts, inputs = tilt_series_input(store, tomogram, "tilt_series")
    geometry = read_geometry(store, tomogram)
    shape = volume_shape(tilts, params.thickness)
    images = -tilts.data if params.invert else tilts.data
    # 2. per-tilt edge maps (one chunk per tilt)
    e2d = G.edge_maps(
        images,
        sigma1=params.sigma1,
        sigma2=params.sigma2,
        alpha=params.alpha,
        denoise=params.denoise,
        denoise_size=params.denoise_size,
        name=f"edges:{tomogram}-2d",
    )
    # 3. refined sums S and E3D = S > T
    cz, cy, cx = (min(int(params.chunk), s) for s in shape)
    sums = G.edge_sums(
        e2d,
        geometry,
        shape,
        chunks=(cz, cy, cx),
        iterations=params.iterations,
        window=params.window,
        min_support=params.min_support,
        name=f"edges:{tomogram}-sums",
    )
    threshold = float(params.threshold)
    labels = da.map_blocks(
        _above,
        sums,
        threshold,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), np.uint8),
        name=f"edges:{tomogram}-labels-{tokenize(sums.name, threshold)}",
    )
    more = (
        Output("edges2d", e2d, ("tilt", "y", "x")),
        Output("sums", sums, ("z", "y", "x"), {"threshold": threshold}),
    )
    return Plan(
        STEP, "labels", labels, ("z", "y", "x"), inputs, attrs={"threshold": threshold}, more=more
    )


def _above(sums: np.ndarray, threshold: float) -> np.ndarray:
    """``(z, y, x)`` sums -> uint8 mask of ``sums > threshold``."""
    return (np.asarray(sums) > threshold).astype(np.uint8)
