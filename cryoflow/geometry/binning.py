"""The geometry of a binned tilt series (pure math)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryoflow.errors import GeometryError
from cryoflow.geometry.projection import TiltGeometry


def bin_geometry(
    geometry: TiltGeometry, detector_shape: Sequence[int], factor: int
) -> TiltGeometry:
    """Geometry of a tilt series binned ``factor x factor`` with trailing pixels dropped.

    The binned volume has the same centre as the unbinned one, and its voxels are ``factor``
    times larger, so the matrices are unchanged; detector shifts scale by ``1 / factor``.
    Dropping the ``size - factor * (size // factor)`` trailing pixels of an axis moves the
    binned image's centre back by half of them: a point at the unbinned centre lies
    ``(size - factor * (size // factor)) / (2 factor)`` binned pixels *after* the binned centre,
    which is added to the shift.

    Parameters
    ----------
    geometry : TiltGeometry
        Geometry of the unbinned images.
    detector_shape : (V, U)
        Unbinned image shape.
    factor : int
        Bin factor (>= 1).
    """
    f = int(factor)
    if f < 1:
        raise GeometryError(f"bin factor must be >= 1, got {factor}")
    if f == 1:
        return geometry
    V, U = (int(s) for s in detector_shape)
    extra = np.array([V - f * (V // f), U - f * (U // f)], dtype=float) / (2 * f)
    return geometry.with_shifts(geometry.shift_array / f + extra)
