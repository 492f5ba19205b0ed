"""copick-style JSON picks: one pick object per tomogram ("run"), positions in Ångström.

A pick object (copick's ``CopickPicksFile``)::

    {"pickable_object_name": "ribosome", "user_id": "cryoflow", "session_id": "0",
     "run_name": "TS_01", "voxel_spacing": 10.0, "unit": "angstrom",
     "trust_orientation": true,
     "points": [{"location": {"x": 1230.0, "y": 45.0, "z": 310.0},
                 "transformation_": [[...], [...], [...], [0, 0, 0, 1]],
                 "instance_id": 0, "score": 0.93}, ...]}

``location`` is the voxel position times the voxel spacing (``x_angstrom = x * pixel_size``,
the voxel index grid of copick and the CZ cryoET Data Portal). Locations are physical Å: when
reading, they become voxels of the stored tomogram (its voxel size), whatever
``voxel_spacing`` the file records (the tomogram the picks were made on may be binned). ``transformation_`` is a 4x4
affine whose rotation block is the contract's ``R`` acting on ``(x, y, z)`` (reference ->
tomogram, :mod:`cryoflow.geometry.rotation`); it is written when the table has angles
(``trust_orientation`` true) and read back into ``rot, tilt, psi`` when ``trust_orientation``
is true. A ``.json`` file holds one pick object, or a list of them for several tomograms;
:func:`write_copick_tree` writes copick's own layout
``ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryoflow.errors import InputFileError
from cryoflow.geometry.rotation import euler_from_matrix_xyz, matrix_xyz_from_euler
from cryoflow.io.names import validate_name
from cryoflow.io.particles import ANGLE_COLUMNS, TomogramInfo, validate_particles

__all__ = ["read_copick", "write_copick", "write_copick_tree", "pick_objects"]


def _pixel(info: Mapping[str, TomogramInfo], name: str, path: Path, spacing: Any) -> float:
    """Å per voxel of the grid the positions are wanted in: the stored tomogram's voxel size
    when known (copick locations are physical Å, whatever tomogram they were picked on),
    else the file's ``voxel_spacing``."""
    if name in info:
        return info[name].pixel_size_angstrom
    if spacing is not None:
        try:
            value = float(spacing)
        except (TypeError, ValueError):
            value = float("nan")
        if np.isfinite(value) and value > 0:
            return value
    raise InputFileError(
        path, f"run {name!r}: positions are in Å but no voxel spacing is known for it"
    )


def read_copick(
    path: str | os.PathLike[str],
    *,
    tomograms: Mapping[str, TomogramInfo] | None = None,
    default_tomogram: str | None = None,
) -> pd.DataFrame:
    """Picks from a copick JSON file (one object or a list) as a particle table.

    Positions are divided by the tomogram's voxel size from ``tomograms`` (so they are voxels
    of the stored tomogram), else by the file's ``voxel_spacing``. Raises :class:`InputFileError` naming the file and the point.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(p, f"not a JSON file: {exc}") from exc
    objects = data if isinstance(data, list) else [data]
    rows: list[dict[str, Any]] = []
    for k, obj in enumerate(objects):
        if not isinstance(obj, dict) or not isinstance(obj.get("points"), list):
            raise InputFileError(p, f"pick object {k}: expected a copick pick object with 'points'")
        name = obj.get("run_name") or default_tomogram
        if not name:
            raise InputFileError(p, f"pick object {k}: no run_name; name the tomogram")
        unit = str(obj.get("unit", "angstrom")).lower()
        if unit not in ("angstrom", "a", "å"):
            raise InputFileError(p, f"pick object {k}: unit {unit!r}; only 'angstrom' is read")
        pixel = _pixel(tomograms or {}, str(name), p, obj.get("voxel_spacing"))
        trust = bool(obj.get("trust_orientation", False))
        for i, point in enumerate(obj["points"]):
            rows.append(_row(p, k, i, point, str(name), pixel, trust))
    table = pd.DataFrame(rows)
    if not len(table):
        table = pd.DataFrame({"tomogram": [], "x": [], "y": [], "z": []})
    return validate_particles(table, str(p))


def _row(
    p: Path, k: int, i: int, point: Any, name: str, pixel: float, trust: bool
) -> dict[str, Any]:
    where = f"pick object {k}, point {i}"
    try:
        loc = point["location"]
        xyz = [float(loc[a]) / pixel for a in ("x", "y", "z")]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(p, f"{where}: location must hold numbers x, y, z ({exc})") from exc
    row: dict[str, Any] = {"tomogram": name, "x": xyz[0], "y": xyz[1], "z": xyz[2]}
    if "score" in point and point["score"] is not None:
        row["score"] = point["score"]
    if trust and point.get("transformation_") is not None:
        m = np.asarray(point["transformation_"], dtype=float)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise InputFileError(p, f"{where}: transformation_ must be a finite 4x4 matrix")
        rot, tilt, psi = euler_from_matrix_xyz(m[:3, :3])
        row.update(rot=rot, tilt=tilt, psi=psi)
    return row


def pick_objects(
    table: pd.DataFrame,
    tomograms: Mapping[str, TomogramInfo],
    *,
    object_name: str = "particle",
    user_id: str = "cryoflow",
    session_id: str = "0",
) -> list[dict[str, Any]]:
    """One copick pick object per tomogram of ``table`` (in order of first appearance)."""
    t = validate_particles(table, "particle table")
    has_angles = all(c in t.columns for c in ANGLE_COLUMNS)
    out = []
    for name in dict.fromkeys(t["tomogram"]):
        if name not in tomograms:
            raise InputFileError("particle table", f"no voxel spacing for tomogram {name!r}")
        pixel = tomograms[name].pixel_size_angstrom
        rows = t[t["tomogram"] == name]
        mats = (
            matrix_xyz_from_euler(rows[list(ANGLE_COLUMNS)].to_numpy(np.float64))
            if has_angles
            else np.broadcast_to(np.eye(3), (len(rows), 3, 3))
        )
        points = []
        for i, (row, m) in enumerate(zip(rows.itertuples(index=False), mats, strict=True)):
            affine = np.eye(4)
            affine[:3, :3] = m
            point: dict[str, Any] = {
                "location": {a: float(getattr(row, a)) * pixel for a in ("x", "y", "z")},
                "transformation_": affine.tolist(),
                "instance_id": i,
            }
            if "score" in t.columns:
                point["score"] = float(rows["score"].iloc[i])
            points.append(point)
        out.append(
            {
                "pickable_object_name": object_name,
                "user_id": user_id,
                "session_id": session_id,
                "run_name": str(name),
                "voxel_spacing": pixel,
                "unit": "angstrom",
                "trust_orientation": has_angles,
                "points": points,
            }
        )
    return out


def write_copick(
    path: str | os.PathLike[str],
    table: pd.DataFrame,
    *,
    tomograms: Mapping[str, TomogramInfo],
    object_name: str = "particle",
) -> None:
    """Write the picks as one JSON file: one pick object, or a list for several tomograms."""
    objects = pick_objects(table, tomograms, object_name=object_name)
    data: Any = objects[0] if len(objects) == 1 else objects
    Path(path).write_text(json.dumps(data, indent=1))


def write_copick_tree(
    root: str | os.PathLike[str],
    table: pd.DataFrame,
    *,
    tomograms: Mapping[str, TomogramInfo],
    object_name: str = "particle",
    user_id: str = "cryoflow",
    session_id: str = "0",
) -> list[Path]:
    """Write copick's layout ``ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json``."""
    written = []
    for obj in pick_objects(
        table, tomograms, object_name=object_name, user_id=user_id, session_id=session_id
    ):
        run = validate_name(obj["run_name"], "tomogram name")
        d = Path(root) / "ExperimentRuns" / run / "Picks"
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"{user_id}_{session_id}_{object_name}.json"
        f.write_text(json.dumps(obj, indent=1))
        written.append(f)
    return written
