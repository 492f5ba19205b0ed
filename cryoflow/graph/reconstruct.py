"""Lazy weighted (ramp-filtered) back-projection of a tilt series.

Steps, all lazy: optional ``bin x bin`` mean-binning of the detector (``da.coarsen``,
trailing pixels dropped, geometry shifted to keep the centre:
:func:`cryoflow.geometry.binning.bin_geometry`), the ramp filter across the tilt axis of every
image (:func:`cryoflow.graph.ramp.ramp_graph`), the chunkwise back-projection
(:func:`cryoflow.graph.backproject.backproject_graph`) and the ``pi / n_tilts`` quadrature
scale.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from cryoflow.errors import ConfigError
from cryoflow.geometry import TiltGeometry
from cryoflow.geometry.binning import bin_geometry
from cryoflow.graph.backproject import backproject_graph
from cryoflow.graph.ramp import ramp_graph
from cryoflow.kernels.ramp import parse_filter

__all__ = ["weighted_backprojection"]


def weighted_backprojection(
    images: da.Array,
    geometry: TiltGeometry,
    *,
    thickness: int | None,
    filter: str = "ramp",
    bin: int = 1,
    interpolation: str = "linear",
    chunk: int = 128,
    prefix: str = "reconstruct",
) -> tuple[da.Array, TiltGeometry]:
    """Lazy (weighted) back-projection of a tilt series.

    Parameters
    ----------
    images : dask.array.Array of shape (n_tilts, V, U)
    geometry : TiltGeometry of the images
    thickness : int or None
        Volume depth Z in output voxels; None = the binned detector width.
    filter : {"ramp", "none"}
    bin : int
        Average ``bin x bin`` detector pixels first.
    interpolation : {"linear", "nearest"}
    chunk : int
        Output block edge in voxels.
    prefix : str
        Task names ``backproject-<prefix>-...``, ``ramp-...``.

    Returns
    -------
    volume : dask.array.Array of shape (Z, V // bin, U // bin), float32
    geometry : TiltGeometry of the (binned) series used.
    """
    parse_filter(filter)
    n, V, U = (int(s) for s in images.shape)
    f = int(bin)
    if V // f < 1 or U // f < 1:
        raise ConfigError(f"--bin {f} leaves no pixels of a {V} x {U} detector")
    stack = images.astype(np.float32)
    if f > 1:
        stack = da.coarsen(np.mean, stack, {1: f, 2: f}, trim_excess=True).astype(np.float32)
    geometry = bin_geometry(geometry, (V, U), f)
    _, Vb, Ub = stack.shape
    if filter == "ramp":  # across the tilt axis of every image, whatever its angle
        stack = ramp_graph(stack, geometry)
    Z = int(thickness) if thickness is not None else Ub
    c = int(chunk)
    volume = backproject_graph(
        stack,
        geometry,
        (Z, Vb, Ub),
        chunks=(min(c, Z), min(c, Vb), min(c, Ub)),
        interpolation=interpolation,
        prefix=f"backproject-{prefix}",
    )
    if filter == "ramp":
        volume = volume * np.float32(np.pi / n)
    return volume, geometry
