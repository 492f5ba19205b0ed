"""A store holding one random tomogram ``a`` in 8-voxel chunks and a table of particles in it,
for the extraction tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryoflow.io.store import write_volume


def stored_tomogram(
    tmp_path: Path, seed: int, shape: tuple[int, int, int], low: float, high: list[float], n: int
) -> tuple[Path, np.ndarray, pd.DataFrame]:
    """(store, the volume, ``n`` particles uniform in ``[low, high)`` on x, y, z)."""
    rng = np.random.default_rng(seed)
    store = tmp_path / "d.zarr"
    vol = rng.normal(size=shape).astype(np.float32)
    write_volume(
        store,
        "a",
        "tomogram",
        vol,
        pixel_size_angstrom=10.0,
        provenance={"step": "test"},
        chunk=8,
        multiscale=False,
    )
    xyz = rng.uniform(low, high, size=(n, 3))
    table = pd.DataFrame({"tomogram": "a", "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    return store, vol, table
