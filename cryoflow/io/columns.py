"""Tables in the store: one 1-D array per column, text as integer codes plus categories.

A table node is a group holding arrays ``c0, c1, ...`` in column order; the node's
``cryoflow.columns`` attribute lists ``{name, dtype[, categories]}`` per column. Boolean,
integer and float columns keep their dtype; any other column is stored as ``int64`` codes
into a sorted list of its values as text, so no object or variable-length data type ever
enters the store. Used by per-tomogram result tables (:mod:`cryoflow.io.results`) and by
particle sets (:mod:`cryoflow.io.particleset`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import zarr

from cryoflow.io import nodes
from cryoflow.io.chunks import read_checked
from cryoflow.io.layout import COMPRESSOR

__all__ = ["decode_table", "encode_column", "write_columns"]


def encode_column(series: pd.Series, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The stored values of one column and its entry in the ``columns`` attribute."""
    values = series.to_numpy()
    if values.dtype.kind in "biuf":
        return values.astype(values.dtype.newbyteorder("=")), {
            "name": name,
            "dtype": values.dtype.str,
        }
    text = series.astype(str)
    codes, cats = pd.factorize(text, sort=True)
    return codes.astype(np.int64), {"name": name, "dtype": "category", "categories": list(cats)}


def write_columns(
    group: zarr.Group, table: pd.DataFrame, chunk_rows: int | None = None
) -> list[dict[str, Any]]:
    """Write every column of ``table`` as ``group/c<i>``; returns the ``columns`` attribute."""
    columns = []
    for i, col in enumerate(table.columns):
        values, info = encode_column(table[col], str(col))
        group.create_array(
            f"c{i}",
            data=values,
            chunks=(max(1, min(len(values), chunk_rows or len(values))),),
            compressors=COMPRESSOR,
            dimension_names=("row",),
        )
        columns.append(info)
    return columns


def decode_table(group: zarr.Group, columns: list[dict[str, Any]]) -> pd.DataFrame:
    """The table written by :func:`write_columns`, columns in order (a column whose entry
    names its ``array`` is read from that array, else from ``c<i>``)."""
    data: dict[str, Any] = {}
    for i, info in enumerate(columns):
        values = read_checked(nodes.child_array(group, info.get("array", f"c{i}")))
        if info["dtype"] == "category":
            cats = np.asarray(info["categories"], dtype=object)
            data[info["name"]] = cats[values] if len(values) else np.array([], dtype=object)
        else:
            data[info["name"]] = values.astype(np.dtype(info["dtype"]))
    return pd.DataFrame(data, columns=[c["name"] for c in columns])
