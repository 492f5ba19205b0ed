"""The files ``cryoflow average`` writes (``CONTRACT.md``, "Subtomograms").

``DIR/average.mrc``, ``half1.mrc``, ``half2.mrc`` (float32, the tomograms' voxel size, box
centre at voxel ``B // 2``), ``fsc.csv`` (``resolution_angstrom, fsc``, the gold-standard
curve of the last round) and ``particles.star`` (one row per particle, in the order of the
input particle file when the set records it):

- ``rlnTomoName``, ``rlnCoordinateX/Y/Z``: the input coordinates, unchanged;
- ``rlnAngleRot/Tilt/Psi``: the refined orientation (the contract's ZYZ convention:
  ``Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True)`` maps reference to tomogram
  coordinates);
- ``rlnOriginX/Y/ZAngst``: RELION's origin, the *opposite* of where the particle's centre
  lies relative to its input coordinate: the refined centre is
  ``coordinate - origin / voxel_size``. The box was cut around ``rint(coordinate)``
  (``box_x0 + B // 2``), and alignment found the centre at ``shift`` from the box centre, so
  ``origin = (coordinate - box_centre - shift) * voxel_size``;
- ``rlnRandomSubset`` (1/2), ``rlnClassNumber`` 1, and ``cryoflow_align_score``;
- the input's own other columns (e.g. ``rlnTomoParticleName``, a pick score) as they were.

Nothing half-written is left looking complete: every file goes to a temporary name first;
the renames put ``average.mrc`` last, and with ``--overwrite`` the old ``average.mrc`` goes
first, so a directory with an ``average.mrc`` holds one run's complete set of files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryoflow.errors import AlreadyExistsError, InputFileError

__all__ = ["FILES", "check_outputs", "particles_table", "published_state", "write_outputs"]

#: the files, in the order they are renamed into place (``average.mrc`` last)
FILES = ("particles.star", "fsc.csv", "half1.mrc", "half2.mrc", "average.mrc")
#: particle-set columns that describe the extraction, not the particle (not written)
EXTRACTION_COLUMNS = (
    "tilt_min_deg",
    "tilt_max_deg",
    "pixel_size_angstrom",
    "box_z0",
    "box_y0",
    "box_x0",
    "inside_fraction",
)
REFINED_COLUMNS = (
    "rot",
    "tilt",
    "psi",
    "class",
    "half",
    "origin_x_angstrom",
    "origin_y_angstrom",
    "origin_z_angstrom",
    "align_score",
)


def check_outputs(out: Path, *, overwrite: bool) -> None:
    """Refuse ``out`` when it is a file, or holds any output and ``overwrite`` is not set.

    Raises
    ------
    InputFileError, AlreadyExistsError
        Naming the path.
    """
    if out.exists() and not out.is_dir():
        raise InputFileError(out, "--out must be a directory, not a file")
    if overwrite:
        return
    for name in FILES:
        if (out / name).exists():
            raise AlreadyExistsError(f"{out / name} already exists; pass --overwrite to replace it")


def particles_table(state: dict[str, np.ndarray], info: Any) -> pd.DataFrame:
    """The output particle table (module docstring), in input order."""
    t = info.table.reset_index(drop=True).copy()
    box = int(info.box)
    px = float(info.voxel_size_angstrom)
    euler = np.asarray(state["euler_deg"], np.float64).reshape(-1, 3)
    shifts = np.asarray(state["shifts_zyx_px"], np.float64).reshape(-1, 3)
    out = t.drop(columns=[c for c in (*EXTRACTION_COLUMNS, *REFINED_COLUMNS) if c in t.columns])
    out["rot"], out["tilt"], out["psi"] = euler[:, 0], euler[:, 1], euler[:, 2]
    out["class"] = 1
    out["half"] = np.asarray(state["half"], np.int64).reshape(-1)
    for axis, k in (("x", 2), ("y", 1), ("z", 0)):
        coord = t[axis].to_numpy(np.float64)
        start = f"box_{axis}0"
        centre = t[start].to_numpy(np.float64) + box // 2 if start in t.columns else np.rint(coord)
        out[f"origin_{axis}_angstrom"] = (coord - centre - shifts[:, k]) * px
    out["align_score"] = np.asarray(state["scores"], np.float64).reshape(-1)
    if "input_index" in out.columns:
        out = out.sort_values("input_index", kind="stable").reset_index(drop=True)
    return out


def published_state(store: object, rounds: Any) -> dict[str, np.ndarray]:
    """The published final state of a run whose result was current (skipped)."""
    from cryoflow.io.results import open_dataset_result

    return {
        key: np.asarray(open_dataset_result(store, rounds.step, key).values)
        for key in rounds.outputs
    }


def write_outputs(
    out: Path, state: dict[str, np.ndarray], info: Any, *, overwrite: bool
) -> dict[str, Path]:
    """Write the five files into ``out`` (module docstring); returns name -> path."""
    from cryoflow.io.maps import temp_path, write_fsc_csv, write_map
    from cryoflow.io.particles import write_particles

    check_outputs(out, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    px = float(info.voxel_size_angstrom)
    temps = {name: temp_path(out / name) for name in FILES}
    try:
        write_particles(temps["particles.star"].with_suffix(".star"), particles_table(state, info))
        os.replace(temps["particles.star"].with_suffix(".star"), temps["particles.star"])
        curve = np.asarray(state["fsc"], np.float64).reshape(2, -1)
        write_fsc_csv(temps["fsc.csv"], curve[0], curve[1], px)
        halves = np.asarray(state["half_maps"], np.float32)
        write_map(temps["half1.mrc"], halves[0], px)
        write_map(temps["half2.mrc"], halves[1], px)
        write_map(temps["average.mrc"], np.asarray(state["average"], np.float32), px)
        if overwrite:
            (out / "average.mrc").unlink(missing_ok=True)
        for name in FILES:
            os.replace(temps[name], out / name)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
            tmp.with_suffix(".star").unlink(missing_ok=True)
    return {name: out / name for name in FILES}
