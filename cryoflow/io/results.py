"""Results of later stages: labelled arrays and tables under ``tomograms/<name>/results/<step>/<key>``.

An array result is one Zarr array with ``dimension_names``; a table is a group with one 1-D
array per column (``c0``, ``c1``, ... in column order; names and dtypes in the attributes).
Text columns are stored as integer codes plus a list of categories, so no object or
variable-length data type ever enters the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import xarray as xr

from cryoflow.errors import StoreError
from cryoflow.io import lineage, nodes
from cryoflow.io.columns import decode_table, write_columns
from cryoflow.io.layout import (
    COMPRESSOR,
    RESULTS,
    TOMOGRAMS,
    begin,
    check_dtype,
    finish,
    lazy,
    node_attrs,
    open_dataset,
    tomogram_group,
)
from cryoflow.io.names import validate_name
from cryoflow.io.nodes import ATTR, PendingWrite
from cryoflow.io.writer import as_dask, store_blocks


def result_chunks(shape: Sequence[int], dims: Sequence[str]) -> tuple[int, ...]:
    """Default chunks: one tilt per chunk along ``tilt``; 128 (3-D) or 1024 (2-D) elsewhere."""
    side = 128 if len(shape) >= 3 else 1024 if len(shape) == 2 else 1 << 20
    return tuple(
        1 if d == "tilt" else max(1, min(int(n), side)) for n, d in zip(shape, dims, strict=True)
    )


def chunked_array(
    group: Any,
    name: str,
    shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int],
    dims: Sequence[str],
    attributes: dict[str, Any],
) -> Any:
    """A new array ``name`` of ``group`` as every cryoflow array is made: the store's
    compressor, named dimensions, fill value 0."""
    return group.create_array(
        name, shape=tuple(shape), dtype=dtype, chunks=tuple(chunks), compressors=COMPRESSOR,
        dimension_names=tuple(dims), attributes=attributes, fill_value=0,
    )  # fmt: skip


def write_result(
    store: object,
    name: str,
    step: str,
    key: str,
    data: Any,
    *,
    dims: Sequence[str],
    provenance: dict[str, Any] | None,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    compute: bool = True,
    chunks: Sequence[int] | None = None,
) -> PendingWrite:
    """Write a stage's array to ``tomograms/<name>/results/<step>/<key>``.

    Parameters
    ----------
    data : ndarray, dask array or DataArray of any shape, e.g. (n_tilts, Y, X) 2D maps,
        (Z, Y, X) vote maps or masks, (n,) curves
    dims : tuple of str, one per axis of ``data``, e.g. ``("tilt", "y", "x")``
    provenance : dict
        ``step``, ``parameters``, ``inputs`` (cryoflow version and time are filled in).
    attrs : dict, optional
        Extra JSON-serialisable attributes, returned by :func:`open_result` in ``.attrs``.
    """
    dims = tuple(str(d) for d in dims)
    shape = tuple(int(s) for s in data.shape)
    if len(dims) != len(shape):
        raise StoreError(f"result {name}/{step}/{key}: {len(shape)} axes but dims {dims}")
    dtype = check_dtype(data.dtype, f"result {name}/{step}/{key}")
    chunk_shape = tuple(chunks) if chunks is not None else result_chunks(shape, dims)
    source = as_dask(data, chunk_shape).astype(dtype)
    prov = dict(provenance or {})
    prov.setdefault("step", step)
    meta = node_attrs("result", prov, step)
    meta["attrs"] = nodes.normalise_provenance({"attrs": attrs or {}})["attrs"]
    parent, leaf, tmp, holder, node_name = begin(
        store, name, [RESULTS, step, key], overwrite=overwrite, what="result"
    )
    with nodes.removed_on_error(parent, tmp):
        arr = chunked_array(holder, node_name, shape, dtype, chunk_shape, dims, {ATTR: meta})
    pending = PendingWrite(
        parent, leaf, tmp, overwrite, arr, description=f"write {name}/{step}/{key}"
    )
    lineage.stale_on_replace(pending, store, name, f"{RESULTS}/{step}/{key}")
    pending.stages.append(lambda: store_blocks(source, arr, name=f"{step}-{name}-{key}"))
    return finish(pending, compute)


def open_result(store: object, name: str, step: str, key: str) -> xr.DataArray:
    """A stage's array result, lazily.

    Returns
    -------
    xarray.DataArray
        With the dims it was written with; ``attrs`` holds the extra attributes plus
        ``provenance``.
    """
    root = open_dataset(store)
    tomogram_group(root, name)
    return _array_result(store, root, _result_path(name, step, key), f"{step}-{name}-{key}")


def open_dataset_result(store: object, step: str, key: str) -> xr.DataArray:
    """A dataset-level step's array result ``results/<step>/<key>`` at the dataset's root
    (:mod:`cryoflow.pipelines.engine.rounds`), lazily, like :func:`open_result`."""
    validate_name(step, "step name")
    validate_name(key, "result key")
    path = f"{RESULTS}/{step}/{key}"
    return _array_result(store, open_dataset(store), path, f"{step}-{key}")


def _array_result(store: object, root: Any, path: str, label: str) -> xr.DataArray:
    arr = nodes.open_node(root, path, what="result")
    meta = arr.attrs[ATTR]
    if meta.get("kind") != "result":
        raise StoreError(
            f"{nodes.store_label(store)}: {path!r} is a {meta.get('kind')}, not an array result"
        )
    attrs = dict(meta.get("attrs", {}))
    attrs["provenance"] = meta.get("provenance", {})
    return xr.DataArray(
        lazy(arr, label), dims=tuple(arr.metadata.dimension_names), name=path.rsplit("/", 1)[-1],
        attrs=attrs,
    )  # fmt: skip


def _result_path(name: str, step: str, key: str) -> str:
    validate_name(name, "tomogram name")
    validate_name(step, "step name")
    validate_name(key, "result key")
    return f"{TOMOGRAMS}/{name}/{RESULTS}/{step}/{key}"


# ---------------------------------------------------------------------------- tables
def write_table(
    store: object,
    name: str,
    step: str,
    key: str,
    table: pd.DataFrame,
    *,
    provenance: dict[str, Any] | None,
    overwrite: bool = False,
) -> PendingWrite:
    """Write a table (particles, boxes) to ``tomograms/<name>/results/<step>/<key>``.

    Columns may be boolean, integer, float or text (text is stored as categories).
    """
    if not isinstance(table, pd.DataFrame):
        raise StoreError(
            f"table {name}/{step}/{key} must be a pandas.DataFrame, got {type(table).__name__}"
        )
    prov = dict(provenance or {})
    prov.setdefault("step", step)
    meta = node_attrs("table", prov, step)
    parent, leaf, tmp, holder, node_name = begin(
        store, name, [RESULTS, step, key], overwrite=overwrite, what="table"
    )
    with nodes.removed_on_error(parent, tmp):
        group = holder.create_group(node_name, attributes={ATTR: meta})
    pending = PendingWrite(
        parent, leaf, tmp, overwrite, group, description=f"write {name}/{step}/{key}"
    )
    lineage.stale_on_replace(pending, store, name, f"{RESULTS}/{step}/{key}")
    try:
        columns = write_columns(group, table)
        pending.final_attrs = {"columns": columns, "n_rows": len(table)}
        pending.commit()
    except BaseException:
        pending.abort()
        raise
    return pending


def read_table(store: object, name: str, step: str, key: str) -> pd.DataFrame:
    """A table written by :func:`write_table`, as a pandas.DataFrame (columns in order)."""
    root = open_dataset(store)
    tomogram_group(root, name)
    path = _result_path(name, step, key)
    group = nodes.open_node(root, path, what="table")
    meta = group.attrs[ATTR]
    if meta.get("kind") != "table":
        raise StoreError(
            f"{nodes.store_label(store)}: {path!r} is a {meta.get('kind')}, not a table"
        )
    return decode_table(group, meta["columns"])
