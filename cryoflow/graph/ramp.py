"""Lazy ramp filtering of a tilt series across its tilt axis (never computes).

Each tilt is filtered along its own detector direction
(:func:`cryoflow.geometry.tilt_axis.filter_directions`) by the eager kernel
:func:`cryoflow.kernels.ramp.ramp_filter`. The chunks follow what the kernel needs: one tilt per
chunk and whole rows (row slabs of at most ``ROWS`` rows) when every direction is along the
rows, whole columns (column slabs) when every direction is along the columns, whole images
otherwise (a rotated tilt axis, a dual-axis series).
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from cryoflow.errors import GeometryError
from cryoflow.geometry import TiltGeometry
from cryoflow.geometry.tilt_axis import filter_directions
from cryoflow.kernels.ramp import AXIS_TOL, ramp_filter

ROWS = 256  # rows (columns) per chunk on the 1-D paths


def ramp_chunks(directions: np.ndarray, shape: tuple[int, int, int]) -> dict[int, int]:
    """Dask chunks ``{axis: size}`` that give :func:`ramp_filter` the lines it needs."""
    _, V, U = shape
    if np.all(np.abs(directions[:, 0]) < AXIS_TOL):
        return {0: 1, 1: min(V, ROWS), 2: -1}
    if np.all(np.abs(directions[:, 1]) < AXIS_TOL):
        return {0: 1, 1: -1, 2: min(U, ROWS)}
    return {0: 1, 1: -1, 2: -1}


def _ramp_block(block: np.ndarray, directions: np.ndarray, block_info: Any = None) -> np.ndarray:
    t0, t1 = block_info[0]["array-location"][0]
    return ramp_filter(block, directions[t0:t1])


def ramp_graph(images: da.Array, geometry: TiltGeometry, *, prefix: str = "ramp") -> da.Array:
    """Lazy ramp-filtered tilt series.

    Parameters
    ----------
    images : dask.array.Array of shape (n_tilts, V, U)
    geometry : TiltGeometry
        The geometry of ``images`` (n_tilts projections); sets each tilt's filter direction.

    Returns
    -------
    dask.array.Array of shape (n_tilts, V, U), float32, one tilt per chunk.
    """
    n, V, U = (int(s) for s in images.shape)
    if geometry.n_tilts != n:
        raise GeometryError(f"images hold {n} tilts but the geometry has {geometry.n_tilts}")
    directions = filter_directions(geometry)
    stack = images.astype(np.float32).rechunk(ramp_chunks(directions, (n, V, U)))
    return stack.map_blocks(
        _ramp_block,
        directions=directions,
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
        name=f"{prefix}-{tokenize(stack.name, directions)}",
    )
