"""Where the tilt axis lies, in the volume and on each tilt image (pure math, no I/O).

Weighted back-projection filters every image *across* its tilt axis. For a single-axis series
the projection directions ``n_t`` all lie in the plane perpendicular to the tilt axis ``a``, and
each detector line perpendicular to the image of ``a`` is the projection of one volume slice
(the plane ``a . r = c``). This module finds ``a`` and that detector direction from the
per-tilt matrices ``M_volume2detector`` of a :class:`~cryoflow.geometry.TiltGeometry`, so it
holds for any in-plane tilt-axis angle, per-tilt in-plane rotations and magnifications (an
imported alignment), detector shifts, and each axis of a dual-axis series (``axis_id``).

Rules (vectors in the volume's ``(z, y, x)`` order, detector vectors in ``(v, u)``):

1. beam direction of tilt ``t``: ``n_t = row_v x row_u`` of ``M_t``, normalised;
2. tilt axis of the tilts sharing an ``axis_id``: the unit normal of the plane the ``n_t`` span
   (the right singular vector of the stacked ``n_t`` with the smallest singular value); when
   they span no plane (one tilt, or all parallel) the volume ``y`` axis made perpendicular to
   the beam;
3. filter direction of tilt ``t``: ``d_t = M_t (a x n_t)``, normalised: the detector direction
   along which one volume slice perpendicular to ``a`` projects.

For the contract's geometry (axis = y, ``tilt_axis_deg`` = 0) ``d_t = (0, 1)``: along image
rows. For an arbitrary set of directions (the 2D-to-3D paper's ``(theta, phi)`` pairs off a
single plane) step 2 gives the best-fit axis and the filter is an approximation.
"""

from __future__ import annotations

import numpy as np

from cryoflow.geometry.projection import TiltGeometry

#: relative size below which a singular value counts as zero (directions span no plane)
_RANK_TOL = 1e-6


def beam_directions(geometry: TiltGeometry) -> np.ndarray:
    """ndarray of shape (n_tilts, 3): unit beam direction of every tilt, volume ``(z, y, x)``."""
    m = geometry.matrix_array
    n = np.cross(m[:, 0], m[:, 1])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.where(norm > 0, norm, 1.0)


def _plane_normal(directions: np.ndarray) -> np.ndarray | None:
    """Unit normal of the plane through the origin that the rows of ``directions`` span."""
    if directions.shape[0] < 2:
        return None
    _, s, vt = np.linalg.svd(directions, full_matrices=True)
    if s.size < 2 or s[1] <= _RANK_TOL * s[0]:
        return None
    axis = vt[-1]
    # a fixed orientation: the component along volume y (then x, then z) positive
    for k in (1, 2, 0):
        if abs(axis[k]) > 1e-12:
            return axis if axis[k] > 0 else -axis
    return axis


def tilt_axes(geometry: TiltGeometry) -> np.ndarray:
    """ndarray of shape (n_tilts, 3): unit tilt axis of every tilt, volume ``(z, y, x)``.

    One axis per ``axis_id`` group (rule 2 of the module docstring).
    """
    beams = beam_directions(geometry)
    ids = np.asarray(geometry.axis_id, dtype=int)
    axes = np.zeros_like(beams)
    y = np.array([0.0, 1.0, 0.0])
    for group in np.unique(ids):
        sel = ids == group
        normal = _plane_normal(beams[sel])
        if normal is not None:
            axes[sel] = normal
            continue
        for i in np.flatnonzero(sel):  # fallback: y made perpendicular to the beam
            v = y - (y @ beams[i]) * beams[i]
            norm = np.linalg.norm(v)
            axes[i] = v / norm if norm > 1e-9 else np.array([1.0, 0.0, 0.0])
    return axes


def filter_directions(geometry: TiltGeometry) -> np.ndarray:
    """ndarray of shape (n_tilts, 2): unit detector direction ``(dv, du)`` across the tilt axis.

    The ramp filter of weighted back-projection runs along this direction on each image
    (rule 3 of the module docstring); ``(0, 1)`` means along image rows. The sign is fixed so
    that the larger component is positive (the ramp is symmetric).
    """
    m = geometry.matrix_array
    beams = beam_directions(geometry)
    across = np.cross(tilt_axes(geometry), beams)  # in the slice plane, perpendicular to the beam
    d = np.einsum("nij,nj->ni", m, across)
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    d = np.where(norm > 1e-9, d / np.where(norm > 0, norm, 1.0), np.array([0.0, 1.0]))
    flip = np.where(np.abs(d[:, 1]) >= np.abs(d[:, 0]), np.sign(d[:, 1]), np.sign(d[:, 0]))
    return d * np.where(flip == 0, 1.0, flip)[:, None]


def axis_angle_on_detector_deg(geometry: TiltGeometry) -> np.ndarray:
    """ndarray of shape (n_tilts,): angle of the tilt axis's image from the detector y axis.

    Degrees, counter-clockwise positive with x to the right and y (the row index) up, i.e.
    IMOD's and SerialEM's "tilt axis angle" convention. For ``TiltGeometry.single_axis(...,
    tilt_axis_deg=a)`` every entry is ``a`` (mod 180).
    """
    p = np.einsum("nij,nj->ni", geometry.matrix_array, tilt_axes(geometry))  # (dv, du)
    # the axis image points along (x, y) = (du, dv); its angle from +y, counter-clockwise
    angle = np.rad2deg(np.arctan2(-p[:, 1], p[:, 0]))
    return (angle + 90.0) % 180.0 - 90.0
