"""A small ramp-filtered back-projection (FBP) for the simulator's ``tomogram``.

Kept inside ``simulate`` so the simulator does not depend on the projector stages; it uses the
exact transpose of the simulator's linear projector, so it follows the contract geometry. The
ramp filter is the project's one filter, :func:`cryoflow.kernels.ramp.ramp_filter` (edge-value
padding, across the tilt axis of every image), as in ``cryoflow reconstruct``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryoflow.geometry import as_geometry
from cryoflow.geometry.tilt_axis import filter_directions
from cryoflow.kernels.ramp import ramp_filter
from cryoflow.simulate.tilts import backproject_linear, require_numpy


def fbp(images: np.ndarray, angles: object, shape: Sequence[int]) -> np.ndarray:
    """Filtered back-projection of a single-axis tilt series.

    Parameters
    ----------
    images : ndarray of shape (n_tilts, Y, U)
    angles : ndarray of shape (n_tilts,) in degrees, or a TiltGeometry
        A rotated tilt axis is back-projected with the general (bilinear) back-projector
        :func:`cryoflow.kernels.backproject.backproject_block`; the ramp filter runs across
        the tilt axis of every image, as in ``cryoflow reconstruct``.
    shape : (Z, Y, X)
        Output volume shape.

    Returns
    -------
    ndarray of float32, shape (Z, Y, X)
        Scaled so that a constant-density region reconstructs to about its density when the
        tilts span 180 degrees; a limited range (missing wedge) scales it by about range/180.
    """
    geometry = as_geometry(angles)
    ang = np.asarray(geometry.angles_deg, dtype=float)
    step = np.deg2rad(np.median(np.diff(np.sort(ang)))) if ang.size > 1 else np.pi
    img = ramp_filter(require_numpy(images, "images"), filter_directions(geometry))
    # the mean of each image carries the DC term a ramp filter drops; leave it dropped
    if geometry.is_simple:
        volume = backproject_linear(img, geometry, shape)
    else:
        # imported here: the general back-projector needs torch, the single-axis path does not
        from cryoflow.kernels.backproject import backproject_block

        Z, Y, X = (int(s) for s in shape)
        volume = backproject_block(
            img,
            geometry,
            (Z, Y, X),
            img.shape[1:],
            (slice(0, Z), slice(0, Y), slice(0, X)),
            interpolation="linear",
            n_threads=1,
        )
    return (volume * np.float32(step)).astype(np.float32)
