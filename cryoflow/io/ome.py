"""OME-Zarr (NGFF) v0.5 metadata and pyramid levels for volumes ``(z, y, x)``.

An image volume is a Zarr v3 group whose ``ome`` attribute holds one ``multiscales`` entry
with axes ``z, y, x`` (type ``space``, unit ``angstrom``) and datasets ``0, 1, 2``: level ``k``
is level ``k-1`` downsampled by 2 along every axis longer than 1. Images are downsampled by
the mean of 2x2x2 blocks (the level's voxel centres move by half a voxel, recorded as a
translation); label images by taking every second voxel (values stay valid labels).
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

NGFF_VERSION = "0.5"
AXES = ("z", "y", "x")


def level_factors(shape: tuple[int, ...], n_levels: int) -> list[tuple[int, ...]]:
    """Cumulative downsampling factors per level, ``(1, 1, 1)`` first.

    An axis is halved only while it is at least 2 voxels long at the previous level.
    """
    factors = [(1,) * len(shape)]
    cur = list(shape)
    for _ in range(1, n_levels):
        step = [2 if n >= 2 else 1 for n in cur]
        cur = [n // s for n, s in zip(cur, step, strict=True)]
        factors.append(tuple(f * s for f, s in zip(factors[-1], step, strict=True)))
    return factors


def downsample(level: da.Array, label: bool) -> da.Array:
    """One pyramid step of a ``(z, y, x)`` Dask array (see module docstring)."""
    step = {a: (2 if n >= 2 else 1) for a, n in enumerate(level.shape)}
    if label:
        return level[tuple(slice(None, None, s) for s in step.values())][
            tuple(slice(0, n // s) for n, s in zip(level.shape, step.values(), strict=True))
        ]
    out = da.coarsen(np.mean, level.astype(np.float32), step, trim_excess=True)
    return out.astype(level.dtype) if np.issubdtype(level.dtype, np.floating) else out


def multiscales_metadata(
    name: str,
    shape: tuple[int, ...],
    pixel_size_angstrom: float,
    n_levels: int,
    *,
    label: bool,
) -> dict[str, Any]:
    """The ``ome`` attribute of an NGFF v0.5 multiscale image (or label image) group."""
    datasets = []
    for k, f in enumerate(level_factors(shape, n_levels)):
        scale = [pixel_size_angstrom * fi for fi in f]
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
        if not label and any(fi > 1 for fi in f):
            shift = [(fi - 1) / 2 * pixel_size_angstrom for fi in f]
            transforms.append({"type": "translation", "translation": shift})
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    ome: dict[str, Any] = {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": [{"name": a, "type": "space", "unit": "angstrom"} for a in AXES],
                "datasets": datasets,
                "type": "subsample" if label else "mean",
            }
        ],
    }
    if label:
        ome["image-label"] = {"version": NGFF_VERSION}
    return ome


def level_scale(ome: dict[str, Any], level: int) -> list[float]:
    """The ``scale`` of dataset ``level`` (Å per voxel along z, y, x)."""
    ds = ome["multiscales"][0]["datasets"][level]
    for t in ds["coordinateTransformations"]:
        if t.get("type") == "scale":
            return [float(v) for v in t["scale"]]
    return [1.0, 1.0, 1.0]
