"""What ``cryoflow embed`` reads of a particle set: the stack's batches and each particle's
alignment, wedge and half set, taken from the set's table.

- **Orientations**: the table's ``rot, tilt, psi`` (``rlnAngleRot/Tilt/Psi`` of the particle
  file the set was extracted from, or written there by averaging), the contract's ZYZ
  convention. A set with none of the three columns is taken as *already in one frame*
  (identity rotations): the autoencoder then also sees orientation differences, which is only
  right for particles that were extracted aligned (e.g. picked with a template in one pose).
  :attr:`SetInputs.aligned` records which case it was; a set with some of the columns, or with
  missing values in them, is refused.
- **Shifts**: ``origin_{x,y,z}_angstrom`` (``rlnOriginX/Y/ZAngst``: RELION's sign, the shift
  that centres the particle), so the particle's centre lies at ``-origin / pixel`` from the box
  centre; zero without them. A fractional coordinate adds its offset from the box centre
  (extraction starts boxes at whole voxels: ``x - (box_x0 + B // 2)``).
- **Missing wedge**: the table's ``tilt_min_deg, tilt_max_deg``, else the tomogram's recorded
  tilt range (:func:`cryoflow.io.tomograms.tilt_range`).
- **Half sets**: ``half`` (1 or 2), else even/odd rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from cryoflow.errors import ConfigError, GeometryError

ANGLES = ("rot", "tilt", "psi")
ORIGINS = ("origin_z_angstrom", "origin_y_angstrom", "origin_x_angstrom")
BOX_STARTS = ("box_z0", "box_y0", "box_x0")
NO_ORIENTATIONS = (
    "the set has no orientations (rot, tilt, psi); its particles are taken as already in one "
    "frame (identity rotations), so orientation differences count as conformation; run "
    "averaging first and extract from its particles.star for aligned particles"
)


@dataclass(frozen=True)
class SetInputs:
    """Per-particle inputs of a set, in stack order (row ``i`` = box ``i``).

    euler_deg (n, 3); shifts_zyx_px (n, 3); tilt_ranges (n, 2); halves (n,) in {0, 1};
    pixel_size_angstrom : the set's voxel size; aligned : whether orientations were given;
    bounds : the stack's batches ``[(start, stop), ...]`` (its stored chunks).
    """

    euler_deg: np.ndarray
    shifts_zyx_px: np.ndarray
    tilt_ranges: np.ndarray
    halves: np.ndarray
    pixel_size_angstrom: float
    aligned: bool
    bounds: tuple[tuple[int, int], ...]

    @property
    def n(self) -> int:
        return int(len(self.euler_deg))

    def batch(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(euler, shifts, tilt_ranges, halves)`` of batch ``i``."""
        a, b = self.bounds[i]
        return self.euler_deg[a:b], self.shifts_zyx_px[a:b], self.tilt_ranges[a:b], self.halves[a:b]


def _finite(table: pd.DataFrame, cols: tuple[str, ...], what: str) -> np.ndarray:
    values = table[list(cols)].to_numpy(np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ConfigError(
            f"{what}: {int(bad.sum())} of {len(table)} particles lack {', '.join(cols)} "
            f"(first at row {int(np.flatnonzero(bad)[0])}); give all of them or none"
        )
    return values


def orientations(table: pd.DataFrame, what: str) -> tuple[np.ndarray, bool]:
    """``(euler (n, 3), aligned)`` from the table (module docstring)."""
    have = [c for c in ANGLES if c in table.columns]
    if not have:
        return np.zeros((len(table), 3)), False
    if len(have) != 3:
        raise ConfigError(
            f"{what}: orientation columns {have} without {sorted(set(ANGLES) - set(have))}"
        )
    return _finite(table, ANGLES, what), True


def shifts_px(table: pd.DataFrame, pixel: np.ndarray, what: str, box: int | None) -> np.ndarray:
    """Shifts ``(n, 3)`` zyx in voxels: ``-origin / pixel`` (zero without origins), plus the
    coordinate's offset from its box centre when the box starts are known."""
    out = np.zeros((len(table), 3))
    if any(c in table.columns for c in ORIGINS):
        filled = table.reindex(columns=list(ORIGINS)).fillna(0.0)
        out -= _finite(filled, ORIGINS, what) / pixel[:, None]
    if box is not None and set(BOX_STARTS) <= set(table.columns):
        coords = table[["z", "y", "x"]].to_numpy(np.float64)
        starts = table[list(BOX_STARTS)].to_numpy(np.float64)
        out += coords - (starts + int(box) // 2)
    return out


def tilt_ranges(store: object, table: pd.DataFrame) -> np.ndarray:
    """Tilt ranges ``(n, 2)`` degrees: the table's columns, else each tomogram's record."""
    from cryoflow.io.tomograms import tilt_range

    out = np.full((len(table), 2), np.nan)
    if {"tilt_min_deg", "tilt_max_deg"} <= set(table.columns):
        out[:] = table[["tilt_min_deg", "tilt_max_deg"]].to_numpy(np.float64)
    missing = ~np.isfinite(out).all(axis=1)
    names = table["tomogram"].astype(str).to_numpy()
    for name in np.unique(names[missing]):
        rows = missing & (names == name)
        out[rows] = tilt_range(store, str(name)).as_tuple
    return out


def pixel_sizes(store: object, table: pd.DataFrame) -> np.ndarray:
    """Voxel sizes ``(n,)`` Å: the table's ``pixel_size_angstrom``, else each tomogram's."""
    from cryoflow.io.tomograms import tomogram_info

    out = np.full(len(table), np.nan)
    if "pixel_size_angstrom" in table.columns:
        out[:] = table["pixel_size_angstrom"].to_numpy(np.float64)
    names = table["tomogram"].astype(str).to_numpy()
    for name in np.unique(names[~np.isfinite(out)]):
        out[names == name] = tomogram_info(store, str(name)).pixel_size_angstrom
    return out


def halves(table: pd.DataFrame) -> np.ndarray:
    """Half sets ``(n,)`` in {0, 1}: ``half - 1`` where given (1 or 2), else even/odd rows."""
    alt = np.arange(len(table)) % 2
    if "half" not in table.columns:
        return alt
    h = pd.to_numeric(table["half"], errors="coerce").to_numpy(np.float64)
    return np.where(np.isin(h, (1.0, 2.0)), h - 1.0, alt).astype(int)


def set_inputs(
    store: object,
    set_name: str,
    table: pd.DataFrame,
    chunks: tuple[int, ...],
    box: int | None = None,
) -> SetInputs:
    """Every per-particle input of set ``set_name`` (``table`` its particle table, ``chunks``
    its stack's chunks along ``particle``, ``box`` its box side)."""
    what = f"particle set {set_name!r}"
    if len(table) < 2:
        raise GeometryError(f"{what}: the autoencoder needs at least 2 particles, got {len(table)}")
    pixel = pixel_sizes(store, table)
    euler, aligned = orientations(table, what)
    ends = np.cumsum(chunks)
    bounds = tuple((int(e - c), int(e)) for c, e in zip(chunks, ends, strict=True) if c > 0)
    return SetInputs(
        euler_deg=euler,
        shifts_zyx_px=shifts_px(table, pixel, what, box),
        tilt_ranges=tilt_ranges(store, table),
        halves=halves(table),
        pixel_size_angstrom=float(np.median(pixel)),
        aligned=aligned,
        bounds=bounds,
    )


def describe(inputs: SetInputs) -> dict[str, Any]:
    """What the run's record says about the inputs."""
    return {
        "n_particles": inputs.n,
        "aligned": inputs.aligned,
        "orientations": "from the set's rot, tilt, psi" if inputs.aligned else NO_ORIENTATIONS,
        "pixel_size_angstrom": inputs.pixel_size_angstrom,
        "batches": len(inputs.bounds),
    }


def latest_alignment(store: Any, set_name: str, inputs: Any) -> tuple[Any, str | None]:
    """``inputs`` with the poses and halves of the set's current published average
    (:mod:`cryoflow.pipelines.stages.average_poses`) and where they came from, else
    ``(inputs, None)``: as the table gives them."""
    from cryoflow.pipelines.stages.average import step_name
    from cryoflow.pipelines.stages.average_poses import current_poses

    found = current_poses(store, set_name, inputs.n, inputs.halves)
    if found is None:
        return inputs, None
    where = f"results/{step_name(set_name)} (the set's current average)"
    e, s, h = found
    return replace(inputs, euler_deg=e, shifts_zyx_px=s, halves=h, aligned=True), where
