"""What ``cryoflow ingest`` decides about one tilt series from real microscope files.

For one MRC file (its header already read) and the user's options, :func:`resolve_series`
chooses, and records where each came from:

- **tilt angles**: ``--alignment`` (IMOD ``.xf`` + ``.tlt``, AreTomo ``.aln``), else ``--angles
  FILE``, else a ``.mdoc``/``.rawtlt``/``.tlt`` beside the file *as named* (a symbolic link's own
  stem and directory; only when there is none there, beside the link's target, with a note),
  else the angles of the MRC's extended header (FEI, SerialEM);
- **tilt-axis angle** (IMOD/SerialEM convention, ``docs/design/conventions.md``):
  ``--tilt-axis``, else the ``.mdoc``'s, else the extended header's (or a SerialEM label), else 0
  (:func:`cryoflow.io.angles.resolve_tilt_axis`); an imported alignment carries its own axis
  (per tilt, in the matrices) and refuses ``--tilt-axis``;
- **pixel size**: the ``.mdoc``'s PixelSpacing, else the main header's when set (not 0 or 1 Å),
  else the extended header's, else a warning
  (:func:`cryoflow.io.mrc_extended.resolve_pixel_size`);
- **sections kept**: every one, except AreTomo's dark frames.

The decisions are stored with the tilt series (its geometry holds the axis; the ingest
provenance holds :meth:`SeriesMeta.record`) and printed by :meth:`SeriesMeta.summary`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryoflow.errors import ConfigError, InputFileError, NonStandardInputWarning
from cryoflow.geometry import TiltGeometry
from cryoflow.io import angles as angle_io

__all__ = ["SeriesMeta", "resolve_series", "resolve_volume_pixel"]


@dataclass(frozen=True)
class SeriesMeta:
    """Everything ingest decided about one tilt series, and where each value came from."""

    geometry: TiltGeometry
    angles_source: str  # a file path, or "<kind> extended header"
    angles_file: str | None  # the angle file read (None: extended header or .aln)
    tilt_axis: angle_io.TiltAxis
    pixel_size_angstrom: float
    pixel_source: str
    kept: tuple[int, ...] | None = None  # raw sections used (None: all)
    alignment: str | None = None  # e.g. "IMOD TS_01.xf + TS_01.tlt"
    notes: tuple[str, ...] = field(default=())

    def record(self) -> dict[str, Any]:
        """The decisions, JSON-ready, for the ingest provenance."""
        return {
            "angles_from": self.angles_source,
            "tilt_axis_deg": self.tilt_axis.deg,
            "tilt_axis_from": self.tilt_axis.source,
            "pixel_size_angstrom": self.pixel_size_angstrom,
            "pixel_size_from": self.pixel_source,
            "alignment": self.alignment,
            "kept_sections": list(self.kept) if self.kept is not None else None,
        }

    def summary(self, shape: tuple[int, int, int]) -> list[str]:
        """Short lines for the terminal: tilts, angles, axis, pixel size (with sources)."""
        n, y, x = shape
        a = self.geometry.angles_deg
        kept = len(self.kept) if self.kept is not None else n
        tilts = f"{kept} tilts" + (f" of {n} sections" if kept != n else "")
        lines = [
            f"{tilts}, {y} x {x} pixels, angles {min(a):g}..{max(a):g}° from {self.angles_source}",
        ]
        if self.alignment is not None:
            lines.append(f"alignment {self.alignment} (per-tilt rotation and shifts)")
            lines.append(f"tilt axis {self.tilt_axis.deg:g}° (from {self.tilt_axis.source})")
        else:
            lines.append(self.tilt_axis.describe())
        lines.append(f"pixel size {self.pixel_size_angstrom:.4g} Å (from {self.pixel_source})")
        lines.extend(self.notes)
        return lines


def _pixel(path: Path, info: Any, mdoc_px: float | None, *, warn: bool = True) -> tuple[float, str]:
    """The pixel size and its source; a header that disagrees with the mdoc gets a warning."""
    from cryoflow.io.mrc_extended import UNSET_PIXEL_SIZES, resolve_pixel_size

    header_px = float(info.voxel_size_angstrom[2])
    if mdoc_px is not None:
        header_set = header_px > 0 and not any(abs(header_px - u) < 1e-6 for u in UNSET_PIXEL_SIZES)
        if header_set and abs(header_px - mdoc_px) > 0.01 * mdoc_px:
            warnings.warn(
                f"{path}: header pixel size {header_px:.4g} Å differs from the mdoc's "
                f"{mdoc_px:.4g} Å; using the mdoc's",
                NonStandardInputWarning,
                stacklevel=3,
            )
    value, source = resolve_pixel_size(
        header_px, info.extended, mdoc_angstrom=mdoc_px, path=path, warn=warn
    )
    if source == "unset":
        source = "nowhere: unset in the header, no extended header or .mdoc value"
    return value, source


def resolve_volume_pixel(path: Path, info: Any) -> tuple[float, str]:
    """Pixel size of a reconstructed volume (``ingest --tomogram``) and its source."""
    return _pixel(path, info, None)


def _alignment(
    path: Path, info: Any, alignment: str, angles: str | None, tilt_axis: float | None
) -> tuple[TiltGeometry, tuple[int, ...] | None, str, str, tuple[str, ...], float]:
    import numpy as np

    from cryoflow.geometry.tilt_axis import axis_angle_on_detector_deg
    from cryoflow.io.alignment import read_alignment

    if tilt_axis is not None:
        raise ConfigError(
            f"--tilt-axis and --alignment {alignment} both set the tilt axis; the alignment "
            "holds it per tilt, give only one"
        )
    tlt = angles if angles and Path(angles).suffix.lower() in (".tlt", ".rawtlt") else None
    imported = read_alignment(alignment, tlt)
    imported.check_stack(info.shape[0], path)
    kept = None if len(imported.kept) == imported.n_raw else imported.kept
    source = alignment if tlt is None else f"{tlt} (with {alignment})"
    axes = axis_angle_on_detector_deg(imported.geometry)
    axis = float(np.median(axes)) if len(axes) else 0.0
    return imported.geometry, kept, imported.source, source, imported.notes, axis


def _companion(path: Path, notes: list[str]) -> Path | None:
    """The angle file beside ``path`` as named; for a link without one, beside its target."""
    found = angle_io.find_companion(path)
    if found is not None or not path.is_symlink():
        return found
    target = path.resolve()
    found = angle_io.find_companion(target)
    if found is not None:
        notes.append(
            f"no angle file beside the link {path.name} (stem {angle_io.input_stem(path)}); "
            f"used {found} beside its target"
        )
    return found


def resolve_series(
    path: Path,
    info: Any,
    *,
    angles: str | None = None,
    tilt_axis: float | None = None,
    alignment: str | None = None,
) -> SeriesMeta:
    """Angles, tilt axis, pixel size and sections of the tilt series in ``path`` (module doc).

    ``path`` is the input as named (not link-resolved); ``info`` its
    :class:`~cryoflow.io.mrc.MrcInfo`.

    Raises
    ------
    InputFileError, AngleFileError, AlignmentFileError, ConfigError
    """
    from cryoflow.io.alignment import find_alignment

    n_images = int(info.shape[0])
    ext = info.extended
    notes: list[str] = []
    companion = Path(angles) if angles else _companion(path, notes)
    record = None
    if alignment is not None:
        geometry, kept, align_src, angles_src, more, axis_deg = _alignment(
            path, info, alignment, angles, tilt_axis
        )
        notes += list(more)
        mdoc = angle_io.find_companion(path)
        if mdoc is not None and mdoc.suffix.lower() == ".mdoc":
            record = angle_io.read_angles(mdoc)
        axis = angle_io.TiltAxis(axis_deg, f"{Path(alignment).name}, median over tilts")
        pixel, pixel_src = _pixel(path, info, record.pixel_size_angstrom if record else None)
        return SeriesMeta(
            geometry, angles_src, None, axis, pixel, pixel_src, kept, align_src, tuple(notes)
        )
    if companion is not None:
        record = angle_io.read_angles(companion)
        if record.n_tilts != n_images:
            raise InputFileError(
                path, f"holds {n_images} images but {companion} lists {record.n_tilts} tilt angles"
            )
        values, angles_src, angles_file = record.angles_deg, str(companion), str(companion)
    elif ext.tilt_angles_deg is not None and len(ext.tilt_angles_deg) == n_images:
        values, angles_src, angles_file = ext.tilt_angles_deg, f"{ext.kind} extended header", None
    else:
        raise InputFileError(
            path,
            "no tilt angles: pass --angles FILE or put a .mdoc, .rawtlt or .tlt with the same "
            f"stem ({angle_io.input_stem(path)}) beside it",
        )
    axis = angle_io.resolve_tilt_axis(
        user_deg=tilt_axis,
        record=record,
        mrc_axis_deg=ext.tilt_axis_deg,
        mrc_axis_from=ext.tilt_axis_from,
        mrc_path=path,
    )
    if record is not None and axis.source == "none recorded (0)" and record.rotation_angle_deg:
        warnings.warn(
            f"{path}: {Path(record.path).name} has no 'Tilt axis angle' title line; its "
            f"sections' RotationAngle ({record.rotation_angle_deg:g}°) is not the tilt-axis "
            "angle, so 0 is used: pass --tilt-axis DEG",
            NonStandardInputWarning,
            stacklevel=2,
        )
    geometry = TiltGeometry.single_axis(values, tilt_axis_deg=axis.deg)
    pixel, pixel_src = _pixel(path, info, record.pixel_size_angstrom if record else None)
    found = find_alignment(path)
    if found is not None:
        notes.append(f"{found.name} beside it was not used (pass --alignment {found} to use it)")
    return SeriesMeta(geometry, angles_src, angles_file, axis, pixel, pixel_src, notes=tuple(notes))
