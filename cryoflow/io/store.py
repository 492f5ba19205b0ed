"""The cryoflow dataset store: one Zarr v3 group holding many tomograms.

Layout (see ``docs/design/store.md``)::

    STORE.zarr/                              attrs: cryoflow = {kind: dataset, version: 1}
      tomograms/<name>/                      attrs: cryoflow = {kind: tomogram}
        tilt_series                          (tilt, y, x); geometry, pixel size, provenance
        volumes/<key>/{0,1,2}                OME-Zarr v0.5 multiscale image (z, y, x), Å
        labels/<key>/{0,1,2}                 OME-Zarr v0.5 label image (masks)
        results/<step>/<key>                 any later stage's array, or a table (group)

Every node is written under a temporary name and published complete (see
:mod:`cryoflow.io.nodes`); readers refuse temporary, incomplete or unsafe nodes. Arrays are
Blosc/zstd compressed; tilt series use one tilt per chunk (tiles of 1024 x 1024 at most),
volumes 3D chunks of 128^3 (clipped to the shape).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from cryoflow.errors import GeometryError, NodeNotFoundError, StoreError
from cryoflow.geometry import TiltGeometry, as_geometry
from cryoflow.io import lineage, nodes, ome
from cryoflow.io.layout import (
    LABELS,
    PYRAMID_LEVELS,
    TILE_PX,
    TILT_SERIES,
    TOMOGRAMS,
    VOLUME_CHUNK,
    VOLUMES,
    begin,
    check_dtype,
    check_pixel_size,
    create_dataset,
    finish,
    lazy,
    list_tomograms,
    node_attrs,
    open_dataset,
    tilt_series_chunks,
    tomogram_group,
    volume_chunks,
)
from cryoflow.io.names import validate_name
from cryoflow.io.nodes import ATTR, PendingWrite
from cryoflow.io.results import (
    chunked_array,
    open_result,
    read_table,
    write_result,
    write_table,
)
from cryoflow.io.writer import as_dask, store_blocks

__all__ = [
    "PendingWrite",
    "create_dataset",
    "open_dataset",
    "list_tomograms",
    "write_tilt_series",
    "open_tilt_series",
    "read_geometry",
    "write_volume",
    "open_volume",
    "write_result",
    "open_result",
    "write_table",
    "read_table",
    "tilt_series_chunks",
    "volume_chunks",
]


# ---------------------------------------------------------------------------- tilt series
def write_tilt_series(
    store: object,
    name: str,
    images: Any,
    geometry: TiltGeometry | Sequence[float] | np.ndarray,
    pixel_size_angstrom: float,
    *,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
    compute: bool = True,
    tile_px: int = TILE_PX,
) -> PendingWrite:
    """Write a tilt series ``(tilt, y, x)`` with its geometry under ``tomograms/<name>``.

    Parameters
    ----------
    images : ndarray, dask array or DataArray of shape (n_tilts, Y, X)
    geometry : TiltGeometry or 1-D tilt angles in degrees, n_tilts long
    pixel_size_angstrom : float, > 0
    compute : bool
        ``True`` writes now (local Dask scheduler). ``False`` returns the pending write; run
        it on a cluster with ``pending.run(compute_fn)``.

    Raises
    ------
    GeometryError, StoreError, AlreadyExistsError, InvalidNameError
    """
    geom = as_geometry(geometry)
    shape = tuple(int(s) for s in images.shape)
    if len(shape) != 3:
        raise GeometryError(f"tilt series {name!r} must be 3-D (tilt, y, x), got shape {shape}")
    if geom.n_tilts != shape[0]:
        raise GeometryError(
            f"tilt series {name!r}: {shape[0]} images but {geom.n_tilts} tilt angles"
        )
    pixel = check_pixel_size(pixel_size_angstrom, name)
    dtype = check_dtype(images.dtype, f"tilt series {name!r}")
    chunks = tilt_series_chunks(shape, tile_px)
    source = as_dask(images, chunks).astype(dtype)
    attrs: dict[str, Any] = {
        ATTR: node_attrs("tilt_series", provenance, "ingest"),
        "pixel_size_angstrom": pixel,
        "geometry": geom.to_dict(),
    }
    parent, leaf, tmp, holder, node_name = begin(
        store, name, [TILT_SERIES], overwrite=overwrite, what="tilt series"
    )
    with nodes.removed_on_error(parent, tmp):
        arr = chunked_array(holder, node_name, shape, dtype, chunks, ("tilt", "y", "x"), attrs)
    pending = PendingWrite(parent, leaf, tmp, overwrite, arr, description=f"ingest {name}")
    lineage.stale_on_replace(pending, store, name, TILT_SERIES)
    pending.stages.append(lambda: store_blocks(source, arr, name=f"ingest-{name}"))
    return finish(pending, compute)


def open_tilt_series(store: object, name: str) -> xr.DataArray:
    """The tilt series of tomogram ``name``, lazily.

    Returns
    -------
    xarray.DataArray of shape (n_tilts, Y, X)
        Dims ``("tilt", "y", "x")``, coordinate ``angle`` (degrees) along ``tilt``,
        ``attrs["pixel_size_angstrom"]``, ``attrs["geometry"]`` (dict), ``attrs["provenance"]``.
    """
    root = open_dataset(store)
    tomogram_group(root, name)
    arr = nodes.open_node(root, f"{TOMOGRAMS}/{name}/{TILT_SERIES}", what="tilt series")
    geom = TiltGeometry.from_dict(arr.attrs["geometry"])
    return xr.DataArray(
        lazy(arr, f"tilt-series-{name}"),
        dims=("tilt", "y", "x"),
        coords={"angle": ("tilt", np.asarray(geom.angles_deg, dtype=np.float64))},
        name=name,
        attrs={
            "pixel_size_angstrom": float(arr.attrs["pixel_size_angstrom"]),
            "geometry": geom.to_dict(),
            "provenance": arr.attrs[ATTR].get("provenance", {}),
        },
    )


def read_geometry(store: object, name: str) -> TiltGeometry:
    """The :class:`TiltGeometry` stored with tomogram ``name``'s tilt series."""
    root = open_dataset(store)
    arr = nodes.open_node(
        root,
        f"{TOMOGRAMS}/{validate_name(name, 'tomogram name')}/{TILT_SERIES}",
        what="tilt series",
    )
    return TiltGeometry.from_dict(arr.attrs["geometry"])


# ---------------------------------------------------------------------------- volumes
def write_volume(
    store: object,
    name: str,
    key: str,
    volume: Any,
    *,
    pixel_size_angstrom: float,
    provenance: dict[str, Any] | None,
    kind: str = "image",
    overwrite: bool = False,
    multiscale: bool = True,
    compute: bool = True,
    chunk: int = VOLUME_CHUNK,
    attrs: dict[str, Any] | None = None,
) -> PendingWrite:
    """Write a volume ``(z, y, x)`` as an OME-Zarr v0.5 multiscale image.

    Images go to ``tomograms/<name>/volumes/<key>``, label images (``kind="label"``, masks)
    to ``tomograms/<name>/labels/<key>``; levels ``0, 1, 2`` (2x downsampling) unless
    ``multiscale=False`` (level ``0`` only).

    Parameters
    ----------
    volume : ndarray, dask array or DataArray of shape (Z, Y, X)
    attrs : dict, optional
        Extra JSON-serialisable attributes (e.g. ``tilt_range_deg`` of an ingested tomogram),
        returned by :func:`open_volume` in ``.attrs``.
    """
    if kind not in ("image", "label"):
        raise StoreError(f"volume kind must be 'image' or 'label', got {kind!r}")
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) != 3:
        raise GeometryError(f"volume {name}/{key} must be 3-D (z, y, x), got shape {shape}")
    pixel = check_pixel_size(pixel_size_angstrom, f"{name}/{key}")
    dtype = check_dtype(volume.dtype, f"volume {name}/{key}")
    label = kind == "label"
    section = LABELS if label else VOLUMES
    n_levels = PYRAMID_LEVELS if multiscale else 1
    source = as_dask(volume, volume_chunks(shape, chunk)).astype(dtype)
    meta = node_attrs(kind, provenance, "volume")
    meta["attrs"] = nodes.normalise_provenance({"attrs": attrs or {}})["attrs"]
    group_attrs = {
        "ome": ome.multiscales_metadata(key, shape, pixel, n_levels, label=label),
        ATTR: meta,
    }
    parent, leaf, tmp, holder, node_name = begin(
        store, name, [section, key], overwrite=overwrite, what=f"{kind} volume"
    )
    with nodes.removed_on_error(parent, tmp):
        group = holder.create_group(node_name, attributes=group_attrs)
    pending = PendingWrite(parent, leaf, tmp, overwrite, group, description=f"write {name}/{key}")
    lineage.stale_on_replace(pending, store, name, f"{section}/{key}")

    def stage(level: int) -> list[Any]:
        src = (
            source
            if level == 0
            else ome.downsample(lazy(nodes.child_array(group, str(level - 1)), "level"), label)
        )
        chunks = volume_chunks(src.shape, chunk)
        arr = chunked_array(group, str(level), src.shape, src.dtype, chunks, ome.AXES, {})
        aligned = src.rechunk(arr.chunks)
        return store_blocks(aligned, arr, name=f"volume-{name}-{key}-{level}")

    for level in range(n_levels):
        pending.stages.append(functools.partial(stage, level))
    return finish(pending, compute)


def _volume_keys(root: Any, base: str) -> str:
    """``"volumes tomogram; labels lift"`` (or ``"no volumes or labels"``), for messages."""
    parts = []
    for section in (VOLUMES, LABELS):
        if section in nodes.child_group(root, base):
            keys = sorted(nodes.child_group(nodes.child_group(root, base), section).group_keys())
            keys = [k for k in keys if not k.startswith(".")]
            if keys:
                parts.append(f"{section} {', '.join(keys)}")
    return "; ".join(parts) if parts else "no volumes or labels"


def open_volume(store: object, name: str, key: str, level: int = 0) -> xr.DataArray:
    """Volume ``key`` of tomogram ``name`` (an image, else a label image) at pyramid ``level``.

    Returns
    -------
    xarray.DataArray of shape (Z, Y, X)
        Dims ``("z", "y", "x")``; ``attrs["pixel_size_angstrom"]`` (of this level),
        ``attrs["kind"]`` (``"image"``/``"label"``), ``attrs["provenance"]``, and the extra
        attributes it was written with.
    """
    root = open_dataset(store)
    tomogram_group(root, name)
    validate_name(key, "volume key")
    base = f"{TOMOGRAMS}/{name}"
    if nodes.exists(root, f"{base}/{VOLUMES}/{key}"):
        section = VOLUMES
    elif nodes.exists(root, f"{base}/{LABELS}/{key}"):
        section = LABELS
    else:
        raise NodeNotFoundError(
            f"{nodes.store_label(store)}: tomogram {name!r} has no volume or label image "
            f"{key!r}; it has {_volume_keys(root, base)}"
        )
    group = nodes.open_node(root, f"{base}/{section}/{key}", what="volume")
    meta = group.attrs["ome"]
    n_levels = len(meta["multiscales"][0]["datasets"])
    if not 0 <= level < n_levels:
        raise NodeNotFoundError(
            f"{nodes.store_label(store)}: volume {name}/{key} has levels 0..{n_levels - 1}, got {level}"
        )
    arr = nodes.child_array(group, str(level))
    return xr.DataArray(
        lazy(arr, f"volume-{name}-{key}-{level}"),
        dims=ome.AXES,
        name=key,
        attrs={
            **dict(group.attrs[ATTR].get("attrs", {})),
            "pixel_size_angstrom": ome.level_scale(meta, level)[-1],
            "kind": group.attrs[ATTR]["kind"],
            "provenance": group.attrs[ATTR].get("provenance", {}),
        },
    )
