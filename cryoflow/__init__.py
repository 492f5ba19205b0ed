"""cryoflow: distributed Dask/Zarr processing for cellular cryo-electron tomography.

Public API (see CONTRACT.md): :func:`backproject`, :func:`project`, :func:`select_threshold`,
:func:`open_tilt_series`, :func:`open_particles`, plus :class:`TiltGeometry`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "backproject": "cryoflow.api",
    "project": "cryoflow.api",
    "select_threshold": "cryoflow.api",
    "open_tilt_series": "cryoflow.io.store",
    "open_particles": "cryoflow.io.particleset",
    "TiltGeometry": "cryoflow.geometry",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cryoflow' has no attribute {name!r}")
