"""Latent coordinates in a particle set's table: columns ``z0 .. z{D-1}`` and their record.

``cryoflow embed`` stores every particle's point of the conformation space in the set's own
table (``particles/<set>/table``), so :func:`cryoflow.io.particleset.open_particles` shows
them as coordinates ``z0 .. z{D-1}`` along ``particle``, beside the set's other columns.
``attrs.cryoflow.latent`` of the set records where they came from: ``columns``, ``dim``, the
checkpoint's SHA-256, the step, its parameters, the output folder and the time
(:func:`latent_record`; ``open_particles(...).attrs["latent"]``).

Rules:

- **No mixing.** Every column named ``z<digits>`` is replaced: a rerun with another ``D``
  removes all of the earlier run's columns (``z0 .. z{D'-1}``), and a ``z<j>`` the input
  particle file carried (e.g. a set extracted from a ``latent.csv``) is replaced too, which
  the record names (``replaced_columns``).
- **One step.** The new columns are written as new arrays first (``c<m>``, ``c<m+1>``, ...,
  never over an existing one); the switch is one write of the set's attributes (the column
  list, each new entry naming its ``array``, and the record); the arrays no longer listed
  are deleted after it. An interruption leaves the old table or the new one, never a mix.
- The stack, the other columns and the set's ``write_id`` are untouched: results computed
  from the set's particles stay current.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from cryoflow.errors import GeometryError
from cryoflow.io import nodes
from cryoflow.io.columns import encode_column
from cryoflow.io.layout import COMPRESSOR, open_dataset
from cryoflow.io.nodes import ATTR

__all__ = ["LATENT_COLUMN", "latent_record", "write_latent"]

#: the name of a latent column: ``z`` and the axis number
LATENT_COLUMN = re.compile(r"z\d+")
RECORD = "latent"


def _array_name(info: dict[str, Any], i: int) -> str:
    return str(info.get("array", f"c{i}"))


def write_latent(
    store: object, set_name: str, latent: np.ndarray, provenance: dict[str, Any]
) -> dict[str, Any]:
    """Store ``latent`` (n, D), row ``i`` = box ``i`` of the stack, as the set's columns
    ``z0 .. z{D-1}`` (module docstring); returns the record written.

    ``provenance``: what made them (``checkpoint_sha256``, ``step``, ``parameters``, ...).

    Raises
    ------
    GeometryError
        ``latent`` is not (n, D >= 1) finite values for the set's n particles.
    NodeNotFoundError
        No such (complete, current) set.
    """
    from cryoflow.io.particleset import PARTICLES, TABLE

    z = np.asarray(latent, dtype=np.float32)
    root = open_dataset(store, mode="r+")
    path = f"{PARTICLES}/{set_name}"
    group = nodes.open_node(root, path, what="particle set")
    info = dict(group.attrs[ATTR])
    columns = list(info["columns"])
    n = int(info.get("n_rows", 0))
    if z.ndim != 2 or z.shape[0] != n or z.shape[1] < 1 or not np.isfinite(z).all():
        raise GeometryError(
            f"particle set {set_name!r}: latent coordinates must be finite (n={n}, D >= 1), "
            f"got shape {z.shape}"
        )
    table = nodes.child_group(group, TABLE)
    old = [i for i, c in enumerate(columns) if LATENT_COLUMN.fullmatch(str(c["name"]))]
    ours = set((info.get(RECORD) or {}).get("columns", []))
    kept = [(i, c) for i, c in enumerate(columns) if i not in old]
    taken = {_array_name(c, i) for i, c in enumerate(columns)}
    taken |= {k for k, _ in table.arrays()}
    start = 1 + max((int(k[1:]) for k in taken if re.fullmatch(r"c\d+", k)), default=-1)
    new_entries = []
    for d in range(z.shape[1]):
        name, array = f"z{d}", f"c{start + d}"
        values, entry = encode_column(pd.Series(z[:, d]), name)
        table.create_array(
            array,
            data=values,
            chunks=(max(1, min(len(values), 1 << 16)),),
            compressors=COMPRESSOR,
            dimension_names=("row",),
        )
        new_entries.append({**entry, "array": array})
    record = latent_record(z.shape[1], provenance)
    replaced = sorted(str(columns[i]["name"]) for i in old if columns[i]["name"] not in ours)
    if replaced:
        record["replaced_columns"] = replaced
    info["columns"] = [{**c, "array": _array_name(c, i)} for i, c in kept] + new_entries
    info[RECORD] = record
    group.attrs[ATTR] = info  # the switch: one write of the set's attributes
    for i in old:
        nodes.delete_node(table, _array_name(columns[i], i))
    return record


def latent_record(dim: int, provenance: dict[str, Any]) -> dict[str, Any]:
    """The ``attrs.cryoflow.latent`` record of ``dim`` columns (module docstring)."""
    return {
        **dict(provenance),
        "columns": [f"z{d}" for d in range(int(dim))],
        "dim": int(dim),
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
    }
