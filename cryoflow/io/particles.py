"""Particle tables and particle files: RELION STAR, CSV and copick-style JSON picks.

The in-memory form of a particle list is a :class:`pandas.DataFrame`, one row per particle
(``CONTRACT.md``, "Particle files"):

============================== ===================================================== ==========
column                         meaning                                               STAR label
============================== ===================================================== ==========
``tomogram``                   tomogram name (str)                                   rlnTomoName
``x``, ``y``, ``z``            position in voxels of the stored tomogram, 0-based:   rlnCoordinateX/Y/Z
                               centred on ``volume[z, y, x]``; fractions allowed
``rot``, ``tilt``, ``psi``     optional ZYZ Euler angles (degrees, the contract's)   rlnAngleRot/Tilt/Psi
``class``                      optional class, 1..K                                  rlnClassNumber
``half``                       optional half set, 1 or 2                             rlnRandomSubset
``score``                      optional pick score                                   rlnAutopickFigureOfMerit
``origin_x_angstrom`` (y, z)   optional refined shift, Å                             rlnOriginX/Y/ZAngst
============================== ===================================================== ==========

Any other column is kept as it is (a STAR label such as ``rlnTomoParticleName`` keeps its
name), so a file read and written again keeps every column, and **every output file keeps the
input coordinates** ``x, y, z`` of each particle: refinements go in the origins, never into
``x, y, z``. :func:`read_particles` / :func:`write_particles` choose the format by suffix
(``.star``, ``.csv``, ``.json``); the formats live in :mod:`cryoflow.io.star`,
:mod:`cryoflow.io.copick` and here (CSV).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cryoflow.errors import GeometryError, InputFileError

__all__ = [
    "ANGLE_COLUMNS",
    "COORDINATE_COLUMNS",
    "REQUIRED_COLUMNS",
    "TomogramInfo",
    "read_csv",
    "read_particles",
    "validate_particles",
    "write_csv",
    "write_particles",
]

REQUIRED_COLUMNS = ("tomogram", "x", "y", "z")
COORDINATE_COLUMNS = ("x", "y", "z")
ANGLE_COLUMNS = ("rot", "tilt", "psi")
ORIGIN_COLUMNS = ("origin_x_angstrom", "origin_y_angstrom", "origin_z_angstrom")
FLOAT_COLUMNS = (*COORDINATE_COLUMNS, *ANGLE_COLUMNS, "score", *ORIGIN_COLUMNS)
INT_COLUMNS = ("class", "half")
#: the column order of written files (extra columns follow)
CANONICAL_ORDER = (*REQUIRED_COLUMNS, *ANGLE_COLUMNS, "class", "half", "score", *ORIGIN_COLUMNS)
SUFFIXES = (".star", ".csv", ".json")


@dataclass(frozen=True)
class TomogramInfo:
    """What a particle file needs to know of a tomogram to convert Ångström positions.

    name : tomogram name; shape_zyx : level-0 volume shape ``(Z, Y, X)``;
    pixel_size_angstrom : its voxel size.
    """

    name: str
    shape_zyx: tuple[int, int, int]
    pixel_size_angstrom: float

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape_zyx)
        if len(shape) != 3 or min(shape) < 1:
            raise GeometryError(f"tomogram {self.name!r}: shape must be (Z, Y, X), got {shape}")
        if not (np.isfinite(self.pixel_size_angstrom) and self.pixel_size_angstrom > 0):
            raise GeometryError(
                f"tomogram {self.name!r}: pixel size must be > 0 Å, got {self.pixel_size_angstrom}"
            )
        object.__setattr__(self, "shape_zyx", shape)
        object.__setattr__(self, "pixel_size_angstrom", float(self.pixel_size_angstrom))


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputFileError(
            path, f"particle files end in {', '.join(SUFFIXES)}; got {suffix or 'no suffix'!r}"
        )
    return suffix


def read_particles(
    path: str | os.PathLike[str],
    *,
    tomograms: Mapping[str, TomogramInfo] | None = None,
    default_tomogram: str | None = None,
) -> pd.DataFrame:
    """Read a particle file (``.star``, ``.csv`` or ``.json``) into a particle table.

    Parameters
    ----------
    tomograms : name -> :class:`TomogramInfo`, optional
        Needed for positions in Ångström (RELION 5 centred coordinates, copick picks).
    default_tomogram : str, optional
        The tomogram of rows whose file names none (a STAR file without ``rlnTomoName``, a
        copick file without ``run_name``).

    Raises
    ------
    InputFileError
        Naming the file (and the line, where there is one) and what is wrong.
    """
    p = Path(path)
    suffix = _suffix(p)
    if not p.is_file():
        raise InputFileError(p, "no such particle file")
    if suffix == ".star":
        from cryoflow.io.star import read_star

        return read_star(p, tomograms=tomograms, default_tomogram=default_tomogram)
    if suffix == ".json":
        from cryoflow.io.copick import read_copick

        return read_copick(p, tomograms=tomograms, default_tomogram=default_tomogram)
    return read_csv(p)


def write_particles(
    path: str | os.PathLike[str],
    table: pd.DataFrame,
    *,
    tomograms: Mapping[str, TomogramInfo] | None = None,
    object_name: str = "particle",
) -> Path:
    """Write a particle table as ``.star``, ``.csv`` or ``.json`` (copick picks); returns the path.

    ``tomograms`` adds RELION 5 centred Ångström coordinates to a STAR file and is needed for
    copick JSON (Ångström positions). ``object_name`` names the copick pickable object.
    """
    p = Path(path)
    suffix = _suffix(p)
    table = validate_particles(table, str(p))
    p.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".star":
        from cryoflow.io.star import write_star

        write_star(p, table, tomograms=tomograms)
    elif suffix == ".json":
        from cryoflow.io.copick import write_copick

        write_copick(p, table, tomograms=tomograms or {}, object_name=object_name)
    else:
        write_csv(p, table)
    return p


# ---------------------------------------------------------------------------- validation
def validate_particles(
    table: pd.DataFrame, source: str, *, lines: Sequence[int] | None = None
) -> pd.DataFrame:
    """The table with checked, normalised columns (a copy), in canonical column order.

    ``tomogram`` becomes text; coordinates, angles, scores and origins float64 (finite);
    ``class`` int64 >= 1; ``half`` int64 in {1, 2}. ``lines`` (one per row) lets errors
    name the file line of a bad row.

    Raises
    ------
    InputFileError
        Missing columns, or a value that is not a finite number / allowed value.
    """
    if not isinstance(table, pd.DataFrame):
        raise InputFileError(source, f"a particle table is a DataFrame, got {type(table).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputFileError(
            source,
            f"missing particle columns {missing}; a particle table needs "
            f"{', '.join(REQUIRED_COLUMNS)} (found {', '.join(map(str, table.columns))})",
        )
    out = table.reset_index(drop=True).copy()

    def where(i: int) -> str:
        return f"line {lines[i]}" if lines is not None else f"row {i + 1}"

    names = out["tomogram"].astype(str)
    empty = np.flatnonzero(names.str.strip().eq("").to_numpy() | out["tomogram"].isna().to_numpy())
    if empty.size:
        raise InputFileError(source, f"{where(int(empty[0]))}: empty tomogram name")
    out["tomogram"] = names.to_numpy(dtype=object)
    for col in FLOAT_COLUMNS:
        if col in out.columns:
            out[col] = _numbers(out[col], col, source, where)
    for col in INT_COLUMNS:
        if col in out.columns:
            vals = _numbers(out[col], col, source, where)
            bad = np.flatnonzero(vals != np.round(vals))
            allowed = vals >= 1 if col == "class" else np.isin(vals, (1, 2))
            bad = np.union1d(bad, np.flatnonzero(~allowed))
            if bad.size:
                rule = "an integer >= 1" if col == "class" else "1 or 2"
                raise InputFileError(
                    source,
                    f"{where(int(bad[0]))}: {col} must be {rule}, got {vals[bad[0]]!r}",
                )
            out[col] = vals.astype(np.int64)
    order = [c for c in CANONICAL_ORDER if c in out.columns]
    return out[order + [c for c in out.columns if c not in order]]


def _numbers(values: pd.Series, col: str, source: str, where: object) -> np.ndarray:
    num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(num))
    if bad.size:
        raise InputFileError(
            source,
            f"{where(int(bad[0]))}: {col} must be a finite number, "  # type: ignore[operator]
            f"got {values.iloc[int(bad[0])]!r}",
        )
    return num


# ---------------------------------------------------------------------------- CSV
def read_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV with a header holding at least ``tomogram, x, y, z`` (other columns are kept)."""
    p = Path(path)
    try:
        table = pd.read_csv(p, dtype={"tomogram": str}, skip_blank_lines=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputFileError(p, f"unreadable CSV: {exc}") from exc
    table.columns = [str(c).strip() for c in table.columns]
    # a data row is line (row index + 2): the header is line 1 (blank lines are skipped)
    return validate_particles(table, str(p), lines=_csv_lines(p, len(table)))


def _csv_lines(path: Path, n_rows: int) -> list[int]:
    lines = []
    with open(path, encoding="utf-8", errors="replace") as f:
        seen_header = False
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            if not seen_header:
                seen_header = True
                continue
            lines.append(number)
    return (lines + list(range(len(lines) + 2, n_rows + 2)))[:n_rows]


def write_csv(path: str | os.PathLike[str], table: pd.DataFrame) -> None:
    """Write the table as CSV (``tomogram, x, y, z`` first), full float precision."""
    table.to_csv(Path(path), index=False, float_format="%.10g")
