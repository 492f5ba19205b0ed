"""Raw-image geometry from 2D alignment transforms made elsewhere (IMOD ``.xf``, AreTomo ``.aln``).

An alignment transform maps a *raw* tilt image onto the *aligned* one, in centred pixel
coordinates ``(x, y)`` (x = column, y = row, origin at the image centre ``(N-1)/2``):

    a = A r + d        (A: 2x2, d: 2-vector; IMOD's ``A11 A12 A21 A22 DX DY``)

The aligned images follow a geometry whose tilt axis is the image y axis (the contract's
single-axis tilt with the refined angles). A voxel falls on aligned position ``a = M_aligned p``,
hence on raw position ``r = A^-1 (a - d)``: the raw images' geometry has, in ``(v, u)`` =
``(y, x)`` order,

    M_raw = P M_aligned,   shift_raw = P shift_aligned - Q d,

with ``P`` = ``A^-1`` written in ``(v, u)`` order and ``Q d`` = ``A^-1 d`` in ``(v, u)`` order.
Reconstruction then reads the raw pixels directly (no resampled, interpolated copy).
"""

from __future__ import annotations

import numpy as np

from cryoflow.errors import GeometryError
from cryoflow.geometry.projection import TiltGeometry, _tuple2
from cryoflow.geometry.tilt_axis import axis_angle_on_detector_deg


def raw_geometry(aligned: TiltGeometry, transforms_xy: np.ndarray) -> TiltGeometry:
    """Geometry of raw images that ``transforms_xy`` map onto images of geometry ``aligned``.

    Parameters
    ----------
    aligned : TiltGeometry
        Geometry of the aligned images (usually ``TiltGeometry.single_axis(tlt_angles)``).
    transforms_xy : ndarray of shape (n_tilts, 2, 3)
        ``[[A11, A12, DX], [A21, A22, DY]]`` per tilt, raw -> aligned, ``(x, y)`` order, pixels.

    Returns
    -------
    TiltGeometry
        Same angles; ``tilt_axis_deg`` the mean angle of the tilt axis on the raw images
        (IMOD convention), for provenance.
    """
    t = np.asarray(transforms_xy, dtype=np.float64)
    n = aligned.n_tilts
    if t.shape != (n, 2, 3):
        raise GeometryError(f"transforms must have shape ({n}, 2, 3), got {t.shape}")
    if not np.all(np.isfinite(t)):
        raise GeometryError("alignment transforms hold non-finite values")
    a = t[:, :, :2]
    det = np.linalg.det(a)
    if np.any(np.abs(det) < 1e-6):
        bad = int(np.argmin(np.abs(det)))
        raise GeometryError(
            f"alignment transform of tilt {bad} is singular (determinant {det[bad]:.3g})"
        )
    b = np.linalg.inv(a)  # aligned -> raw, (x, y)
    swap = np.array([[0.0, 1.0], [1.0, 0.0]])  # (x, y) <-> (v, u) = (y, x)
    p = swap @ b @ swap  # (v, u) order
    d_vu = t[:, ::-1, 2]  # (DY, DX)
    m = np.einsum("nij,njk->nik", p, aligned.matrix_array)
    shifts = np.einsum("nij,nj->ni", p, aligned.shift_array - d_vu)
    out = TiltGeometry(
        angles_deg=aligned.angles_deg,
        matrices=tuple(_tuple2(mi) for mi in m),
        shifts_px=_tuple2(shifts),
        tilt_axis_deg=0.0,
        axis_id=aligned.axis_id,
    )
    doubled = np.deg2rad(2.0 * axis_angle_on_detector_deg(out))  # axes are mod 180: average 2x
    axis = float(np.rad2deg(np.arctan2(np.sin(doubled).mean(), np.cos(doubled).mean())) / 2)
    return TiltGeometry(out.angles_deg, out.matrices, out.shifts_px, axis, out.axis_id)
