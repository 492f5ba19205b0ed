"""Particle sets: a dataset-level stack of subvolumes and its particle table, ``particles/<set>``.

Layout (see ``docs/design/particles.md``)::

    STORE.zarr/particles/<set>/          attrs.cryoflow = {kind: "particle_set", complete,
                                           write_id, provenance, attrs: {box_size, ...}}
      stack                              (particle, z, y, x) float32, chunks (batch, B, B, B)
      table/c0, c1, ...                  one column per array (names, dtypes in
                                           attrs.cryoflow.columns), row i = stack[i]

The table holds each particle's ``tomogram, x, y, z`` (the input coordinates, unchanged),
its tomogram's ``tilt_min_deg, tilt_max_deg`` and ``pixel_size_angstrom``, ``input_index``
(its row in the input particle file), where its box starts (``box_z0, box_y0, box_x0``),
``inside_fraction`` (the share of its box inside the volume), ``score`` when the picks had
one, and every other input column (angles, half set, class, ...). Later stages write
orientations, half sets or classes as new dataset-level nodes naming the set in their
provenance (:mod:`cryoflow.io.dataset_lineage`); ``cryoflow embed`` adds its latent
coordinates ``z0 .. z{D-1}`` to the table itself (:mod:`cryoflow.io.particle_latent`).

A set is written like every node: under a temporary name, chunks by Dask tasks, marked
complete, then published (:mod:`cryoflow.io.nodes`). An existing set is never replaced unless
``overwrite=True``; replacing one marks every dataset-level result derived from it stale.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from cryoflow.errors import GeometryError, StoreError
from cryoflow.io import nodes
from cryoflow.io.columns import decode_table, write_columns
from cryoflow.io.dataset_lineage import mark_dataset_dependents_stale
from cryoflow.io.layout import COMPRESSOR, create_dataset, finish, lazy, node_attrs, open_dataset
from cryoflow.io.names import is_valid_name, validate_name
from cryoflow.io.nodes import ATTR, PendingWrite
from cryoflow.io.writer import store_blocks

__all__ = [
    "PARTICLES",
    "STACK_DIMS",
    "list_particle_sets",
    "open_particles",
    "read_particle_table",
    "write_particle_set",
]

PARTICLES = "particles"
STACK = "stack"
TABLE = "table"
STACK_DIMS = ("particle", "z", "y", "x")


def _path(name: str) -> str:
    return f"{PARTICLES}/{validate_name(name, 'particle set name')}"


def write_particle_set(
    store: object,
    name: str,
    table: pd.DataFrame,
    stack: da.Array,
    *,
    provenance: dict[str, Any] | None,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    compute: bool = True,
    chunk_rows: int | None = None,
) -> PendingWrite:
    """Write particle set ``name``: ``stack`` ``(n, B, B, B)`` and its ``table`` (n rows).

    Parameters
    ----------
    stack : dask.array.Array of shape (n, B, B, B)
        Lazily extracted boxes (:func:`cryoflow.graph.extract.extract_stack`); each block
        (whole stored chunks: ``chunk_rows`` boxes, or a multiple of it) is written by the
        task that makes it.
    table : pandas.DataFrame, one row per particle, in stack order
    provenance : ``step``, ``parameters``, ``inputs`` (the volumes read, the picks)
    attrs : extra JSON attributes (``box_size`` is added)
    compute : ``False`` returns the pending write for a pipeline to run on its Client.
    chunk_rows : boxes per stored chunk (default: ``table.attrs["batch_size"]``, which
        :func:`~cryoflow.graph.extract.extract_stack` sets, else the stack's first block);
        every block but the last must hold a whole number of chunks.

    Raises
    ------
    AlreadyExistsError, GeometryError, StoreError, InvalidNameError
    """
    path = _path(name)
    if stack.ndim != 4 or len(set(stack.shape[1:])) != 1:
        raise GeometryError(f"particle set {name!r}: stack must be (n, B, B, B), got {stack.shape}")
    if len(table) != stack.shape[0]:
        raise GeometryError(
            f"particle set {name!r}: {len(table)} table rows but {stack.shape[0]} boxes"
        )
    first = stack.chunks[0][0] if stack.shape[0] else 1
    batch = int(chunk_rows or table.attrs.get("batch_size") or first)
    if (
        batch < 1
        or any(int(c) % batch for c in stack.chunks[0][:-1])
        or any(len(c) != 1 for c in stack.chunks[1:])
    ):
        raise GeometryError(
            f"particle set {name!r}: stack blocks must be (k * batch, B, B, B) with one batch "
            f"size (batch {batch}), got chunks {stack.chunks}"
        )
    box = int(stack.shape[1])
    root = create_dataset(store)
    if PARTICLES not in root:
        root.create_group(PARTICLES, attributes={ATTR: {"kind": "particle_sets"}})
    parent = nodes.child_group(root, PARTICLES)
    nodes.check_writable(parent, name, overwrite, "particle set")
    tmp = nodes.temp_leaf(name)
    meta = node_attrs("particle_set", provenance, "extract")
    meta["attrs"] = nodes.normalise_provenance(
        {"attrs": {**(attrs or {}), "box_size": box, "n_particles": len(table)}}
    )["attrs"]
    group = parent.create_group(tmp, attributes={ATTR: meta})
    pending = PendingWrite(parent, name, tmp, overwrite, group, description=f"write {path}")
    with nodes.removed_on_error(parent, tmp):
        arr = group.create_array(
            STACK,
            shape=stack.shape,
            dtype=np.float32,
            chunks=(batch, box, box, box),
            compressors=COMPRESSOR,
            dimension_names=STACK_DIMS,
            fill_value=0,
        )
        tab = group.create_group(TABLE)
        columns = write_columns(tab, table.reset_index(drop=True), chunk_rows=1 << 16)
    pending.final_attrs = {"columns": columns, "n_rows": len(table)}
    if overwrite:
        pending.before_publish.append(lambda: mark_dataset_dependents_stale(store, path))
    source = stack.astype(np.float32)
    pending.stages.append(lambda: store_blocks(source, arr, name=f"extract-{name}"))
    return finish(pending, compute)


def _open(store: object, name: str) -> Any:
    root = open_dataset(store)
    group = nodes.open_node(root, _path(name), what="particle set")
    kind = nodes.cryoflow_attrs(group).get("kind")
    if kind != "particle_set":
        raise StoreError(
            f"{nodes.store_label(store)}: {_path(name)!r} is a {kind}, not a particle set"
        )
    return group


def read_particle_table(store: object, name: str) -> pd.DataFrame:
    """The particle table of set ``name`` (row ``i`` describes box ``i`` of the stack)."""
    group = _open(store, name)
    return decode_table(nodes.child_group(group, TABLE), group.attrs[ATTR]["columns"])


def open_particles(store: object, set: str) -> xr.DataArray:  # noqa: A002 (contract name)
    """Particle set ``set`` as a lazy ``xarray.DataArray`` (``CONTRACT.md``, Python API).

    Returns
    -------
    xarray.DataArray of shape (n, B, B, B)
        Dims ``("particle", "z", "y", "x")``; every table column is a coordinate along
        ``particle``; ``attrs`` holds ``box_size``, ``n_particles``, the extraction's other
        attributes, ``provenance`` and ``latent`` (the record of the latent coordinates
        ``z0 .. z{D-1}`` that ``cryoflow embed`` stored, or None). The box centre is voxel ``B // 2`` on every axis.

    Raises
    ------
    NodeNotFoundError
        No such set (or an incomplete or stale one: ``StaleResultError``).
    """
    group = _open(store, set)
    table = decode_table(nodes.child_group(group, TABLE), group.attrs[ATTR]["columns"])
    arr = nodes.child_array(group, STACK)
    info = nodes.cryoflow_attrs(group)
    coords = {str(c): ("particle", table[c].to_numpy()) for c in table.columns}
    return xr.DataArray(
        lazy(arr, f"particles-{set}"),
        dims=STACK_DIMS,
        coords=coords,
        name=set,
        attrs={
            **dict(info.get("attrs", {})),
            "provenance": info.get("provenance", {}),
            "latent": info.get("latent"),  # z0 .. z{D-1}'s record (cryoflow.io.particle_latent)
        },
    )


def list_particle_sets(store: object) -> list[str]:
    """Names of the published (complete) particle sets, stale ones included, sorted."""
    root = open_dataset(store)
    if not nodes.exists(root, PARTICLES):
        return []
    out = []
    for n in nodes.list_dir(root, PARTICLES):
        meta = nodes.read_raw_metadata(root, f"{PARTICLES}/{n}") if is_valid_name(n) else None
        info = ((meta or {}).get("attributes", {}) or {}).get(ATTR, {})
        if isinstance(info, dict) and info.get("kind") == "particle_set" and info.get("complete"):
            out.append(n)
    return sorted(out)


def stack_chunks(n: int, box: int, batch: int) -> tuple[tuple[int, ...], ...]:
    """The Dask chunks of a stack of ``n`` boxes of side ``box`` in batches of ``batch``."""
    if n == 0:
        return ((0,), (box,), (box,), (box,))
    sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
    return (tuple(sizes), (box,), (box,), (box,))
