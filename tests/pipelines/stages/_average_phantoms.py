"""A small phantom particle set written into a real store, with its truth (for the tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd

from cryoflow.io.layout import create_dataset
from cryoflow.io.particleset import write_particle_set
from cryoflow.io.provenance import make_provenance
from cryoflow.kernels.fsc import lowpass
from cryoflow.simulate.subtomo import SubtomoSet, ribosome_shape, simulate_subtomograms

BOX = 24
PIXEL = 18.0


@dataclass(frozen=True)
class PhantomSet:
    store: Path
    name: str
    sim: SubtomoSet
    table: pd.DataFrame  # the set's table, stack order
    order: np.ndarray  # stack row of input row i


def write_phantom_set(
    tmp_path: Path,
    *,
    n: int = 24,
    box: int = BOX,
    seed: int = 3,
    snr: float = 1.0,
    name: str = "ribo",
) -> PhantomSet:
    """``n`` ribosome-like particles (two tomograms, two tilt ranges) as set ``name``.

    Stack row ``j`` holds input row ``input_index[j]`` (a shuffled order, as extraction's
    batching makes); coordinates have fractions (the box is cut around their nearest voxel).
    """
    rng = np.random.default_rng(seed)
    tomo = np.where(np.arange(n) % 3 == 0, "t2", "t1")
    ranges = np.where((tomo == "t2")[:, None], [[-50.0, 56.0]], [[-60.0, 60.0]])
    sim = simulate_subtomograms(
        [ribosome_shape()], n, box=box, pixel_size_angstrom=PIXEL, snr=snr,
        tilt_range_deg=ranges, max_shift_px=1.5, seed=seed,
    )  # fmt: skip
    xyz = rng.uniform(20, 200, size=(n, 3)).round(1)  # input coordinates, input order
    order = rng.permutation(n)  # stack row j <- input row order[j]
    table = pd.DataFrame(
        {
            "tomogram": tomo[order],
            "x": xyz[order, 0],
            "y": xyz[order, 1],
            "z": xyz[order, 2],
            "input_index": order.astype(np.int64),
            "tilt_min_deg": ranges[order, 0],
            "tilt_max_deg": ranges[order, 1],
            "pixel_size_angstrom": np.full(n, PIXEL),
            "rlnTomoParticleName": [f"p{i}" for i in order],
        }
    )
    for axis in ("x", "y", "z"):
        table[f"box_{axis}0"] = np.rint(table[axis].to_numpy()).astype(np.int64) - box // 2
    stack = da.from_array(sim.volumes[order], chunks=(8, box, box, box))
    store = tmp_path / "phantom.zarr"
    create_dataset(store)
    write_particle_set(
        store, name, table, stack, provenance=make_provenance("extract", {"box": box})
    )
    return PhantomSet(store, name, sim, table, order)


def start_map(sim: SubtomoSet, resolution_angstrom: float = 60.0) -> np.ndarray:
    """The truth low-passed: a reference in the truth's frame."""
    return lowpass(sim.truth[0], resolution_angstrom / sim.pixel_size_angstrom).astype(np.float32)
