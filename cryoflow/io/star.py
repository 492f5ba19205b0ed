"""RELION STAR particle files, read and written through ``starfile``.

Reading (:func:`read_star`):

1. the text is scanned first (:func:`scan_star`): blocks, loop labels and every data row with
   its line number. A row whose field count differs from its loop's label count, a label line
   inside data rows, or a loop without labels is refused with :class:`InputFileError` naming
   the file and the line, before ``starfile`` parses anything;
2. ``starfile`` reads the blocks; the particle block is ``data_particles``, else the only
   block with particle coordinates;
3. positions come from ``rlnCoordinateX/Y/Z`` (voxels of the stored tomogram, as the contract
   defines them) or, for RELION 5 files, from ``rlnCenteredCoordinateX/Y/ZAngst``:
   ``x = xc_angstrom / pixel_size + X / 2`` with RELION's tomogram centre ``X / 2`` (its
   ``Tomogram::centre``, size / 2), which needs each tomogram's :class:`TomogramInfo`. When a
   file has both, the voxel coordinates are used (they are what a cryoflow file's rows were
   matched back with);
4. RELION labels become the table's columns (:mod:`cryoflow.io.particles`); any other label
   is kept under its own name. A value that is not a number where a number belongs names the
   file and its line.

Writing (:func:`write_star`): one ``data_particles`` loop with ``rlnTomoName``,
``rlnCoordinateX/Y/Z`` (RELION 4 style voxels), ``rlnCenteredCoordinateX/Y/ZAngst`` (RELION 5)
when the tomograms' shapes and pixel sizes are given, then angles, class, half set, score and
origins when present, then the table's other columns (labels ``rln...`` as they are, others as
``cryoflow_<column>``, which :func:`read_star` reads back under the column's name).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryoflow.errors import InputFileError
from cryoflow.io.particles import TomogramInfo, validate_particles

__all__ = ["StarBlock", "read_star", "scan_star", "write_star", "LABELS"]

#: table column -> RELION label
LABELS: dict[str, str] = {
    "tomogram": "rlnTomoName",
    "x": "rlnCoordinateX",
    "y": "rlnCoordinateY",
    "z": "rlnCoordinateZ",
    "rot": "rlnAngleRot",
    "tilt": "rlnAngleTilt",
    "psi": "rlnAnglePsi",
    "class": "rlnClassNumber",
    "half": "rlnRandomSubset",
    "score": "rlnAutopickFigureOfMerit",
    "origin_x_angstrom": "rlnOriginXAngst",
    "origin_y_angstrom": "rlnOriginYAngst",
    "origin_z_angstrom": "rlnOriginZAngst",
}
CENTRED = (
    "rlnCenteredCoordinateXAngst",
    "rlnCenteredCoordinateYAngst",
    "rlnCenteredCoordinateZAngst",
)
EXTRA_PREFIX = "cryoflow_"  # label prefix of non-RELION columns
_TOKEN = re.compile(r"""'[^']*'|"[^"]*"|\S+""")


@dataclass
class StarBlock:
    """One ``data_<name>`` block as scanned: loop labels and data rows with line numbers."""

    name: str
    line: int
    labels: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # the line number of each data row
    is_loop: bool = False


def scan_star(path: str | os.PathLike[str]) -> list[StarBlock]:
    """Scan a STAR file's structure, refusing malformed loops with the file and line.

    Raises
    ------
    InputFileError
        No ``data_`` block, a label or row outside a block, a loop without labels, a label
        after the loop's rows, or a row whose field count differs from the labels'.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(p, f"unreadable STAR file: {exc}") from exc
    blocks: list[StarBlock] = []
    block: StarBlock | None = None
    state = "none"  # none | pairs | labels | rows
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            if state == "rows" and not line:
                state = "pairs"  # a blank line ends a loop's rows
            continue
        where = f"line {number}"
        if line.startswith("data_"):
            block = StarBlock(line[5:].strip(), number)
            blocks.append(block)
            state = "pairs"
            continue
        if block is None:
            raise InputFileError(p, f"{where}: {line[:40]!r} comes before any data_ block")
        if line.startswith("loop_"):
            block.is_loop = True
            block.labels = []
            state = "labels"
            continue
        if line.startswith("_"):
            if state == "rows":
                raise InputFileError(
                    p, f"{where}: label {line.split()[0]!r} after the loop's data rows"
                )
            if state == "labels":
                block.labels.append(line.split()[0][1:])
            else:
                block.labels.append(line.split()[0][1:])  # a key-value pair
                if len(_TOKEN.findall(line)) < 2:
                    raise InputFileError(p, f"{where}: {line.split()[0]!r} has no value")
            continue
        if state not in ("labels", "rows") or not block.is_loop:
            raise InputFileError(p, f"{where}: data {line[:40]!r} outside a loop_")
        if not block.labels:
            raise InputFileError(p, f"{where}: loop_ in data_{block.name} has no labels")
        n = len(_TOKEN.findall(line))
        if n != len(block.labels):
            raise InputFileError(
                p,
                f"{where}: {n} fields but data_{block.name} has {len(block.labels)} labels "
                f"({', '.join(block.labels[:6])}{', ...' if len(block.labels) > 6 else ''})",
            )
        block.rows.append(number)
        state = "rows"
    if not blocks:
        raise InputFileError(p, "not a STAR file: no data_ block")
    return blocks


def _particle_block(p: Path, blocks: list[StarBlock]) -> StarBlock:
    def has_coords(b: StarBlock) -> bool:
        return LABELS["x"] in b.labels or CENTRED[0] in b.labels

    named = [b for b in blocks if b.name == "particles"]
    if named:
        if not has_coords(named[0]):
            raise InputFileError(
                p,
                f"line {named[0].line}: data_particles has neither rlnCoordinateX/Y/Z nor "
                "rlnCenteredCoordinateX/Y/ZAngst",
            )
        return named[0]
    candidates = [b for b in blocks if b.is_loop and has_coords(b)]
    if len(candidates) != 1:
        names = ", ".join(f"data_{b.name}" for b in blocks)
        raise InputFileError(
            p,
            f"no data_particles block, and {len(candidates)} blocks with particle coordinates "
            f"among {names}; expected exactly one",
        )
    return candidates[0]


def read_star(
    path: str | os.PathLike[str],
    *,
    tomograms: Mapping[str, TomogramInfo] | None = None,
    default_tomogram: str | None = None,
) -> pd.DataFrame:
    """A STAR particle file as a particle table (see the module docstring)."""
    p = Path(path)
    blocks = scan_star(p)
    block = _particle_block(p, blocks)
    # 1. starfile parses; it names a block "" when the file says ``data_``
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = starfile.read(p, always_dict=True)
    except Exception as exc:  # starfile/pandas raise many types; the file is named here
        raise InputFileError(p, f"unreadable STAR file: {type(exc).__name__}: {exc}") from exc
    df = parsed.get(block.name)
    if not isinstance(df, pd.DataFrame) or len(df) != len(block.rows):
        raise InputFileError(
            p, f"line {block.line}: data_{block.name} could not be read as a loop of rows"
        )
    df = df.reset_index(drop=True)
    # 2. RELION labels -> table columns; other labels keep their names
    to_column = {v: k for k, v in LABELS.items()}
    table = pd.DataFrame(
        {
            to_column.get(str(c), str(c).removeprefix(EXTRA_PREFIX)): df[c].to_numpy()
            for c in df.columns
        }
    )
    if "tomogram" not in table.columns:
        if default_tomogram is None:
            raise InputFileError(
                p, f"line {block.line}: data_{block.name} has no rlnTomoName; name the tomogram"
            )
        table.insert(0, "tomogram", default_tomogram)
    table["tomogram"] = table["tomogram"].astype(str)
    if "x" not in table.columns:
        _from_centred(p, table, block, tomograms)
    return validate_particles(table, str(p), lines=block.rows)


def _from_centred(
    p: Path, table: pd.DataFrame, block: StarBlock, tomograms: Mapping[str, TomogramInfo] | None
) -> None:
    """Voxel coordinates from RELION 5 centred Ångström ones, in place."""
    missing = [c for c in CENTRED if c not in table.columns]
    if missing:
        raise InputFileError(p, f"line {block.line}: data_{block.name} lacks {missing}")
    names = table["tomogram"].to_numpy()
    unknown = sorted(set(names) - set(tomograms or {}))
    if unknown:
        raise InputFileError(
            p,
            f"RELION 5 centred coordinates (Å) need each tomogram's shape and pixel size; "
            f"none given for {unknown[:5]} (known tomograms: "
            f"{', '.join(sorted(tomograms or {})[:8]) or 'none'})",
        )
    info = tomograms or {}
    for axis, label in zip(("x", "y", "z"), CENTRED, strict=True):
        col = pd.to_numeric(table[label], errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(col))
        if bad.size:
            raise InputFileError(
                p,
                f"line {block.rows[bad[0]]}: {label} must be a finite number, got "
                f"{table[label].iloc[bad[0]]!r}",
            )
        k = {"x": 2, "y": 1, "z": 0}[axis]
        size = np.array([info[n].shape_zyx[k] for n in names], dtype=np.float64)
        pixel = np.array([info[n].pixel_size_angstrom for n in names], dtype=np.float64)
        table[axis] = col / pixel + size / 2.0


def write_star(
    path: str | os.PathLike[str],
    table: pd.DataFrame,
    *,
    tomograms: Mapping[str, TomogramInfo] | None = None,
) -> None:
    """Write a particle table as a ``data_particles`` loop (see the module docstring).

    Raises
    ------
    InputFileError
        ``tomograms`` is given but lacks a tomogram of the table.
    """
    p = Path(path)
    t = validate_particles(table, str(p))
    out = pd.DataFrame()
    out[LABELS["tomogram"]] = t["tomogram"].astype(str)
    for c in ("x", "y", "z"):
        out[LABELS[c]] = t[c].to_numpy(np.float64)
    if tomograms is not None:
        unknown = sorted(set(t["tomogram"]) - set(tomograms))
        if unknown:
            raise InputFileError(p, f"no shape and pixel size for tomograms {unknown[:5]}")
        for axis, label in zip(("x", "y", "z"), CENTRED, strict=True):
            k = {"x": 2, "y": 1, "z": 0}[axis]
            size = np.array([tomograms[n].shape_zyx[k] for n in t["tomogram"]], np.float64)
            pixel = np.array([tomograms[n].pixel_size_angstrom for n in t["tomogram"]], np.float64)
            out[label] = (t[axis].to_numpy(np.float64) - size / 2.0) * pixel
    for col, label in LABELS.items():
        if col in t.columns and label not in out.columns:
            out[label] = t[col].to_numpy()
    for col in t.columns:
        if col not in LABELS and col not in out.columns and col not in CENTRED:
            out[_label(col)] = t[col].to_numpy()
    starfile.write({"particles": out}, p, float_format="%.10g")


def _label(column: str) -> str:
    """A STAR label for an extra column: ``rln...`` as it is, else ``cryoflow_<column>``
    (:func:`read_star` strips the prefix again)."""
    if column.startswith("rln"):
        return column
    return EXTRA_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "_", column)
