"""Box tables as CSV or JSON: 2D boxes per tilt and 3D boxes per tomogram.

2D boxes (detector pixels, ``y1``/``x1`` exclusive, 0-based tilt index)::

    tilt,class,score,y0,x0,y1,x1

3D boxes (voxels, ``z1``/``y1``/``x1`` exclusive; ``support`` = mean votes inside)::

    class,support,z0,y0,x0,z1,y1,x1

CSV files have that header (extra columns are kept). JSON files hold either a list of
records or ``{"kind": "cryoflow.boxes2d"|"cryoflow.boxes3d", "version": 1, "boxes": [...]}``
(what :func:`write_boxes` writes). The format follows the file suffix (``.csv``/``.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cryoflow.errors import InputFileError
from cryoflow.kernels.boxes import BOX2D_COLUMNS, BOX3D_COLUMNS

__all__ = ["BOX2D_COLUMNS", "BOX3D_COLUMNS", "read_boxes", "write_boxes"]

_KINDS = {2: "cryoflow.boxes2d", 3: "cryoflow.boxes3d"}


def _columns(ndim: int) -> list[str]:
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    return BOX2D_COLUMNS if ndim == 2 else BOX3D_COLUMNS


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InputFileError(path, f"box files must end in .csv or .json, got {suffix!r}")
    return suffix


def read_boxes(path: str | Path, ndim: int = 2) -> pd.DataFrame:
    """Read a 2D (``ndim=2``) or 3D (``ndim=3``) box table from CSV or JSON.

    Returns
    -------
    pandas.DataFrame with the columns of the module docstring first (``class`` as str,
    coordinates and scores as float, ``tilt`` as int), in file order.

    Raises
    ------
    InputFileError
        Missing file, unreadable content, missing columns, non-numeric or non-finite values,
        boxes with ``hi < lo``, or negative tilt indices.
    """
    path = Path(path)
    cols = _columns(ndim)
    suffix = _suffix(path)
    if not path.is_file():
        raise InputFileError(path, "no such box file")
    try:
        if suffix == ".csv":
            table = pd.read_csv(path)
        else:
            doc = json.loads(path.read_text())
            records = doc.get("boxes") if isinstance(doc, dict) else doc
            if not isinstance(records, list):
                raise InputFileError(path, "JSON must be a list of boxes or have a 'boxes' list")
            if isinstance(doc, dict) and doc.get("kind") not in (None, _KINDS[ndim]):
                raise InputFileError(path, f"holds {doc.get('kind')!r}, expected {_KINDS[ndim]!r}")
            table = pd.DataFrame.from_records(records, columns=None if records else cols)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(path, f"cannot parse box table: {exc}") from exc
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise InputFileError(path, f"missing column(s) {missing}; a {ndim}D box table needs {cols}")
    numeric = [c for c in cols if c != "class"]
    try:
        values = table[numeric].astype(float)
    except (TypeError, ValueError) as exc:
        raise InputFileError(path, f"non-numeric box values: {exc}") from exc
    if not np.all(np.isfinite(values.to_numpy())):
        raise InputFileError(path, "box values must be finite")
    d = ndim
    lo = ["z0", "y0", "x0"][3 - d :]
    hi = ["z1", "y1", "x1"][3 - d :]
    bad = (values[hi].to_numpy() < values[lo].to_numpy()).any(axis=1)
    if bad.any():
        raise InputFileError(
            path, f"box row {int(np.argmax(bad))} has an upper bound below its lower bound"
        )
    out = table.copy()
    out[numeric] = values
    out["class"] = table["class"].astype(str)
    if ndim == 2:
        if (values["tilt"] < 0).any() or (values["tilt"] != np.round(values["tilt"])).any():
            raise InputFileError(path, "tilt must be a non-negative integer index")
        out["tilt"] = values["tilt"].astype(np.int64)
    return out[cols + [c for c in out.columns if c not in cols]].reset_index(drop=True)


def write_boxes(path: str | Path, boxes: pd.DataFrame, ndim: int = 2) -> Path:
    """Write a 2D or 3D box table to ``path`` (``.csv`` or ``.json``); returns the path."""
    path = Path(path)
    cols = _columns(ndim)
    suffix = _suffix(path)
    missing = [c for c in cols if c not in boxes.columns]
    if missing:
        raise ValueError(f"box table lacks column(s) {missing}; needs {cols}")
    table = boxes[cols + [c for c in boxes.columns if c not in cols]]
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        records = json.loads(table.to_json(orient="records"))
        doc = {"kind": _KINDS[ndim], "version": 1, "boxes": records}
        path.write_text(json.dumps(doc, indent=1) + "\n")
    return path
