"""Tilt-angle files: IMOD ``.tlt``/``.rawtlt`` and SerialEM ``.mdoc``; the tilt-axis angle.

Every parser returns an :class:`AngleRecord`; every problem raises
:class:`~cryoflow.errors.AngleFileError` naming the file and, where there is one, the line.

The tilt-axis angle (:func:`resolve_tilt_axis`) is in IMOD's and SerialEM's convention: degrees
from the image y axis to the tilt axis, counter-clockwise positive with x to the right and the
row index y pointing up (as 3dmod displays an MRC file): the value an ``.mdoc`` records as
"Tilt axis angle" and etomo as the tilt axis rotation. It is
``TiltGeometry.single_axis(..., tilt_axis_deg=...)`` unchanged (``docs/design/conventions.md``).

Companion files are looked up beside the input *as given*: a symbolic link
``TS_07.mrc -> good.mrc`` is named ``TS_07`` and uses ``TS_07.rawtlt`` beside the link
(:func:`input_path`, :func:`input_stem`, :func:`find_companion`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryoflow.errors import AngleFileError

ANGLE_SUFFIXES = (".mdoc", ".rawtlt", ".tlt")  # companion-file search order (CONTRACT.md)
_TILT_AXIS = re.compile(r"tilt\s*axis\s*angle\s*=\s*([-+0-9.eE]+)", re.IGNORECASE)
_KEY_VALUE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_SECTION = re.compile(r"^\s*\[\s*ZValue\s*=\s*(.*?)\s*\]\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class AngleRecord:
    """Tilt angles read from a file.

    Attributes
    ----------
    path : str
    angles_deg : tuple of float, one per image, in image (Z) order
    pixel_size_angstrom : float or None
        From an mdoc's ``PixelSpacing``; ``None`` for IMOD files.
    tilt_axis_deg : float or None
        From an mdoc's "Tilt axis angle = ..." title line, when present.
    tilt_axis_key : str
        Which mdoc entry gave ``tilt_axis_deg`` (``"Tilt axis angle"``), else ``""``.
    rotation_angle_deg : float or None
        The median of the sections' ``RotationAngle``, when present. It is *not* the tilt-axis
        angle: in SerialEM files it is about 90 degrees from the title's "Tilt axis angle"
        (e.g. 3.35 with "Tilt axis angle = -86.7"), and which way round is not documented, so
        it is recorded, never used as the axis (``docs/design/conventions.md``).
    """

    path: str
    angles_deg: tuple[float, ...]
    pixel_size_angstrom: float | None = None
    tilt_axis_deg: float | None = None
    tilt_axis_key: str = ""
    rotation_angle_deg: float | None = None

    @property
    def n_tilts(self) -> int:
        return len(self.angles_deg)


def read_angles(path: str | os.PathLike[str]) -> AngleRecord:
    """Read a ``.tlt``, ``.rawtlt`` or ``.mdoc`` file (chosen by suffix)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".tlt", ".rawtlt"):
        return read_tlt(p)
    if suffix == ".mdoc":
        return read_mdoc(p)
    raise AngleFileError(
        p, f"unknown angle file type {suffix!r}; expected one of {', '.join(ANGLE_SUFFIXES)}"
    )


def input_path(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute *without* resolving symbolic links (the input as the user named it).

    Use it wherever an input's name or neighbours matter; ``Path.resolve()`` would turn
    ``TS_07.mrc -> good.mrc`` into ``good.mrc``.
    """
    return Path(os.path.abspath(os.fspath(path)))


def input_stem(path: str | os.PathLike[str]) -> str:
    """The tomogram name an input file gives: its own stem (a link's, not its target's).

    ``TS_01.mrc``, ``TS_01.st``, ``TS_01.mrc.gz`` -> ``TS_01``.
    """
    return _stem(Path(path))


def find_companion(mrc_path: str | os.PathLike[str]) -> Path | None:
    """The ``.mdoc``, ``.rawtlt`` or ``.tlt`` beside ``mrc_path`` with the same stem (in that order).

    SerialEM's ``TS_01.mrc.mdoc`` is accepted as well as ``TS_01.mdoc``. A symbolic link is
    not followed: the companion is looked for beside the link, with the link's own stem.
    """
    p = input_path(mrc_path)
    stem = _stem(p)
    candidates: list[Path] = []
    for suffix in ANGLE_SUFFIXES:
        candidates.append(p.with_name(stem + suffix))
        if suffix == ".mdoc":
            candidates.append(p.with_name(p.name + ".mdoc"))
    return next((c for c in candidates if c.is_file()), None)


def _stem(p: Path) -> str:
    name = p.name
    for suffix in (".gz", ".bz2"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    for suffix in (".mrc", ".mrcs", ".st", ".ali", ".rec", ".map"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _read_text(p: Path) -> list[str]:
    if not p.is_file():
        raise AngleFileError(p, "no such file")
    try:
        return p.read_text(encoding="utf-8", errors="strict").splitlines()
    except UnicodeDecodeError as exc:
        raise AngleFileError(p, f"not a text file ({exc.reason} at byte {exc.start})") from exc


def _parse_angle(p: Path, lineno: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise AngleFileError(p, f"line {lineno}: cannot parse tilt angle {text!r}") from exc
    if not math.isfinite(value):
        raise AngleFileError(p, f"line {lineno}: tilt angle {text!r} is not finite")
    if abs(value) > 90.0:
        raise AngleFileError(p, f"line {lineno}: tilt angle {value} is outside -90..90 degrees")
    return value


def read_tlt(path: str | os.PathLike[str]) -> AngleRecord:
    """IMOD ``.tlt``/``.rawtlt``: one angle in degrees per line; blank lines are skipped."""
    p = Path(path)
    angles = [
        _parse_angle(p, i, line.strip())
        for i, line in enumerate(_read_text(p), start=1)
        if line.strip()
    ]
    if not angles:
        raise AngleFileError(p, "holds no tilt angles")
    return AngleRecord(str(p), tuple(angles))


def read_mdoc(path: str | os.PathLike[str]) -> AngleRecord:
    """SerialEM ``.mdoc``: ``TiltAngle`` per ``[ZValue = n]`` section, sorted by ZValue.

    Also reads ``PixelSpacing`` (Å; the first one found), the tilt-axis angle from a title
    line "Tilt axis angle = ..." and the sections' ``RotationAngle`` (recorded, not the axis). Each line is checked first (so errors name the line), then
    the file is parsed with ``mdocfile`` as a cross-check of its structure.
    """
    p = Path(path)
    lines = _read_text(p)
    sections: dict[int, float] = {}
    zvalue: int | None = None
    pixel: float | None = None
    tilt_axis: float | None = None
    rotations: list[float] = []
    for i, line in enumerate(lines, start=1):
        if m := _SECTION.match(line):
            try:
                zvalue = int(m.group(1))
            except ValueError as exc:
                raise AngleFileError(p, f"line {i}: cannot parse ZValue {m.group(1)!r}") from exc
            if zvalue in sections:
                raise AngleFileError(p, f"line {i}: ZValue {zvalue} appears twice")
            sections[zvalue] = math.nan
            continue
        if tilt_axis is None and (m := _TILT_AXIS.search(line)):
            tilt_axis = _finite(p, i, m.group(1), "tilt axis angle")
            continue
        if not (m := _KEY_VALUE.match(line)):
            continue
        key, value = m.group(1), m.group(2)
        if key == "TiltAngle":
            if zvalue is None:
                raise AngleFileError(p, f"line {i}: TiltAngle outside a [ZValue = n] section")
            sections[zvalue] = _parse_angle(p, i, value)
        elif key == "RotationAngle":
            rotations.append(_finite(p, i, value, "RotationAngle"))
        elif key == "PixelSpacing" and pixel is None:
            pixel = _finite(p, i, value, "PixelSpacing")
            if pixel <= 0:
                raise AngleFileError(p, f"line {i}: PixelSpacing must be > 0, got {value!r}")
    if not sections:
        raise AngleFileError(p, "holds no [ZValue = n] sections")
    missing = [z for z, a in sections.items() if math.isnan(a)]
    if missing:
        raise AngleFileError(p, f"section ZValue = {missing[0]} has no TiltAngle")
    _cross_check(p, len(sections))
    order = sorted(sections)
    key = "Tilt axis angle" if tilt_axis is not None else ""
    rotation = float(np.median(rotations)) if rotations else None
    return AngleRecord(str(p), tuple(sections[z] for z in order), pixel, tilt_axis, key, rotation)


def _finite(p: Path, lineno: int, text: str, what: str) -> float:
    try:
        value = float(text.split()[0])
    except (ValueError, IndexError) as exc:
        raise AngleFileError(p, f"line {lineno}: cannot parse {what} {text!r}") from exc
    if not math.isfinite(value):
        raise AngleFileError(p, f"line {lineno}: {what} {text!r} is not finite")
    return value


@contextlib.contextmanager
def _quiet_mdocfile() -> Iterator[None]:
    """Keep ``mdocfile``'s log lines ("Unknown fields will be preserved") off the terminal."""
    logger = logging.getLogger("mdocfile")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def _cross_check(p: Path, n_sections: int) -> None:
    import mdocfile

    try:
        with _quiet_mdocfile():
            df = mdocfile.read(p)
    except (ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise AngleFileError(p, f"malformed mdoc: {str(exc).splitlines()[0]}") from exc
    if len(df) != n_sections or not np.all(np.isfinite(df["TiltAngle"].to_numpy(dtype=float))):
        raise AngleFileError(
            p, f"malformed mdoc: mdocfile reads {len(df)} sections, expected {n_sections}"
        )


# ---------------------------------------------------------------------------- tilt axis
@dataclass(frozen=True)
class TiltAxis:
    """The tilt-axis angle to use and where it came from.

    Attributes
    ----------
    deg : float
        IMOD/SerialEM convention (module docstring).
    source : str
        ``"--tilt-axis"``, ``"<file>.mdoc (Tilt axis angle)"``,
        ``"<file>.mrc: FEI1 extended header"`` (or ``FEI``, ``FEI2``, ``MRC label``), or
        ``"none recorded (0)"``.
    """

    deg: float
    source: str

    def describe(self) -> str:
        """E.g. ``"tilt axis 85.3° (from TS_01.mrc.mdoc (Tilt axis angle))"``."""
        if self.source == "none recorded (0)":
            return (
                f"tilt axis {self.deg:g}° (none recorded: the image y axis; else --tilt-axis DEG)"
            )
        return f"tilt axis {self.deg:g}° (from {self.source})"


def parse_tilt_axis(value: object) -> float:
    """A user's ``--tilt-axis`` value in degrees (finite, -360..360), else ``ValueError``."""
    try:
        deg = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--tilt-axis must be a number of degrees, got {value!r}") from exc
    if not math.isfinite(deg) or abs(deg) > 360.0:
        raise ValueError(f"--tilt-axis must be finite degrees in -360..360, got {value!r}")
    return deg


def resolve_tilt_axis(
    *,
    user_deg: float | None = None,
    record: AngleRecord | None = None,
    mrc_axis_deg: float | None = None,
    mrc_axis_from: str = "",
    mrc_path: str | os.PathLike[str] | None = None,
) -> TiltAxis:
    """The tilt-axis angle of a tilt series: the user's, else the mdoc's, else the MRC's, else 0.

    Parameters
    ----------
    user_deg : float, optional
        ``--tilt-axis``.
    record : AngleRecord, optional
        The angle file read (an mdoc may hold the axis; IMOD files never do).
    mrc_axis_deg, mrc_axis_from : float, str
        ``MrcInfo.extended.tilt_axis_deg`` and ``.tilt_axis_from``.
    mrc_path : path, optional
        The MRC file, for the source text.
    """
    if user_deg is not None:
        return TiltAxis(parse_tilt_axis(user_deg), "--tilt-axis")
    if record is not None and record.tilt_axis_deg is not None:
        key = record.tilt_axis_key or "Tilt axis angle"
        return TiltAxis(float(record.tilt_axis_deg), f"{Path(record.path).name} ({key})")
    if mrc_axis_deg is not None and math.isfinite(mrc_axis_deg):
        where = Path(mrc_path).name if mrc_path is not None else "MRC"
        return TiltAxis(float(mrc_axis_deg), f"{where}: {mrc_axis_from or 'MRC header'}")
    return TiltAxis(0.0, "none recorded (0)")
