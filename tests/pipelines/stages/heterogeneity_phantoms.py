"""Tiny particle sets on disk for the classify / multibody command tests (real Zarr stores)."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd

from cryoflow.io.layout import create_dataset
from cryoflow.io.particleset import write_particle_set
from cryoflow.io.provenance import make_provenance
from cryoflow.simulate.subtomo import SubtomoSet, hinge_shape, simulate_subtomograms

BOX, PX = 24, 16.0


def two_state_phantom(n: int, seed: int, hinge_deg: float = 45.0) -> SubtomoSet:
    """``n`` hinge particles, half at 0 and half at ``hinge_deg``, SNR 0.5, +-60 wedge."""
    labels = np.random.default_rng(seed).permutation(np.arange(n) % 2)
    return simulate_subtomograms(
        [hinge_shape(0.0), hinge_shape(hinge_deg)],
        n,
        box=BOX,
        pixel_size_angstrom=PX,
        snr=0.5,
        tilt_range_deg=(-60.0, 60.0),
        labels=labels,
        seed=seed,
    )


def write_set(store: Path, name: str, sim: SubtomoSet, *, poses: bool = True) -> pd.DataFrame:
    """``sim`` as particle set ``name`` of a new store (poses as angles and RELION origins)."""
    n = len(sim.volumes)
    rng = np.random.default_rng(1)
    table = pd.DataFrame(
        {
            "tomogram": ["tomo_a" if i % 3 else "tomo_b" for i in range(n)],
            "x": rng.uniform(20, 200, n).round(2),
            "y": rng.uniform(20, 200, n).round(2),
            "z": rng.uniform(20, 80, n).round(2),
        }
    )
    if poses:
        table[["rot", "tilt", "psi"]] = sim.euler_deg
        origins = -sim.shifts_zyx_px[:, ::-1] * PX  # centre = coordinate - origin
        table[["origin_x_angstrom", "origin_y_angstrom", "origin_z_angstrom"]] = origins
    table["tilt_min_deg"] = sim.tilt_ranges[:, 0]
    table["tilt_max_deg"] = sim.tilt_ranges[:, 1]
    table["pixel_size_angstrom"] = PX
    table["input_index"] = np.arange(n)
    create_dataset(str(store))
    stack = da.from_array(sim.volumes.astype(np.float32), chunks=(8, BOX, BOX, BOX))
    write_particle_set(
        str(store), name, table, stack, provenance=make_provenance("extract", {"box": BOX})
    )
    return table


def hinge_phantom(n: int, seed: int, angles_deg: tuple[float, ...]) -> SubtomoSet:
    """``n`` hinge particles whose arm takes each of ``angles_deg`` in turn (truth: labels)."""
    labels = np.arange(n) % len(angles_deg)
    return simulate_subtomograms(
        [hinge_shape(a) for a in angles_deg],
        n,
        box=BOX,
        pixel_size_angstrom=PX,
        snr=0.5,
        tilt_range_deg=(-60.0, 60.0),
        labels=labels,
        seed=seed,
    )


def body_masks(angle_deg: float, folder: Path) -> list[Path]:
    """Soft masks of the hinge's fixed body and of its arm at ``angle_deg`` (MRC files)."""
    import mrcfile
    from scipy import ndimage

    from cryoflow.simulate.subtomo import Shape, render_shape

    full = hinge_shape(angle_deg)
    paths = []
    for k, parts in enumerate((full.parts[:2], full.parts[2:]), start=1):
        v = render_shape(Shape(f"b{k}", parts), BOX, PX, blur_px=0.0)
        m = ndimage.binary_dilation(v > 0.2, iterations=2).astype(np.float32)
        m = np.clip(ndimage.gaussian_filter(m, 1.0), 0.0, 1.0)
        path = folder / f"body{k}.mrc"
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(m.astype(np.float32))
            mrc.voxel_size = PX
        paths.append(path)
    return paths
