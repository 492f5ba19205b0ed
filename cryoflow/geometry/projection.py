"""Projection geometry shared by every projector.

Frames
------
Volume voxels are indexed ``(z, y, x)`` and centred with ``zc = z - (Z-1)/2`` (likewise y, x).
Detector pixels are indexed ``(v, u)`` = ``(y, x)`` of a tilt image and centred the same way.
A geometry holds, per tilt, a 2x3 matrix ``M_volume2detector`` mapping centred ``(zc, yc, xc)``
to centred ``(vc, uc)``, plus a detector shift ``(dv, du)`` in pixels added afterwards.

The contract's single-axis case (tilt axis = y) at angle ``t`` is

    uc = xc*cos(t) + zc*sin(t),   vc = yc,

i.e. rows ``u = [sin t, 0, cos t]`` and ``v = [0, 1, 0]`` in ``(z, y, x)`` order.

The 2D-to-3D paper (Zeng et al. 2023, eq. 3) describes a projection by its direction
``n = (cos(theta)cos(phi), cos(theta)sin(phi), sin(theta))`` in ``(x, y, z)``. We take the
detector ``v`` axis as the volume ``y`` axis made orthogonal to ``n`` and ``u = v x n``; with
``phi = 0`` and ``theta = 90 + t`` this is exactly the contract's tilt ``t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cryoflow.errors import GeometryError


def _tuple2(rows: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in rows)


@dataclass(frozen=True)
class TiltGeometry:
    """Frozen projection geometry of one (possibly dual-axis) tilt series.

    Attributes
    ----------
    angles_deg : tuple of float, length n_tilts
        Nominal tilt angles (for display and angle-ordered algorithms).
    matrices : tuple, shape (n_tilts, 2, 3)
        ``M_volume2detector`` per tilt: centred ``(zc, yc, xc)`` -> centred ``(vc, uc)``.
    shifts_px : tuple, shape (n_tilts, 2)
        Detector shift ``(dv, du)`` in pixels, added after projection.
    tilt_axis_deg : float
        In-plane rotation of the tilt axis (0 = along detector y). Recorded for provenance.
    axis_id : tuple of int, length n_tilts
        Which tilt axis each image belongs to (0, or 1 for the second series of a dual-axis set).
    """

    angles_deg: tuple[float, ...]
    matrices: tuple[tuple[tuple[float, ...], ...], ...]
    shifts_px: tuple[tuple[float, ...], ...]
    tilt_axis_deg: float = 0.0
    axis_id: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.angles_deg)
        m = np.asarray(self.matrices, dtype=float)
        s = np.asarray(self.shifts_px, dtype=float)
        if m.shape != (n, 2, 3):
            raise GeometryError(f"matrices must have shape ({n}, 2, 3), got {m.shape}")
        if s.shape != (n, 2):
            raise GeometryError(f"shifts_px must have shape ({n}, 2), got {s.shape}")
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))):
            raise GeometryError("geometry holds non-finite values")
        if not np.all(np.isfinite(np.asarray(self.angles_deg, dtype=float))):
            raise GeometryError(f"tilt angles must be finite, got {list(self.angles_deg)}")
        if not self.axis_id:
            object.__setattr__(self, "axis_id", (0,) * n)
        elif len(self.axis_id) != n:
            raise GeometryError(f"axis_id must have length {n}, got {len(self.axis_id)}")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def single_axis(
        cls,
        angles_deg: Sequence[float] | np.ndarray,
        *,
        tilt_axis_deg: float = 0.0,
        shifts_px: np.ndarray | Sequence[Sequence[float]] | None = None,
    ) -> TiltGeometry:
        """Contract single-axis geometry, optionally with an in-plane tilt-axis rotation.

        ``tilt_axis_deg`` rotates the detector frame: the image of the tilt axis makes this
        angle with the detector ``v`` (y) axis, counter-clockwise.
        """
        t = np.deg2rad(np.asarray(angles_deg, dtype=float).reshape(-1))
        if not np.all(np.isfinite(t)):
            raise GeometryError(f"tilt angles must be finite, got {list(np.rad2deg(t))}")
        n = t.size
        m = np.zeros((n, 2, 3))
        m[:, 0, 1] = 1.0  # v = y
        m[:, 1, 0] = np.sin(t)  # u = z sin t + x cos t
        m[:, 1, 2] = np.cos(t)
        m = _rotate_detector(m, tilt_axis_deg)
        shifts = np.zeros((n, 2)) if shifts_px is None else np.asarray(shifts_px, float)
        return cls(
            angles_deg=tuple(float(a) for a in np.rad2deg(t)),
            matrices=tuple(_tuple2(mi) for mi in m),
            shifts_px=_tuple2(shifts.reshape(n, 2))
            if shifts.size == 2 * n
            else _bad_shifts(shifts, n),
            tilt_axis_deg=float(tilt_axis_deg),
        )

    @classmethod
    def from_directions(
        cls,
        theta_deg: Sequence[float] | np.ndarray,
        phi_deg: Sequence[float] | np.ndarray,
        *,
        shifts_px: np.ndarray | None = None,
    ) -> TiltGeometry:
        """Geometry from the 2D-to-3D paper's projection directions (eq. 3).

        ``n = (cos(theta)cos(phi), cos(theta)sin(phi), sin(theta))`` in ``(x, y, z)``.
        ``theta = 90 + t, phi = 0`` reproduces the contract's single-axis tilt ``t``.
        """
        th = np.deg2rad(np.asarray(theta_deg, float).reshape(-1))
        ph = np.deg2rad(np.asarray(phi_deg, float).reshape(-1))
        if th.shape != ph.shape:
            raise GeometryError(
                f"theta and phi must have the same length, got {th.size} and {ph.size}"
            )
        n_xyz = np.stack([np.cos(th) * np.cos(ph), np.cos(th) * np.sin(ph), np.sin(th)], axis=1)
        y = np.array([0.0, 1.0, 0.0])
        mats = np.zeros((th.size, 2, 3))
        for i, nv in enumerate(n_xyz):
            v = y - (y @ nv) * nv
            norm = np.linalg.norm(v)
            if norm < 1e-9:
                raise GeometryError(
                    f"projection direction {i} (theta={np.rad2deg(th[i]):.3g}, "
                    f"phi={np.rad2deg(ph[i]):.3g}) is parallel to the y axis; no detector frame"
                )
            v /= norm
            u = np.cross(v, nv)
            # (x, y, z) -> (z, y, x) column order
            mats[i, 0] = v[::-1]
            mats[i, 1] = u[::-1]
        shifts = np.zeros((th.size, 2)) if shifts_px is None else np.asarray(shifts_px, float)
        # nominal angle: elevation from the beam, i.e. theta - 90 for phi = 0
        return cls(
            angles_deg=tuple(float(a) for a in np.rad2deg(th) - 90.0),
            matrices=tuple(_tuple2(mi) for mi in mats),
            shifts_px=_tuple2(shifts.reshape(th.size, 2)),
        )

    @classmethod
    def dual_axis(
        cls,
        angles_a_deg: Sequence[float] | np.ndarray,
        angles_b_deg: Sequence[float] | np.ndarray,
        *,
        second_axis_deg: float = 90.0,
    ) -> TiltGeometry:
        """Two single-axis series of one volume, the second about an axis rotated in-plane."""
        a = cls.single_axis(angles_a_deg)
        b = cls.single_axis(angles_b_deg, tilt_axis_deg=second_axis_deg)
        return cls(
            angles_deg=a.angles_deg + b.angles_deg,
            matrices=a.matrices + b.matrices,
            shifts_px=a.shifts_px + b.shifts_px,
            axis_id=(0,) * len(a.angles_deg) + (1,) * len(b.angles_deg),
        )

    # ------------------------------------------------------------------ views
    @property
    def n_tilts(self) -> int:
        return len(self.angles_deg)

    @property
    def matrix_array(self) -> np.ndarray:
        """ndarray of shape (n_tilts, 2, 3): ``M_volume2detector``."""
        return np.asarray(self.matrices, dtype=np.float64)

    @property
    def shift_array(self) -> np.ndarray:
        """ndarray of shape (n_tilts, 2): detector shifts ``(dv, du)`` in pixels."""
        return np.asarray(self.shifts_px, dtype=np.float64)

    @property
    def is_simple(self) -> bool:
        """True when image row ``v`` sees only volume row ``y`` (no rotation, no v shift)."""
        m = self.matrix_array
        return bool(
            np.allclose(m[:, 0], [0.0, 1.0, 0.0])
            and np.allclose(m[:, 1, 1], 0.0)
            and np.allclose(self.shift_array[:, 0], 0.0)
        )

    def select(self, index: Sequence[int] | np.ndarray) -> TiltGeometry:
        """The geometry of a subset of tilts (in the given order)."""
        idx = np.asarray(index, dtype=int).reshape(-1)
        return TiltGeometry(
            angles_deg=tuple(self.angles_deg[i] for i in idx),
            matrices=tuple(self.matrices[i] for i in idx),
            shifts_px=tuple(self.shifts_px[i] for i in idx),
            tilt_axis_deg=self.tilt_axis_deg,
            axis_id=tuple(self.axis_id[i] for i in idx),
        )

    def with_shifts(self, shifts_px: np.ndarray) -> TiltGeometry:
        s = np.asarray(shifts_px, dtype=float)
        return TiltGeometry(
            self.angles_deg,
            self.matrices,
            _tuple2(s.reshape(self.n_tilts, 2)),
            self.tilt_axis_deg,
            self.axis_id,
        )

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "cryoflow.TiltGeometry",
            "version": 1,
            "angles_deg": list(self.angles_deg),
            "matrices": [[list(r) for r in m] for m in self.matrices],
            "shifts_px": [list(s) for s in self.shifts_px],
            "tilt_axis_deg": self.tilt_axis_deg,
            "axis_id": list(self.axis_id),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TiltGeometry:
        if not isinstance(d, dict) or d.get("kind") != "cryoflow.TiltGeometry":
            raise GeometryError(f"not a cryoflow.TiltGeometry record: {str(d)[:120]}")
        try:
            return cls(
                angles_deg=tuple(float(a) for a in d["angles_deg"]),
                matrices=tuple(_tuple2(np.asarray(m, float)) for m in d["matrices"]),
                shifts_px=_tuple2(np.asarray(d["shifts_px"], float).reshape(-1, 2)),
                tilt_axis_deg=float(d.get("tilt_axis_deg", 0.0)),
                axis_id=tuple(int(a) for a in d.get("axis_id", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GeometryError(f"malformed geometry record: {exc}") from exc


def _bad_shifts(shifts: np.ndarray, n: int) -> tuple[tuple[float, ...], ...]:
    raise GeometryError(f"shifts_px must have shape ({n}, 2), got {shifts.shape}")


def _rotate_detector(m: np.ndarray, tilt_axis_deg: float) -> np.ndarray:
    """Rotate the detector frame in-plane by ``tilt_axis_deg`` (counter-clockwise)."""
    if tilt_axis_deg == 0.0:
        return m
    a = np.deg2rad(tilt_axis_deg)
    r = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # (v, u) <- (v, u)
    return np.einsum("ij,njk->nik", r, m)


def as_geometry(angles: object) -> TiltGeometry:
    """Accept a TiltGeometry or a 1-D array of single-axis tilt angles in degrees."""
    if isinstance(angles, TiltGeometry):
        return angles
    try:
        a = np.asarray(angles, dtype=float)
    except (TypeError, ValueError) as exc:
        raise GeometryError(
            f"angles must be a TiltGeometry or 1-D degrees, got {type(angles)!r}"
        ) from exc
    if a.ndim != 1:
        raise GeometryError(f"angles must be 1-D (n_tilts,), got shape {a.shape}")
    return TiltGeometry.single_axis(a)
