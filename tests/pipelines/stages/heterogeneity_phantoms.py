"""Tiny particle sets on disk for the classify / multibody command tests (real Zarr stores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryoflow.simulate.hinge import hinge_body_masks
from cryoflow.simulate.subtomo import SubtomoSet, hinge_shape, simulate_subtomograms
from cryoflow.simulate.subtomo_sets import write_subtomo_set

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
    return write_subtomo_set(store, name, sim, poses=poses)


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

    paths = []
    for k, m in enumerate(hinge_body_masks(angle_deg, BOX, PX), start=1):
        path = folder / f"body{k}.mrc"
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(m.astype(np.float32))
            mrc.voxel_size = PX
        paths.append(path)
    return paths
