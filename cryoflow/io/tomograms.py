"""What a stored tomogram knows of itself: its tilt range (missing wedge), shape and pixel size.

Tilt range (``CONTRACT.md``, "Missing wedge"), looked up by :func:`tilt_range` in this order:

1. the volume's own record, attribute ``tilt_range_deg = [min, max]`` (with
   ``tilt_range_source``), written by ``cryoflow ingest --tomogram`` from a ``.tlt``/
   ``.rawtlt``/``.mdoc`` beside the MRC, ``--angles FILE`` or ``--tilt-range MIN MAX``
   (:func:`resolve_tilt_range` and :func:`tilt_range_attrs` are the helpers it uses);
2. the tomogram's tilt series, when cryoflow reconstructed it: the smallest and largest of
   its geometry's tilt angles;
3. none: :class:`~cryoflow.errors.MissingTiltRangeError` naming the tomogram and the three
   ways to give it.

A dual-axis geometry has no single-axis wedge and is refused (``GeometryError``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cryoflow.errors import GeometryError, MissingTiltRangeError
from cryoflow.geometry import TiltGeometry
from cryoflow.io import angles as angle_io
from cryoflow.io import nodes
from cryoflow.io.layout import TILT_SERIES, TOMOGRAMS, VOLUMES, open_dataset, tomogram_group
from cryoflow.io.names import validate_name
from cryoflow.io.particles import TomogramInfo
from cryoflow.kernels.wedge import parse_tilt_range

__all__ = [
    "HOW_TO_GIVE",
    "TiltRange",
    "resolve_tilt_range",
    "tilt_range",
    "tilt_range_attrs",
    "tomogram_info",
]

HOW_TO_GIVE = (
    "give it when ingesting the tomogram: a .tlt/.rawtlt/.mdoc with the same stem beside the "
    "MRC, --angles FILE, or --tilt-range MIN MAX (then `cryoflow ingest --tomogram ... "
    "--overwrite`)"
)


@dataclass(frozen=True)
class TiltRange:
    """A tilt range in degrees and where it came from (a file, an option, a tilt series)."""

    min_deg: float
    max_deg: float
    source: str

    def __post_init__(self) -> None:
        lo, hi = parse_tilt_range((self.min_deg, self.max_deg))
        # to a micro-degree: angles kept in radians (a tilt series' geometry) come back exact
        object.__setattr__(self, "min_deg", round(lo, 6) + 0.0)
        object.__setattr__(self, "max_deg", round(hi, 6) + 0.0)

    @property
    def as_tuple(self) -> tuple[float, float]:
        return (self.min_deg, self.max_deg)


def tilt_range_attrs(record: TiltRange) -> dict[str, Any]:
    """The volume attributes that record a tilt range (pass as ``write_volume(attrs=...)``)."""
    return {"tilt_range_deg": [record.min_deg, record.max_deg], "tilt_range_source": record.source}


def resolve_tilt_range(
    mrc_path: str | os.PathLike[str],
    *,
    angles: str | os.PathLike[str] | None = None,
    tilt_range_deg: tuple[float, float] | None = None,
) -> TiltRange | None:
    """The tilt range of a tomogram MRC being ingested, from the first of the three ways.

    ``tilt_range_deg`` (``--tilt-range MIN MAX``), else ``angles`` (``--angles FILE``), else a
    ``.mdoc``/``.rawtlt``/``.tlt`` with the MRC's stem beside it; ``None`` when there is none.

    Raises
    ------
    AngleFileError
        The angle file is malformed (naming it and the line).
    GeometryError
        A range outside ``-90 <= min <= max <= 90``.
    """
    if tilt_range_deg is not None:
        lo, hi = parse_tilt_range(tilt_range_deg)
        return TiltRange(lo, hi, "--tilt-range")
    path = Path(angles) if angles is not None else angle_io.find_companion(Path(mrc_path))
    if path is None:
        return None
    record = angle_io.read_angles(path)
    a = np.asarray(record.angles_deg, dtype=float)
    return TiltRange(float(a.min()), float(a.max()), str(path))


def _from_geometry(geometry: TiltGeometry, name: str) -> TiltRange:
    if len(set(geometry.axis_id)) > 1:
        raise GeometryError(
            f"tomogram {name!r}: a dual-axis tilt series has no single-axis missing wedge"
        )
    a = np.asarray(geometry.angles_deg, dtype=float)
    return TiltRange(float(a.min()), float(a.max()), f"tomograms/{name}/tilt_series")


def tilt_range(store: object, name: str, key: str = "tomogram") -> TiltRange:
    """The tilt range tomogram ``name``'s volume ``key`` was reconstructed from.

    Raises
    ------
    MissingTiltRangeError
        Neither the volume nor a tilt series records one; the message names the tomogram and
        the three ways to give it.
    NodeNotFoundError
        No such tomogram.
    """
    root = open_dataset(store)
    tomogram_group(root, name)
    validate_name(key, "volume key")
    base = f"{TOMOGRAMS}/{name}"
    if nodes.exists(root, f"{base}/{VOLUMES}/{key}"):
        group = nodes.open_node(root, f"{base}/{VOLUMES}/{key}", what="volume", deep=False)
        extra = nodes.cryoflow_attrs(group).get("attrs", {})
        recorded = extra.get("tilt_range_deg") if isinstance(extra, dict) else None
        if recorded is not None:
            lo, hi = parse_tilt_range(recorded)
            return TiltRange(lo, hi, str(extra.get("tilt_range_source", f"{base}/{VOLUMES}/{key}")))
    if nodes.exists(root, f"{base}/{TILT_SERIES}"):
        arr = nodes.open_node(root, f"{base}/{TILT_SERIES}", what="tilt series")
        return _from_geometry(TiltGeometry.from_dict(arr.attrs["geometry"]), name)
    raise MissingTiltRangeError(
        f"{nodes.store_label(store)}: tomogram {name!r} has no tilt range, so its missing "
        f"wedge is unknown; {HOW_TO_GIVE}"
    )


def tomogram_info(store: object, name: str, key: str = "tomogram") -> TomogramInfo:
    """Level-0 shape and pixel size of tomogram ``name``'s volume ``key``."""
    from cryoflow.io.store import open_volume

    vol = open_volume(store, name, key, level=0)
    return TomogramInfo(name, tuple(int(s) for s in vol.shape), vol.attrs["pixel_size_angstrom"])  # type: ignore[arg-type]
