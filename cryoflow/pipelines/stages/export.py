"""``cryoflow export``: a volume, label image or result volume from the store to an MRC file.

A command, not a stage of ``cryoflow run`` (it writes a file outside the store).

The MRC file is created memory-mapped under a temporary name beside the target, filled slab
by slab (a few slabs in flight on the cluster, each gathered and written as it completes, so
the whole volume is never held), given its voxel size and statistics, and renamed into place.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import mrcfile
import numpy as np
import xarray as xr

from cryoflow.errors import (
    AlreadyExistsError,
    ConfigError,
    NodeNotFoundError,
    NonStandardInputWarning,
)
from cryoflow.io.store import open_result, open_tilt_series, open_volume


@dataclass(frozen=True)
class ExportConfig:
    """store, tomogram ``name``, ``key`` (a volume/label key, or ``STEP/KEY`` of a result),
    output ``out`` (.mrc), pyramid ``level``, ``overwrite``."""

    store: str
    name: str
    key: str
    out: Path
    level: int = 0
    overwrite: bool = False


def open_exportable(config: ExportConfig) -> xr.DataArray:
    """The array to export, lazily; refuses an existing output unless overwriting.

    Returns
    -------
    xarray.DataArray of shape (Z, Y, X) (or (n_tilts, Y, X) for a tilt-series-shaped result)
        ``attrs["pixel_size_angstrom"]`` is set.
    """
    out = Path(config.out)
    if out.exists() and not config.overwrite:
        raise AlreadyExistsError(f"{out}: already exists; pass --overwrite to replace it")
    if "/" in config.key:
        step, _, key = config.key.partition("/")
        arr = open_result(config.store, config.name, step, key)
        if "pixel_size_angstrom" not in arr.attrs:
            arr.attrs["pixel_size_angstrom"] = _tomogram_pixel_size(config)
    else:
        arr = open_volume(config.store, config.name, config.key, level=config.level)
    if arr.ndim != 3:
        raise ConfigError(
            f"{config.store}: {config.name}/{config.key} has dims {arr.dims}; MRC export needs 3-D"
        )
    return arr


def _tomogram_pixel_size(config: ExportConfig) -> float:
    try:
        return float(open_tilt_series(config.store, config.name).attrs["pixel_size_angstrom"])
    except NodeNotFoundError:
        pass
    try:
        return float(
            open_volume(config.store, config.name, "tomogram").attrs["pixel_size_angstrom"]
        )
    except NodeNotFoundError:
        warnings.warn(
            f"{config.store}: no pixel size known for {config.name}/{config.key}; writing 1 Å",
            NonStandardInputWarning,
            stacklevel=3,
        )
        return 1.0


def mrc_dtype(dtype: np.dtype, lo: float, hi: float) -> np.dtype:
    """The MRC-supported dtype that holds values of ``dtype`` in ``[lo, hi]`` exactly if possible."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.dtype(np.int8)
    if dtype in (
        np.dtype(np.int8),
        np.dtype(np.int16),
        np.dtype(np.uint16),
        np.dtype(np.float16),
        np.dtype(np.float32),
    ):
        return dtype
    if dtype.kind in "iu":
        for cand in (np.int8, np.int16, np.uint16):
            info = np.iinfo(cand)
            if info.min <= lo and hi <= info.max:
                return np.dtype(cand)
    return np.dtype(np.float32)


def export_mrc(client: Any, config: ExportConfig, *, in_flight: int = 4) -> Path:
    """Write the array named by ``config`` to ``config.out`` as MRC; returns the path."""
    arr = open_exportable(config)
    data: da.Array = arr.data if isinstance(arr.data, da.Array) else da.asarray(arr.data)
    stats = da.stack(
        [data.min(), data.max(), data.astype(np.float64).mean(), data.astype(np.float64).std()]
    )
    lo, hi, mean, rms = (float(v) for v in client.compute(stats).result())
    dtype = mrc_dtype(data.dtype, lo, hi)
    slabs = data.rechunk({0: data.chunks[0][0] if data.chunks[0] else 1, 1: -1, 2: -1}).astype(
        dtype
    )
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        with mrcfile.new_mmap(tmp, shape=data.shape, mrc_mode=_MODES[dtype], overwrite=True) as mrc:
            mrc.voxel_size = float(arr.attrs["pixel_size_angstrom"])
            bounds = np.cumsum((0, *slabs.chunks[0]))
            pending: deque[tuple[int, Any]] = deque()
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
                pending.append((int(start), client.compute(slabs[int(start) : int(stop)])))
                if len(pending) >= in_flight:
                    _drain_one(mrc, pending)
            while pending:
                _drain_one(mrc, pending)
            mrc.header.dmin, mrc.header.dmax, mrc.header.dmean, mrc.header.rms = lo, hi, mean, rms
        if out.exists() and not config.overwrite:
            raise AlreadyExistsError(f"{out}: appeared while exporting; not replaced")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _drain_one(mrc: Any, pending: deque[tuple[int, Any]]) -> None:
    start, fut = pending.popleft()
    block = fut.result()
    mrc.data[start : start + block.shape[0]] = block
    fut.release()


_MODES = {
    np.dtype(np.int8): 0,
    np.dtype(np.int16): 1,
    np.dtype(np.float32): 2,
    np.dtype(np.uint16): 6,
    np.dtype(np.float16): 12,
}
