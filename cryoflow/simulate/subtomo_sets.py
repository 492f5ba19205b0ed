"""Simulated subtomograms (:class:`~cryoflow.simulate.subtomo.SubtomoSet`) stored as a
particle set, as ``cryoflow extract`` would have written it.

The table has one row per particle in stack order: ``tomogram`` (particles alternate between
``tomograms``, every third one in the second), ``x, y, z`` (seeded random positions, voxels),
each particle's tilt range (``tilt_min_deg, tilt_max_deg``: its tomogram's missing wedge),
``pixel_size_angstrom`` and ``input_index``; with ``poses`` also the simulator's orientations
(``rot, tilt, psi``, the contract's ZYZ) and shifts as RELION origins (``origin_*_angstrom``:
the centre lies at ``coordinate - origin / voxel``, so ``origin = -shift * voxel``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryoflow.simulate.subtomo import SubtomoSet

__all__ = ["origins_angstrom", "subtomo_table", "write_subtomo_set"]

ORIGIN_COLUMNS = ("origin_x_angstrom", "origin_y_angstrom", "origin_z_angstrom")


def origins_angstrom(shifts_zyx_px: np.ndarray, pixel_size_angstrom: float) -> np.ndarray:
    """RELION origins ``(n, 3)`` in ``(x, y, z)`` Å of centre shifts ``(n, 3)`` ``(z, y, x)`` px."""
    return -np.asarray(shifts_zyx_px, dtype=float)[:, ::-1] * float(pixel_size_angstrom)


def subtomo_table(
    sim: SubtomoSet,
    *,
    poses: bool = True,
    tomograms: Sequence[str] = ("tomo_a", "tomo_b"),
    seed: int = 1,
) -> pd.DataFrame:
    """The particle table of ``sim`` (module docstring)."""
    n = len(sim.volumes)
    rng = np.random.default_rng(seed)
    first, second = tomograms[0], tomograms[-1]
    table = pd.DataFrame(
        {
            "tomogram": [first if i % 3 else second for i in range(n)],
            "x": rng.uniform(20, 200, n).round(2),
            "y": rng.uniform(20, 200, n).round(2),
            "z": rng.uniform(20, 80, n).round(2),
        }
    )
    if poses:
        table[["rot", "tilt", "psi"]] = sim.euler_deg
        table[list(ORIGIN_COLUMNS)] = origins_angstrom(sim.shifts_zyx_px, sim.pixel_size_angstrom)
    table["tilt_min_deg"] = sim.tilt_ranges[:, 0]
    table["tilt_max_deg"] = sim.tilt_ranges[:, 1]
    table["pixel_size_angstrom"] = sim.pixel_size_angstrom
    table["input_index"] = np.arange(n)
    return table


def write_subtomo_set(
    store: str | Path,
    name: str,
    sim: SubtomoSet,
    *,
    poses: bool = True,
    tomograms: Sequence[str] = ("tomo_a", "tomo_b"),
    batch: int = 8,
    overwrite: bool = False,
) -> pd.DataFrame:
    """``sim`` as particle set ``name`` of ``store`` (created when it is not yet a dataset),
    in chunks of ``batch`` particles; returns the table written."""
    import dask.array as da

    from cryoflow.io.layout import create_dataset
    from cryoflow.io.particleset import write_particle_set
    from cryoflow.io.provenance import make_provenance

    box = int(sim.volumes.shape[1])
    table = subtomo_table(sim, poses=poses, tomograms=tomograms)
    create_dataset(str(store))
    stack = da.from_array(sim.volumes.astype(np.float32), chunks=(int(batch), box, box, box))
    write_particle_set(
        str(store),
        name,
        table,
        stack,
        provenance=make_provenance("extract", {"box": box}),
        overwrite=overwrite,
    )
    return table
