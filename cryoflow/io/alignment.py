"""Tilt-series alignments made elsewhere: IMOD/etomo ``.xf`` + ``.tlt``, AreTomo ``.aln``.

Each reader returns an :class:`ImportedAlignment`: the raw stack's :class:`TiltGeometry` (per-tilt
in-plane rotation, magnification and shifts in the matrices and shifts, refined tilt angles),
which sections of the raw stack it covers, and where it came from. Reconstruction and every later
stage then use the raw pixels through that geometry; no aligned copy is resampled.

- IMOD: ``.xf`` lines ``A11 A12 A21 A22 DX DY`` map raw to aligned centred coordinates
  (``x' = A11 x + A12 y + DX``, ``y' = A21 x + A22 y + DY``; the tilt axis of the aligned
  images is their y axis); the ``.tlt`` (tiltalign's refined angles) gives one angle per view.
  Read with ``etomofiles``.
- AreTomo: the ``.aln`` global table ``SEC ROT GMAG TX TY SMEAN SFIT SCALE BASE TILT``; ``ROT``
  is the tilt-axis angle of the raw images, ``(TX, TY)`` their shift, ``TILT`` the tilt angle;
  converted to IMOD transforms by ``alnfile.df_to_xf`` (``A = R(-ROT)``, ``d = -A (TX, TY)``).
  Sections listed as ``DarkFrame`` are not covered (``kept`` omits them). ``GMAG`` other than 1
  is not applied (a note says so).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryoflow.errors import AlignmentFileError, AngleFileError, GeometryError
from cryoflow.geometry import TiltGeometry
from cryoflow.geometry.alignment import raw_geometry

ALIGNMENT_SUFFIXES = (".xf", ".aln")


@dataclass(frozen=True)
class ImportedAlignment:
    """An alignment made elsewhere, as cryoflow geometry of the raw stack.

    Attributes
    ----------
    geometry : TiltGeometry
        One projection per kept raw section, in section order.
    kept : tuple of int
        Raw-stack sections (0-based) the geometry covers; all of them for IMOD files.
    n_raw : int
        Sections of the raw stack the alignment describes.
    source : str
        ``"IMOD TS_01.xf + TS_01.tlt"`` or ``"AreTomo TS_01.aln"``.
    notes : tuple of str
    """

    geometry: TiltGeometry
    kept: tuple[int, ...]
    n_raw: int
    source: str
    notes: tuple[str, ...] = ()

    def check_stack(self, n_sections: int, path: object) -> None:
        """Raise :class:`AlignmentFileError` unless the alignment fits a stack of ``n_sections``."""
        if n_sections != self.n_raw:
            raise AlignmentFileError(
                path,
                f"holds {n_sections} images but the alignment ({self.source}) describes {self.n_raw}",
            )


def _xf_matrices(rows: np.ndarray) -> np.ndarray:
    """(n, 6) ``A11 A12 A21 A22 DX DY`` -> (n, 2, 3) ``[[A11, A12, DX], [A21, A22, DY]]``."""
    return rows[:, [0, 1, 4, 2, 3, 5]].reshape(-1, 2, 3)


def read_imod_alignment(
    xf: str | os.PathLike[str], tlt: str | os.PathLike[str]
) -> ImportedAlignment:
    """IMOD ``.xf`` (raw -> aligned transforms) and ``.tlt`` (tilt angles) of one raw stack.

    Raises
    ------
    AlignmentFileError
        Missing or malformed files, or a different number of lines in the two.
    """
    import etomofiles

    from cryoflow.io.angles import read_tlt

    xf_path, tlt_path = Path(xf), Path(tlt)
    if not xf_path.is_file():
        raise AlignmentFileError(xf_path, "no such file")
    try:
        rows = np.asarray(etomofiles.read_xf(xf_path), dtype=np.float64).reshape(-1, 6)
    except (ValueError, OSError) as exc:
        raise AlignmentFileError(
            xf_path, f"not an IMOD .xf file (6 numbers per line expected): {exc}"
        ) from exc
    if rows.shape[0] == 0 or not np.all(np.isfinite(rows)):
        raise AlignmentFileError(xf_path, "holds no finite transforms")
    try:
        angles = read_tlt(tlt_path).angles_deg
    except AngleFileError as exc:
        raise AlignmentFileError(tlt_path, exc.problem) from exc
    if len(angles) != rows.shape[0]:
        raise AlignmentFileError(
            xf_path,
            f"holds {rows.shape[0]} transforms but {tlt_path.name} lists {len(angles)} angles",
        )
    geometry = _geometry(xf_path, angles, _xf_matrices(rows))
    n = rows.shape[0]
    return ImportedAlignment(geometry, tuple(range(n)), n, f"IMOD {xf_path.name} + {tlt_path.name}")


def read_aretomo_alignment(aln: str | os.PathLike[str]) -> ImportedAlignment:
    """AreTomo ``.aln``: the global alignment of every section that is not a dark frame.

    Raises
    ------
    AlignmentFileError
        Missing or malformed file.
    """
    import alnfile
    from alnfile.data_model import AlnData

    path = Path(aln)
    if not path.is_file():
        raise AlignmentFileError(path, "no such file")
    try:
        data = AlnData.from_file(path)
        table = alnfile.read(path)
    except (ValueError, TypeError, IndexError, OSError) as exc:  # pydantic errors are ValueErrors
        raise AlignmentFileError(
            path, f"not an AreTomo .aln file: {str(exc).splitlines()[0]}"
        ) from exc
    if len(table) == 0:
        raise AlignmentFileError(path, "holds no global alignment rows")
    dark = sorted({int(d.section_idx) for d in data.DarkFrames})
    n_raw = int(data.RawSize[2]) if data.RawSize and data.RawSize[2] > 0 else len(table) + len(dark)
    kept = tuple(i for i in range(n_raw) if i not in dark)
    if len(kept) != len(table):
        raise AlignmentFileError(
            path,
            f"RawSize says {n_raw} sections and {len(dark)} dark frames, but the global table has "
            f"{len(table)} rows",
        )
    notes = []
    gmag = table["gmag"].to_numpy(dtype=float)
    if np.any(np.abs(gmag - 1.0) > 1e-3):
        notes.append(f"{path.name}: GMAG {gmag.min():.4g}..{gmag.max():.4g} is not applied")
    transforms = np.asarray(alnfile.df_to_xf(table), dtype=np.float64)
    angles = tuple(float(a) for a in table["tilt"].to_numpy(dtype=float))
    geometry = _geometry(path, angles, transforms)
    return ImportedAlignment(geometry, kept, n_raw, f"AreTomo {path.name}", tuple(notes))


def _geometry(path: Path, angles: tuple[float, ...], transforms: np.ndarray) -> TiltGeometry:
    try:
        return raw_geometry(TiltGeometry.single_axis(angles), transforms)
    except GeometryError as exc:
        raise AlignmentFileError(path, str(exc)) from exc


def find_alignment(mrc_path: str | os.PathLike[str]) -> Path | None:
    """An ``.xf`` (with its ``.tlt``) or ``.aln`` beside ``mrc_path`` with its stem, else None.

    Like the angle files, looked up beside the input as given (a link's own name).
    """
    from cryoflow.io.angles import input_path, input_stem

    p = input_path(mrc_path)
    stem = input_stem(p)
    for suffix in ALIGNMENT_SUFFIXES:
        candidate = p.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def read_alignment(
    path: str | os.PathLike[str], tlt: str | os.PathLike[str] | None = None
) -> ImportedAlignment:
    """Read an ``.xf`` (with ``tlt``, default the ``.tlt`` beside it) or an ``.aln``."""
    p = Path(path)
    if p.suffix.lower() == ".aln":
        return read_aretomo_alignment(p)
    if p.suffix.lower() == ".xf":
        return read_imod_alignment(p, tlt if tlt is not None else p.with_suffix(".tlt"))
    raise AlignmentFileError(
        p,
        f"unknown alignment file type {p.suffix!r}; expected one of {', '.join(ALIGNMENT_SUFFIXES)}",
    )
