"""Literal per-voxel loops of the projection rule: independent oracles for the kernel tests.

Plain Python floats, one voxel, tilt and tap at a time, restating CONTRACT.md and the rule in
``cryoflow/kernels/backproject.py``'s docstring; nothing here calls cryoflow.
"""

from __future__ import annotations

import math

import numpy as np


def positions(m, s, shape, detector, z, y, x):
    """Detector (v, u) of voxel (z, y, x): the documented formula, in its documented order."""
    Z, Y, X = shape
    V, U = detector
    zc, yc, xc = z - (Z - 1) / 2, y - (Y - 1) / 2, x - (X - 1) / 2
    pv = ((zc * m[0][0] + yc * m[0][1]) + xc * m[0][2]) + s[0] + (V - 1) / 2
    pu = ((zc * m[1][0] + yc * m[1][1]) + xc * m[1][2]) + s[1] + (U - 1) / 2
    return pv, pu


def taps(p: float, size: int, interpolation: str) -> list[tuple[int, float]]:
    """(pixel, weight) pairs of one coordinate with a non-zero weight on the detector."""
    if interpolation == "nearest":
        i = round(p)  # Python rounds half to even, like numpy.rint
        return [(i, 1.0)] if 0 <= i < size else []
    f = math.floor(p)
    w = p - f
    return [(i, wi) for i, wi in ((f, 1.0 - w), (f + 1, w)) if wi > 0 and 0 <= i < size]


def loop_backproject(images, geometry, shape, interpolation):
    """(Z, Y, X) float64: per tilt, the sum of the weighted taps of every voxel (bool images:
    one vote per tilt with any true tap)."""
    n, V, U = images.shape
    out = np.zeros(shape)
    for t in range(n):
        m, s = geometry.matrices[t], geometry.shifts_px[t]
        for z, y, x in np.ndindex(*shape):
            pv, pu = positions(m, s, shape, (V, U), z, y, x)
            hits = [
                (iv, iu, wv * wu)
                for iv, wv in taps(pv, V, interpolation)
                for iu, wu in taps(pu, U, interpolation)
            ]
            if images.dtype == bool:  # a vote: any true tap of this tilt
                out[z, y, x] += any(images[t, iv, iu] for iv, iu, _ in hits)
            else:
                out[z, y, x] += sum(w * float(images[t, iv, iu]) for iv, iu, w in hits)
    return out


def loop_project(volume, geometry, detector, mode, interpolation):
    """(n_tilts, V, U) float64: every voxel scattered onto its taps ("sum": weighted sum,
    "any": 1 where a non-zero voxel has a tap, "max": largest value, -inf where none falls)."""
    V, U = detector
    n = geometry.n_tilts
    out = np.full((n, V, U), -np.inf if mode == "max" else 0.0)
    for t in range(n):
        m, s = geometry.matrices[t], geometry.shifts_px[t]
        for z, y, x in np.ndindex(*volume.shape):
            pv, pu = positions(m, s, volume.shape, detector, z, y, x)
            value = float(volume[z, y, x])
            for iv, wv in taps(pv, V, interpolation):
                for iu, wu in taps(pu, U, interpolation):
                    if mode == "sum":
                        out[t, iv, iu] += wv * wu * value
                    elif mode == "any":
                        out[t, iv, iu] = out[t, iv, iu] or value != 0
                    else:
                        out[t, iv, iu] = max(out[t, iv, iu], value)
    return out
