"""``cryoflow reconstruct``: weighted (ramp-filtered) back-projection of tilt series into the store.

Per tomogram: read the tilt series and its geometry, optionally bin ``N x N`` pixels, ramp
filter the rows (:mod:`cryoflow.kernels.ramp`), back-project chunkwise with the same kernel
as :func:`cryoflow.backproject` (:func:`cryoflow.graph.backproject.backproject_graph`), scale
by ``pi / n_tilts`` and write the volume as an OME-Zarr image at
``tomograms/<name>/volumes/<key>`` (default ``tomogram``) with its provenance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from cryoflow.errors import ConfigError
from cryoflow.geometry import TiltGeometry
from cryoflow.graph.backproject import backproject_graph
from cryoflow.io import store as S
from cryoflow.io.names import validate_name
from cryoflow.io.nodes import make_provenance
from cryoflow.kernels.backproject import INTERPOLATIONS
from cryoflow.kernels.ramp import FILTERS, ramp_filter
from cryoflow.pipelines.cluster import compute_with_progress
from cryoflow.pipelines.selection import select_tomograms

__all__ = [
    "ReconstructConfig",
    "reconstruct_dataset",
    "reconstruct_tomogram",
    "reconstruction",
    "select_tomograms",
]


@dataclass(frozen=True)
class ReconstructConfig:
    """What ``cryoflow reconstruct`` does to one tomogram.

    thickness : volume depth Z in output voxels (after binning); None = the binned width.
    filter : "ramp" (weighted back-projection) or "none" (plain back-projection).
    bin : average ``bin x bin`` detector pixels first (1 = none).
    interpolation : "linear" or "nearest".
    chunk : output block edge in voxels.
    key : volume key written under ``volumes/``.
    """

    thickness: int | None = None
    filter: str = "ramp"
    bin: int = 1
    interpolation: str = "linear"
    chunk: int = 128
    key: str = "tomogram"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.filter not in FILTERS:
            raise ConfigError(f"--filter must be one of {', '.join(FILTERS)}, got {self.filter!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}"
            )
        if int(self.bin) < 1:
            raise ConfigError(f"--bin must be >= 1, got {self.bin}")
        if self.thickness is not None and int(self.thickness) < 1:
            raise ConfigError(f"--thickness must be >= 1, got {self.thickness}")
        if int(self.chunk) < 8:
            raise ConfigError(f"chunk must be >= 8, got {self.chunk}")
        validate_name(self.key, "volume key")


def binned_geometry(geometry: TiltGeometry, detector: tuple[int, int], factor: int) -> TiltGeometry:
    """Geometry of a tilt series binned ``factor x factor`` (trailing pixels dropped).

    Shifts scale by ``1/factor``; dropping trailing pixels moves the detector centre by
    ``(size - factor*binned) / (2 factor)`` binned pixels, which is added to the shift.
    """
    if factor == 1:
        return geometry
    V, U = detector
    extra = np.array([(V - factor * (V // factor)), (U - factor * (U // factor))]) / (2 * factor)
    return geometry.with_shifts(geometry.shift_array / factor - extra)


def reconstruction(
    images: da.Array,
    geometry: TiltGeometry,
    config: ReconstructConfig,
    *,
    prefix: str = "reconstruct",
) -> tuple[da.Array, TiltGeometry]:
    """Lazy weighted back-projection of a tilt series.

    Parameters
    ----------
    images : dask.array.Array of shape (n_tilts, V, U)
    geometry : TiltGeometry
    config : ReconstructConfig

    Returns
    -------
    volume : dask.array.Array of shape (Z, V // bin, U // bin), float32
    geometry : TiltGeometry of the (binned) series used.
    """
    n, V, U = (int(s) for s in images.shape)
    f = int(config.bin)
    if V // f < 1 or U // f < 1:
        raise ConfigError(f"--bin {f} leaves no pixels of a {V} x {U} detector")
    stack = images.astype(np.float32)
    if f > 1:
        stack = da.coarsen(np.mean, stack, {1: f, 2: f}, trim_excess=True).astype(np.float32)
    geometry = binned_geometry(geometry, (V, U), f)
    _, Vb, Ub = stack.shape
    if config.filter == "ramp":
        stack = stack.rechunk({0: 1, 1: min(Vb, 256), 2: -1})
        stack = stack.map_blocks(
            ramp_filter,
            dtype=np.float32,
            meta=np.empty((0, 0, 0), np.float32),
            name=f"ramp-{tokenize(stack.name)}",
        )
    Z = int(config.thickness) if config.thickness is not None else Ub
    c = int(config.chunk)
    volume = backproject_graph(
        stack,
        geometry,
        (Z, Vb, Ub),
        chunks=(min(c, Z), min(c, Vb), min(c, Ub)),
        interpolation=config.interpolation,
        prefix=f"backproject-{prefix}",
    )
    if config.filter == "ramp":
        volume = volume * np.float32(np.pi / n)
    return volume, geometry


def reconstruct_tomogram(
    client: Any, store: Any, name: str, config: ReconstructConfig, *, quiet: bool = False
) -> dict[str, Any]:
    """Reconstruct tomogram ``name`` into ``volumes/<config.key>``; return a short summary."""
    tilts = S.open_tilt_series(store, name)
    geometry = S.read_geometry(store, name)
    volume, _ = reconstruction(tilts.data, geometry, config, prefix=name)
    pixel = float(tilts.attrs["pixel_size_angstrom"]) * int(config.bin)
    provenance = make_provenance(
        "reconstruct",
        parameters=asdict(config),
        inputs={
            "tilt_series": f"tomograms/{name}/tilt_series",
            "tilt_series_provenance": tilts.attrs.get("provenance", {}),
        },
    )
    S.write_volume(
        store,
        name,
        config.key,
        volume,
        pixel_size_angstrom=pixel,
        provenance=provenance,
        overwrite=config.overwrite,
        compute=False,
    ).run(lambda tasks: compute_with_progress(client, tasks, f"reconstruct {name}", quiet=quiet))
    return {
        "shape": tuple(int(s) for s in volume.shape),
        "pixel_size_angstrom": pixel,
        "key": config.key,
    }


def reconstruct_dataset(
    client: Any, store: Any, names: Sequence[str], config: ReconstructConfig, *, quiet: bool = False
) -> dict[str, dict[str, Any]]:
    """:func:`reconstruct_tomogram` for every name, in order."""
    return {n: reconstruct_tomogram(client, store, n, config, quiet=quiet) for n in names}
