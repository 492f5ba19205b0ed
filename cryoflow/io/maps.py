"""Density maps as MRC files (``CONTRACT.md``, "Maps"), and FSC curves as CSV.

A map is a cubic ``(z, y, x)`` float32 volume of side ``B`` whose centre is voxel ``B // 2``
on every axis, written with the voxel size of the tomogram it came from (header ``voxel_size``
on all three axes, origin 0, so voxel ``B // 2`` sits at ``B // 2`` voxels in ChimeraX and
RELION). :func:`read_map` reads a user's reference or mask through the checked reader of
:mod:`cryoflow.io.mrc` (header validated before any data is read) and checks it is a cube of
the expected side, naming the file otherwise.

Every writer writes to a hidden temporary file beside the target and renames it into place,
so a reader never sees a half-written file under the final name.
"""

from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

from cryoflow.errors import InputFileError

__all__ = ["read_map", "temp_path", "write_fsc_csv", "write_map"]

FSC_COLUMNS = ("resolution_angstrom", "fsc")


def temp_path(path: str | os.PathLike[str]) -> Path:
    """A hidden temporary name beside ``path`` (``.<name>.tmp-<random>``)."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp-{uuid.uuid4().hex[:12]}")


def read_map(
    path: str | os.PathLike[str],
    *,
    box: int | None = None,
    what: str = "map",
    voxel_size_angstrom: float | None = None,
) -> np.ndarray:
    """A cubic MRC map as float32 ``(z, y, x)``.

    Parameters
    ----------
    box : int, optional
        The side the map must have (the particle set's box).
    what : str
        What the map is, for messages (``--reference``, ``--mask``).
    voxel_size_angstrom : float, optional
        The expected voxel size; a header that states another (not 0 or 1 Å, i.e. unset)
        gives a warning, not an error (maps are often rescaled by hand).

    Raises
    ------
    InputFileError
        Not a readable MRC file, not a cube, not of side ``box``, or values not finite.
    """
    from cryoflow.io.mrc import read_mrc_block, read_mrc_header

    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, f"{what}: no such file")
    info = read_mrc_header(p)
    shape = tuple(int(s) for s in info.shape)
    if len(set(shape)) != 1:
        raise InputFileError(p, f"{what} must be a cubic (B, B, B) map, got shape {shape}")
    if box is not None and shape[0] != int(box):
        raise InputFileError(
            p,
            f"{what} has box {shape[0]} (shape {shape}) but the particles' box is {box}: "
            f"give a ({box}, {box}, {box}) map",
        )
    data = np.asarray(read_mrc_block(info, (slice(None),) * 3), dtype=np.float32)
    if not np.isfinite(data).all():
        raise InputFileError(p, f"{what} holds values that are not finite (NaN or inf)")
    size = float(info.voxel_size_angstrom[2])
    if voxel_size_angstrom is not None and size not in (0.0, 1.0):
        if abs(size - voxel_size_angstrom) > 0.01 * voxel_size_angstrom:
            warnings.warn(
                f"{p}: {what} has voxel size {size:g} Å, the particles {voxel_size_angstrom:g} Å; "
                "it is used voxel for voxel",
                stacklevel=2,
            )
    return data


def write_map(path: str | os.PathLike[str], volume: np.ndarray, voxel_size_angstrom: float) -> Path:
    """Write ``volume`` (z, y, x) as a float32 MRC with ``voxel_size_angstrom``; returns the path.

    Written to a temporary name beside ``path``, then renamed (replacing ``path``).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(p)
    try:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(volume, dtype=np.float32))
            mrc.voxel_size = float(voxel_size_angstrom)
            mrc.update_header_stats()
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def write_fsc_csv(
    path: str | os.PathLike[str],
    frequency_per_voxel: np.ndarray,
    fsc: np.ndarray,
    voxel_size_angstrom: float,
) -> Path:
    """An FSC curve as CSV with the columns ``resolution_angstrom, fsc``, one row per shell
    from the lowest non-zero frequency to Nyquist (the DC shell, of infinite period, is left
    out); ``resolution_angstrom = voxel_size / frequency``. Written via a temporary name."""
    f = np.asarray(frequency_per_voxel, dtype=np.float64)
    c = np.asarray(fsc, dtype=np.float64)
    keep = f > 0
    table = pd.DataFrame(
        {FSC_COLUMNS[0]: float(voxel_size_angstrom) / f[keep], FSC_COLUMNS[1]: c[keep]}
    )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(p)
    try:
        table.to_csv(tmp, index=False, float_format="%.6g")
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p
