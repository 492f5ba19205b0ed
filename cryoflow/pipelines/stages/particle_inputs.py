"""What the subtomogram commands read from a particle set and write into their ``--out`` folder.

Reading (:func:`load_set`): the set's table (:func:`cryoflow.io.particleset.read_particle_table`)
gives every particle's tilt range, the voxel size (one for the whole set), its half set
(``half`` 1/2, else a seeded balanced split) and, when the set has ``rot, tilt, psi``, its
consensus pose: the contract's ZYZ angles as they are, and the shift from RELION's origins,
``s = d - origin / voxel`` as ``(z, y, x)`` (the particle's centre lies at ``coordinate -
origin``, RELION's rule; kernels take the centre's offset from the box centre; ``d`` is a
fractional coordinate's offset from its box centre, ``coordinate - (box_start + B // 2)``,
zero when the set records no box starts: extraction starts boxes at whole voxels).

Writing: every file is written under a temporary name in ``--out`` and renamed into place, the
particle file last, so an interrupted run leaves no complete-looking output; existing outputs
are refused unless ``overwrite``. :func:`posed_table` is the output table: every input column
(the input coordinates ``x, y, z`` unchanged), the poses written back as angles and origins,
``origin = (d - s) * voxel`` (the same rule backwards, as ``cryoflow average`` writes them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cryoflow.errors import AlreadyExistsError, ConfigError, GeometryError, InputFileError

if TYPE_CHECKING:
    import pandas as pd

ORIGINS_XYZ = ("origin_x_angstrom", "origin_y_angstrom", "origin_z_angstrom")
#: table columns of the set that describe its storage, not the particle (not written out)
INTERNAL = ("box_z0", "box_y0", "box_x0", "inside_fraction")


@dataclass(frozen=True)
class SetInputs:
    """A particle set as the heterogeneity rounds need it (see module docstring)."""

    store: object
    name: str
    table: pd.DataFrame
    box: int
    voxel_size_angstrom: float
    tilt_ranges: np.ndarray  # (n, 2)
    half_ids: np.ndarray  # (n,) 0/1
    euler_deg: np.ndarray | None  # (n, 3) or None: the set has no orientations
    shifts_zyx_px: np.ndarray  # (n, 3)

    @property
    def n(self) -> int:
        """The number of particles."""
        return len(self.table)

    @property
    def has_poses(self) -> bool:
        """Whether the set carries consensus orientations."""
        return self.euler_deg is not None

    def identity(self) -> dict[str, str]:
        """The set as an input of a run: ``{"particles/<name>": its node identity}``."""
        from cryoflow.pipelines.stages.inputs import node_identity

        path = f"particles/{self.name}"
        return {path: node_identity(self.store, path, "particle set")}


def load_set(store: object, name: str, *, seed: int = 0) -> SetInputs:
    """The particle set ``name`` of ``store`` (module docstring); errors name the set."""
    from cryoflow.io.particleset import open_particles, read_particle_table
    from cryoflow.kernels.refine import split_halves

    arr = open_particles(store, name)
    table = read_particle_table(store, name)
    n, box = int(arr.shape[0]), int(arr.shape[1])
    where = f"particle set {name!r}"
    if n < 2:
        raise GeometryError(f"{where} holds {n} particles; classification needs at least 2")
    for col in ("tilt_min_deg", "tilt_max_deg", "pixel_size_angstrom"):
        if col not in table.columns:
            raise GeometryError(f"{where} has no {col} column (extract it with cryoflow extract)")
    px = np.unique(np.round(table["pixel_size_angstrom"].to_numpy(float), 6))
    if len(px) != 1 or not px[0] > 0:
        raise GeometryError(f"{where} mixes voxel sizes {px.tolist()} Å; classify one at a time")
    tr = table[["tilt_min_deg", "tilt_max_deg"]].to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(tr).all(axis=1) | (tr[:, 0] >= tr[:, 1]))
    if bad.size:
        raise GeometryError(
            f"{where}: particle {int(bad[0])} has no usable tilt range {tr[bad[0]].tolist()} "
            f"(its tomogram's missing wedge is unknown)"
        )
    if "half" in table.columns and table["half"].notna().all():
        halves = table["half"].to_numpy(int) - 1
        if not set(np.unique(halves)) <= {0, 1}:
            raise GeometryError(f"{where}: half must be 1 or 2, got {sorted(set(halves + 1))}")
    else:
        halves = split_halves(n, seed)
    euler = None
    if all(c in table.columns for c in ("rot", "tilt", "psi")):
        e = table[["rot", "tilt", "psi"]].to_numpy(float)
        euler = e if np.isfinite(e).all() else None
    shifts = set_shifts(table, box, float(px[0]))
    return SetInputs(store, name, table, box, float(px[0]), tr, halves, euler, shifts)


def box_offsets(table: pd.DataFrame, box: int) -> np.ndarray:
    """ndarray (n, 3) ``(z, y, x)`` voxels: each coordinate's offset from its box centre,
    ``coordinate - (box_start + B // 2)`` (zero without the ``box_*0`` columns)."""
    starts = ("box_z0", "box_y0", "box_x0")
    if not set(starts) <= set(table.columns):
        return np.zeros((len(table), 3))
    centre = table[list(starts)].to_numpy(np.float64) + int(box) // 2
    return table[["z", "y", "x"]].to_numpy(np.float64) - centre


def set_shifts(table: pd.DataFrame, box: int, voxel_size_angstrom: float) -> np.ndarray:
    """ndarray (n, 3) ``(z, y, x)`` voxels: each particle's centre from its box centre,
    ``d - origin / voxel`` (module docstring; no origins: ``d``)."""
    shifts = box_offsets(table, box)
    if all(c in table.columns for c in ORIGINS_XYZ):
        o = np.nan_to_num(table[list(ORIGINS_XYZ)].to_numpy(float))
        shifts -= o[:, ::-1] / float(voxel_size_angstrom)
    return shifts


def read_map(path: str | os.PathLike[str], box: int, voxel_size_angstrom: float) -> np.ndarray:
    """A ``(box,)*3`` MRC map as float32 ``(z, y, x)``; its voxel size must match (1 %)."""
    import mrcfile

    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "no such map file")
    try:
        with mrcfile.open(p, permissive=True) as mrc:
            data = np.asarray(mrc.data, dtype=np.float32).copy()
            vs = float(mrc.voxel_size.x)
    except (ValueError, OSError) as exc:
        raise InputFileError(p, f"unreadable MRC file: {exc}") from exc
    if data.shape != (box,) * 3:
        raise InputFileError(p, f"the map must be {box}^3 like the particles, got {data.shape}")
    if vs > 0 and abs(vs - voxel_size_angstrom) > 0.01 * voxel_size_angstrom:
        raise InputFileError(
            p, f"voxel size {vs:g} Å differs from the particles' {voxel_size_angstrom:g} Å"
        )
    return data


def check_out(out: str | os.PathLike[str], names: Sequence[str], overwrite: bool) -> Path:
    """The output folder (created); refuses if any of ``names`` exists and not ``overwrite``."""
    d = Path(out)
    if d.exists() and not d.is_dir():
        raise AlreadyExistsError(f"--out {d}: exists and is not a folder")
    if not overwrite:
        taken = [n for n in names if (d / n).exists()]
        if taken:
            raise AlreadyExistsError(
                f"--out {d}: {', '.join(taken[:4])} already exist; give --overwrite to replace"
            )
    d.mkdir(parents=True, exist_ok=True)
    return d


def _tmp(path: Path) -> Path:
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def write_map(path: Path, volume: np.ndarray, voxel_size_angstrom: float) -> None:
    """``volume`` (B, B, B) as an MRC map (float32, the voxel size; box centre ``B // 2``)."""
    import mrcfile

    tmp = _tmp(path)
    with mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(volume, dtype=np.float32))
        mrc.voxel_size = float(voxel_size_angstrom)
    os.replace(tmp, path)


def write_table(path: Path, table: pd.DataFrame) -> None:
    """A particle table as a STAR file (``cryoflow.io.star.write_star``), renamed into place."""
    from cryoflow.io.star import write_star

    tmp = _tmp(path).with_suffix(".star")
    write_star(tmp, table)
    os.replace(tmp, path)


def posed_table(
    inputs: SetInputs,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    *,
    prefix: str = "",
    base: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The set's table (or ``base``) with the poses as angles and origins (module docstring).

    ``prefix`` "" writes ``rot, tilt, psi, origin_*`` (STAR ``rlnAngleRot``, ...); a prefix
    such as ``body1`` writes ``rlnAngleRot_body1``, ... (RELION-style labels, one set per body).
    """
    t = (base if base is not None else inputs.table).copy()
    t = t.drop(columns=[c for c in INTERNAL if c in t.columns])
    e = np.asarray(euler_deg, float).reshape(-1, 3)
    d = box_offsets(inputs.table, inputs.box)  # the box starts live in the set's own table
    o = (d - np.asarray(shifts_zyx_px, float).reshape(-1, 3))[:, ::-1] * inputs.voxel_size_angstrom
    if prefix:
        names = [f"rlnAngle{a}_{prefix}" for a in ("Rot", "Tilt", "Psi")]
        names += [f"rlnOrigin{a}Angst_{prefix}" for a in ("X", "Y", "Z")]
    else:
        names = ["rot", "tilt", "psi", *ORIGINS_XYZ]
    for j, c in enumerate(names):
        t[c] = e[:, j] if j < 3 else o[:, j - 3]
    t["half"] = inputs.half_ids.astype(int) + 1
    return t


def require_poses(inputs: SetInputs, command: str, *, reference_option: bool = True) -> None:
    """Refuse a set without orientations where a command cannot align it (the advice names
    ``--reference`` only where the command has that option)."""
    if not inputs.has_poses:
        first = (
            "give --reference REF.mrc, or " if reference_option else "run cryoflow average, then "
        )
        raise ConfigError(
            f"particle set {inputs.name!r} has no orientations (rot, tilt, psi): {command} "
            f"needs aligned particles; {first}extract the set from an aligned particle file "
            f"(cryoflow average's particles.star)"
        )
