"""What an MRC file's extended header and labels record: pixel size, tilt angles, tilt axis.

Formats read (the byte layouts of their specifications; every value is checked for plausibility,
and an extended header that does not fit its format is ignored with a note, never an error):

- **FEI1 / FEI2** (``EXTTYP`` = ``FEI1``/``FEI2``; Thermo Fisher's MRC-2014 extension): one
  metadata record per section, its size in the record's first int32 ("Metadata size"); fields
  as :func:`mrcfile.dtypes.get_ext_header_dtype`: "Pixel size X" (metres, float64), "Alpha tilt"
  and "Tilt axis angle" (degrees). Bitmask 1 says which fields are valid (bit 7 alpha tilt, bit 12
  tilt axis angle, bit 14 pixel size X); a zero bitmask is taken as "all valid".
- **FEI old style** (Agard/FEI, no ``EXTTYP``, or ``AGAR``): 1024 records of 128 bytes, each 32
  float32: ``a_tilt, b_tilt, x_stage, y_stage, z_stage, x_shift, y_shift, defocus, exp_time,
  mean_int, tilt_axis, pixel_size, magnification, ...`` with the tilt and axis in degrees and the
  pixel size in metres.
- **SerialEM** (``EXTTYP`` = ``SERI``, or none with consistent ``nint``/``nreal``): ``nint``
  bytes per section, ``nreal`` flags of which int16 items are present, in this order: 1 tilt
  angle x 100 (2 bytes), 2 montage piece coordinates (6), 4 stage position x 25 (4),
  8 magnification / 100 (2), 16 intensity x 25000 (2), 32 exposure dose (4), then reserved
  items of 2 bytes (64, 256, 1024) and 4 bytes (128, 512). SerialEM records no pixel size
  there (the main header has it) and writes the tilt axis in a label:
  ``"Tilt axis angle = 85.3, binning = 1 ..."``; that label is read for every file.

Units: pixel sizes in Angstrom, angles in degrees. The tilt-axis angle is returned as recorded;
SerialEM's is IMOD's convention (see ``docs/design/conventions.md``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from mrcfile.dtypes import get_ext_header_dtype

from cryoflow.errors import NonStandardInputWarning

FEI_OLD_RECORD = 128  # bytes: 32 float32
FEI_OLD_SECTIONS = 1024
#: SerialEM items in file order: (flag, bytes)
_SERIAL_EM_ITEMS = (
    (1, 2), (2, 6), (4, 4), (8, 2), (16, 2), (32, 4), (64, 2), (128, 4), (256, 2), (512, 4),
    (1024, 2),
)  # fmt: skip
_LABEL_AXIS = re.compile(r"tilt\s*axis\s*angle\s*=\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)", re.I)
#: a header pixel size of exactly these (Angstrom) means "not set"
UNSET_PIXEL_SIZES = (0.0, 1.0)


@dataclass(frozen=True)
class ExtendedHeader:
    """Acquisition metadata found in an MRC file's extended header and labels.

    Attributes
    ----------
    kind : str
        ``"FEI1"``, ``"FEI2"``, ``"FEI"`` (old style), ``"SERI"`` (SerialEM) or ``""`` (none).
    pixel_size_angstrom : float or None
        One value for the series (the sections' median; sections disagreeing by > 1% get a note).
    tilt_angles_deg : tuple of float or None
        One per section, in section order.
    tilt_axis_deg : float or None
        As recorded (extended header, else a SerialEM label).
    tilt_axis_from : str
        Where the axis came from: ``"FEI1 extended header"``, ``"MRC label"``, ... or ``""``.
    notes : tuple of str
        What was found odd (each also suitable for a warning).
    """

    kind: str = ""
    pixel_size_angstrom: float | None = None
    tilt_angles_deg: tuple[float, ...] | None = None
    tilt_axis_deg: float | None = None
    tilt_axis_from: str = ""
    notes: tuple[str, ...] = field(default=())


def parse_extended_header(
    ext: bytes,
    *,
    exttyp: bytes,
    nint: int,
    nreal: int,
    n_sections: int,
    byte_order: str,
    labels: Sequence[str] = (),
) -> ExtendedHeader:
    """Read what ``ext`` (the extended header's bytes) and the labels record.

    Parameters
    ----------
    ext : bytes
        The ``nsymbt`` bytes after the 1024-byte header (may be empty).
    exttyp : bytes
        Header word 27 (4 bytes).
    nint, nreal : int
        Header fields (int16 at bytes 128 and 130).
    n_sections : int
        Number of sections (nz).
    byte_order : {"<", ">"}
        Byte order of the file.
    labels : sequence of str
        The header's text labels.
    """
    kind = exttyp.strip(b"\0 ").decode("ascii", "replace")
    notes: list[str] = []
    result: dict[str, object] = {}
    if ext:
        if kind in ("FEI1", "FEI2"):
            result = _fei_new(ext, kind, n_sections, byte_order, notes)
        elif kind == "SERI" or (kind == "" and _serial_em_size(nreal) == nint > 0):
            result = _serial_em(ext, nint, nreal, n_sections, byte_order, notes)
        elif kind in ("", "AGAR", "FEI") and len(ext) % FEI_OLD_RECORD == 0:
            result = _fei_old(ext, n_sections, byte_order, notes)
    axis, axis_from = result.get("tilt_axis_deg"), str(result.get("tilt_axis_from", ""))
    if axis is None:
        axis = _label_axis(labels)
        axis_from = "MRC label" if axis is not None else ""
    return ExtendedHeader(
        kind=str(result.get("kind", "")),
        pixel_size_angstrom=_opt_float(result.get("pixel_size_angstrom")),
        tilt_angles_deg=result.get("tilt_angles_deg"),  # type: ignore[arg-type]
        tilt_axis_deg=_opt_float(axis),
        tilt_axis_from=axis_from,
        notes=tuple(notes),
    )


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _label_axis(labels: Sequence[str]) -> float | None:
    for label in labels:
        if m := _LABEL_AXIS.search(label):
            value = float(m.group(1))
            if np.isfinite(value) and abs(value) <= 360:
                return value
    return None


def _one_pixel_size(values_m: np.ndarray, what: str, notes: list[str]) -> float | None:
    """Median of plausible per-section pixel sizes in metres -> Angstrom (None when none)."""
    ok = values_m[np.isfinite(values_m) & (values_m > 1e-12) & (values_m < 1e-6)]
    if ok.size == 0:
        return None
    px = float(np.median(ok)) * 1e10
    if np.any(np.abs(ok * 1e10 - px) > 0.01 * px):
        notes.append(f"{what} pixel sizes differ between sections; using their median {px:.4g} Å")
    return px


def _angles(values: np.ndarray) -> tuple[float, ...] | None:
    if values.size and np.all(np.isfinite(values)) and np.all(np.abs(values) <= 90.0):
        return tuple(float(v) for v in values)
    return None


def _axis(values: np.ndarray) -> float | None:
    ok = values[np.isfinite(values) & (np.abs(values) <= 360.0)]
    return float(np.median(ok)) if ok.size else None


def _fei_new(ext: bytes, kind: str, n: int, order: str, notes: list[str]) -> dict[str, object]:
    dtype = get_ext_header_dtype(kind.encode(), order)
    if dtype is None:  # pragma: no cover - mrcfile knows both kinds
        return {}
    size = int(np.frombuffer(ext[:4], dtype=">i4")[0]) if len(ext) >= 4 else 0
    if size not in range(dtype.itemsize, dtype.itemsize + 4097):
        size_le = int(np.frombuffer(ext[:4], dtype="<i4")[0]) if len(ext) >= 4 else 0
        size = size_le if size_le in range(dtype.itemsize, dtype.itemsize + 4097) else 0
    if size == 0 or len(ext) < n * size:
        notes.append(f"{kind} extended header does not hold {n} records; ignored")
        return {}
    records = np.stack(
        [np.frombuffer(ext[i * size : i * size + dtype.itemsize], dtype=dtype)[0] for i in range(n)]
    )
    mask = records["Bitmask 1"].astype(np.uint64)

    def field_ok(bit: int) -> np.ndarray:
        """Sections whose bitmask marks field ``bit`` valid (a zero bitmask: all valid)."""
        return (mask == 0) | (((mask >> np.uint64(bit)) & np.uint64(1)) == 1)

    px = records["Pixel size X"].astype(float)
    out: dict[str, object] = {"kind": kind}
    out["pixel_size_angstrom"] = _one_pixel_size(px[field_ok(14)], kind, notes)
    alpha = records["Alpha tilt"].astype(float)
    if np.all(field_ok(7)):
        out["tilt_angles_deg"] = _angles(alpha)
    axis = _axis(records["Tilt axis angle"].astype(float)[field_ok(12)])
    if axis is not None:
        out["tilt_axis_deg"], out["tilt_axis_from"] = axis, f"{kind} extended header"
    return out


def _fei_old(ext: bytes, n: int, order: str, notes: list[str]) -> dict[str, object]:
    count = min(n, len(ext) // FEI_OLD_RECORD)
    rec = np.frombuffer(ext[: count * FEI_OLD_RECORD], dtype=np.dtype(f"{order}f4"))
    rec = rec.reshape(count, 32).astype(np.float64)
    px = _one_pixel_size(rec[:, 11], "FEI", notes)
    tilts = _angles(rec[:, 0]) if count == n else None
    axis = _axis(rec[:, 10]) if px is not None else None
    if px is None and tilts is None:
        return {}  # not an FEI header (or an empty one)
    out: dict[str, object] = {"kind": "FEI", "pixel_size_angstrom": px, "tilt_angles_deg": tilts}
    if axis is not None and np.any(rec[:, 10] != 0):
        out["tilt_axis_deg"], out["tilt_axis_from"] = axis, "FEI extended header"
    return out


def _serial_em_size(flags: int) -> int:
    return sum(size for bit, size in _SERIAL_EM_ITEMS if flags & bit)


def _serial_em(
    ext: bytes, nint: int, nreal: int, n: int, order: str, notes: list[str]
) -> dict[str, object]:
    if nint <= 0 or _serial_em_size(nreal) != nint or len(ext) < n * nint:
        notes.append(
            f"SerialEM extended header: {nint} bytes per section do not match the flags {nreal}"
            f" and {len(ext)} bytes; ignored"
        )
        return {}
    out: dict[str, object] = {"kind": "SERI"}
    if nreal & 1:  # the tilt angle x 100 comes first
        rec = np.frombuffer(ext[: n * nint], dtype=np.uint8).reshape(n, nint)
        raw = np.ascontiguousarray(rec[:, :2]).view(np.dtype(f"{order}i2"))[:, 0]
        out["tilt_angles_deg"] = _angles(raw.astype(np.float64) / 100.0)
    return out


def resolve_pixel_size(
    header_angstrom: float,
    extended: ExtendedHeader,
    *,
    mdoc_angstrom: float | None = None,
    path: object = "",
    warn: bool = True,
) -> tuple[float, str]:
    """The pixel size to use, in Angstrom, and where it came from.

    Order: the ``.mdoc``'s PixelSpacing; the main header's when set (not 0 or 1 Å); the
    extended header's; else the header's value (or 1 Å) with a
    :class:`~cryoflow.errors.NonStandardInputWarning` that it is unset.

    Returns
    -------
    (pixel_size_angstrom, source) with source one of ``"mdoc"``, ``"MRC header"``,
    ``"<kind> extended header"``, ``"unset"``.
    """
    if mdoc_angstrom is not None and mdoc_angstrom > 0:
        return float(mdoc_angstrom), "mdoc"
    header = float(header_angstrom) if np.isfinite(header_angstrom) else 0.0
    if header > 0 and not any(abs(header - u) < 1e-6 for u in UNSET_PIXEL_SIZES):
        return header, "MRC header"
    if extended.pixel_size_angstrom is not None:
        return float(extended.pixel_size_angstrom), f"{extended.kind} extended header"
    value = header if header > 0 else 1.0
    if warn:
        warnings.warn(
            f"{path}: pixel size is unset ({header:g} Å in the header, none in an extended header "
            f"or .mdoc); using {value:g} Å",
            NonStandardInputWarning,
            stacklevel=2,
        )
    return value, "unset"
