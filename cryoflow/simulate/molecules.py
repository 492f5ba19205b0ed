"""Molecules of one size and one mass but different shapes: targets and look-alike decoys.

A picker that only finds blobs of the right size cannot tell these apart; one that learned the
shape can. Every molecule is a :class:`~cryoflow.simulate.particles.Template` (a union of
ellipsoidal blobs, uniform density, Ångström, body frame ``(z, y, x)``) built so that

* its **size** is the diameter asked for: it fits a ball of diameter ``D`` about its
  construction centre and spans ``D`` along its longest axis (lobes touch that ball), and
* its **mass** (its volume at uniform density) is the mass asked for, by default that of the
  ``"dimer"`` shape at that diameter,

by bisection on one free parameter per shape (the lobe radius or thickness). The body origin
is the centre of mass, so a truth coordinate is where a picker should land.

Shapes (``D`` the diameter, ``r`` the free radius):

=========== ==============================================================================
``dimer``   a large and a small lobe on the ``x`` axis (radii ``r``, ``0.7 r``) with a knob
            (``0.55 r``) beside the large one: asymmetric, no symmetry axis
``trimer``  three equal lobes at 120 degrees in the ``xy`` plane
``tetramer`` four equal lobes at the vertices of a tetrahedron
``ring``    six equal lobes on a circle in the ``xy`` plane (hollow centre)
``rod``     a prolate ellipsoid, semi-axes ``(r, r, D/2)``
``disc``    an oblate ellipsoid, semi-axes ``(r, D/2, D/2)``
=========== ==============================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from cryoflow.errors import ConfigError
from cryoflow.simulate.particles import Blob, Template

#: grid points per diameter for measuring volume, centre of mass and size
_GRID = 48


def _dimer(d: float, r: float) -> list[Blob]:
    small = 0.7 * r
    return [
        Blob((0.0, 0.0, -d / 2 + r), (r, r, r)),
        Blob((0.0, 0.0, d / 2 - small), (small, small, small)),
        Blob((0.0, 0.9 * r, -d / 2 + 1.2 * r), (0.55 * r, 0.55 * r, 0.55 * r)),
    ]


def _lobes_on_circle(k: int) -> Callable[[float, float], list[Blob]]:
    def build(d: float, r: float) -> list[Blob]:
        c = d / 2 - r
        out = []
        for i in range(k):
            a = 2 * np.pi * i / k
            out.append(Blob((0.0, c * np.sin(a), c * np.cos(a)), (r, r, r)))
        return out

    return build


def _tetramer(d: float, r: float) -> list[Blob]:
    c = d / 2 - r
    verts = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float) / np.sqrt(3)
    return [Blob(tuple(c * v), (r, r, r)) for v in verts]  # type: ignore[arg-type]


def _rod(d: float, r: float) -> list[Blob]:
    return [Blob((0.0, 0.0, 0.0), (r, r, d / 2))]


def _disc(d: float, r: float) -> list[Blob]:
    return [Blob((0.0, 0.0, 0.0), (r, d / 2, d / 2))]


#: shape name -> (builder(diameter, r) -> blobs, smallest r / D, largest r / D)
SHAPES: dict[str, tuple[Callable[[float, float], list[Blob]], float, float]] = {
    "dimer": (_dimer, 0.05, 0.45),
    "trimer": (_lobes_on_circle(3), 0.05, 0.45),
    "tetramer": (_tetramer, 0.05, 0.45),
    "ring": (_lobes_on_circle(6), 0.03, 0.25),
    "rod": (_rod, 0.02, 0.5),
    "disc": (_disc, 0.01, 0.5),
}

#: the free radius of the reference shape (``dimer``) whose volume sets the default mass
_REFERENCE_R = 0.3


def _measure(blobs: list[Blob], d: float) -> tuple[float, np.ndarray, float]:
    """Volume (Å^3), centre of mass ``(z, y, x)`` (Å) and the diameter (Å) of the smallest
    ball about the centre of mass that holds a union of blobs, on a grid of ``D / 48``."""
    step = d / _GRID
    half = 0.75 * d
    ax = np.arange(-half, half + step / 2, step)
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij", sparse=True)
    inside = np.zeros((ax.size,) * 3, dtype=bool)
    for b in blobs:
        (cz, cy, cx), (rz, ry, rx) = b.center_angstrom, b.radii_angstrom
        inside |= ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0
    zz, yy, xx = np.nonzero(inside)
    pts = np.stack([ax[zz], ax[yy], ax[xx]], axis=1)
    com = pts.mean(axis=0)
    size = 2 * float(np.sqrt(((pts - com) ** 2).sum(axis=1).max())) + step
    return float(inside.sum()) * step**3, com, size


def _centred(blobs: list[Blob], com: np.ndarray) -> tuple[Blob, ...]:
    return tuple(
        Blob(tuple(float(c) for c in np.asarray(b.center_angstrom) - com), b.radii_angstrom)  # type: ignore[arg-type]
        for b in blobs
    )


def reference_volume(diameter_angstrom: float) -> float:
    """Volume (Å^3) of the reference ``dimer`` of this diameter: the default mass."""
    build = SHAPES["dimer"][0]
    d = float(diameter_angstrom)
    return _measure(build(d, _REFERENCE_R * d), d)[0]


@lru_cache(maxsize=64)
def molecule(
    shape: str, diameter_angstrom: float, volume_angstrom3: float | None = None
) -> Template:
    """The molecule ``shape`` of size ``diameter_angstrom`` and volume ``volume_angstrom3``.

    Parameters
    ----------
    shape : one of :data:`SHAPES`
    diameter_angstrom : float
        Its size (see the module docstring).
    volume_angstrom3 : float, optional
        Its mass at uniform density; default :func:`reference_volume` of the diameter.

    Raises
    ------
    ConfigError
        Unknown shape, or a volume the shape cannot reach at this diameter.
    """
    if shape not in SHAPES:
        raise ConfigError(f"unknown molecule shape {shape!r}; valid: {', '.join(SHAPES)}")
    d = float(diameter_angstrom)
    if not (np.isfinite(d) and d > 0):
        raise ConfigError(f"molecule diameter must be > 0 Å, got {diameter_angstrom!r}")
    target = reference_volume(d) if volume_angstrom3 is None else float(volume_angstrom3)
    build, lo_frac, hi_frac = SHAPES[shape]
    lo, hi = lo_frac * d, hi_frac * d
    v_lo, v_hi = _measure(build(d, lo), d)[0], _measure(build(d, hi), d)[0]
    if not v_lo <= target <= v_hi:
        raise ConfigError(
            f"a {shape} of {d:g} Å holds {v_lo:.3g} to {v_hi:.3g} Å^3; {target:.3g} Å^3 asked"
        )
    # 1. bisection on the free radius: volume grows with it
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if _measure(build(d, mid), d)[0] < target:
            lo = mid
        else:
            hi = mid
    blobs = build(d, 0.5 * (lo + hi))
    # 2. body origin at the centre of mass
    _, com, _ = _measure(blobs, d)
    return Template(shape, 0, _centred(blobs, com))


def molecule_size(tmpl: Template, diameter_angstrom: float) -> tuple[float, float]:
    """``(volume Å^3, diameter Å of the smallest ball about its centre of mass holding it)``."""
    vol, _, size = _measure(list(tmpl.blobs), float(diameter_angstrom))
    return vol, size
