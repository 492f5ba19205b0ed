"""Boxes around particles: where they start, and filling them from pieces of a volume.

A particle at ``(x, y, z)`` (voxels, fractions allowed) gets the box of side ``B`` whose centre
voxel ``B // 2`` is the particle's nearest voxel, ``numpy.rint`` of each coordinate (the
contract's nearest-neighbour rule): the box starts at ``start = rint(c) - B // 2`` on each
axis and holds ``volume[start : start + B]``, exactly the voxels of slicing the volume in
memory. The sub-voxel rest ``c - rint(c)`` is left to alignment (the particle table keeps
``x, y, z`` as given).

Boxes reaching over the volume border are padded: ``pad="mean"`` (default) fills the voxels
outside the volume with the mean of the box's voxels inside it (no edge where the volume
stops, and a padded box keeps its own mean level), a number fills them with that constant;
a box entirely outside is all ``0``. Boxes are ``float32``.

:func:`crop_boxes` is the in-memory reference. The chunked path (:mod:`cryoflow.graph.extract`)
fills boxes piece by piece with :func:`paste_region`, then :func:`pad_outside`; the result is
the same voxels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cryoflow.errors import GeometryError
from cryoflow.kernels._guards import refuse_lazy

__all__ = [
    "box_starts",
    "crop_boxes",
    "inside_fraction",
    "pad_outside",
    "paste_region",
    "parse_pad",
]

Pad = str | float


def parse_pad(pad: object) -> Pad:
    """``"mean"`` or a finite float (GeometryError otherwise)."""
    if pad == "mean":
        return "mean"
    try:
        value = float(pad)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"pad must be 'mean' or a number, got {pad!r}") from exc
    if not np.isfinite(value):
        raise GeometryError(f"pad must be finite, got {pad!r}")
    return value


def box_starts(coords_xyz: np.ndarray, box: int) -> np.ndarray:
    """ndarray of shape (n, 3), int64: the ``(z, y, x)`` voxel where each box starts.

    Parameters
    ----------
    coords_xyz : ndarray of shape (n, 3)
        Particle positions ``(x, y, z)`` in voxels.
    box : int, >= 1
    """
    c = np.asarray(coords_xyz, dtype=np.float64).reshape(-1, 3)
    if int(box) < 1:
        raise GeometryError(f"box size must be >= 1, got {box}")
    if not np.all(np.isfinite(c)):
        raise GeometryError("particle coordinates must be finite")
    return (np.rint(c[:, ::-1]) - int(box) // 2).astype(np.int64)


def _overlaps(
    starts: np.ndarray, box: int, lo: np.ndarray, hi: np.ndarray
) -> tuple[list[int], list[list[int]], list[list[int]]]:
    """The boxes (rows of ``starts``) that overlap ``[lo, hi)``, with each overlap's start and
    end in volume voxels, for all boxes at once."""
    a = np.maximum(starts, lo)
    b = np.minimum(starts + box, hi)
    hit = np.flatnonzero(np.all(b > a, axis=1))
    return hit.tolist(), a[hit].tolist(), b[hit].tolist()


def inside_fraction(starts: np.ndarray, box: int, shape: Sequence[int]) -> np.ndarray:
    """ndarray of shape (n,): the share of each box inside a volume of ``shape``."""
    s = np.asarray(starts, dtype=np.int64).reshape(-1, 3)
    shp = np.asarray(shape, dtype=np.int64)
    ext = np.clip(np.minimum(s + box, shp) - np.maximum(s, 0), 0, None)
    return ext.prod(axis=1) / float(box) ** 3


def paste_region(
    out: np.ndarray, starts: np.ndarray, box: int, region: np.ndarray, region_start: Sequence[int]
) -> None:
    """Copy ``region`` (a piece of the volume starting at ``region_start``) into every box
    of ``out`` ``(n, B, B, B)`` it overlaps, in place."""
    refuse_lazy(region, "paste_region")
    r = [int(v) for v in region_start]
    r0 = np.asarray(r, dtype=np.int64)
    s_all = np.asarray(starts, dtype=np.int64).reshape(-1, 3)
    hit, lo, hi = _overlaps(s_all, box, r0, r0 + np.asarray(region.shape, dtype=np.int64))
    for i, a, b in zip(hit, lo, hi, strict=True):
        s = s_all[i].tolist()
        out[i, a[0] - s[0] : b[0] - s[0], a[1] - s[1] : b[1] - s[1], a[2] - s[2] : b[2] - s[2]] = (
            region[a[0] - r[0] : b[0] - r[0], a[1] - r[1] : b[1] - r[1], a[2] - r[2] : b[2] - r[2]]
        )


def pad_outside(
    out: np.ndarray, starts: np.ndarray, box: int, shape: Sequence[int], pad: Pad
) -> None:
    """Fill the voxels of each box outside a volume of ``shape`` (module rule), in place."""
    shp = np.asarray(shape, dtype=np.int64)
    s_all = np.asarray(starts, dtype=np.int64).reshape(-1, 3)
    border = np.flatnonzero(~(np.all(s_all >= 0, axis=1) & np.all(s_all + box <= shp, axis=1)))
    hit, lo, hi = _overlaps(s_all[border], box, np.zeros(3, np.int64), shp)
    out[np.setdiff1d(border, border[hit])] = 0.0  # boxes entirely outside: all 0
    for j, a, b in zip(hit, lo, hi, strict=True):
        i = int(border[j])
        s = s_all[i].tolist()
        inner = (
            slice(a[0] - s[0], b[0] - s[0]),
            slice(a[1] - s[1], b[1] - s[1]),
            slice(a[2] - s[2], b[2] - s[2]),
        )
        kept = out[i][inner].copy()
        out[i] = np.float32(kept.mean(dtype=np.float64)) if pad == "mean" else np.float32(pad)
        out[i][inner] = kept


def crop_boxes(
    volume: np.ndarray, coords_xyz: np.ndarray, box: int, *, pad: Pad = "mean"
) -> np.ndarray:
    """The in-memory reference: boxes ``(n, B, B, B)`` float32 cut from a ``(Z, Y, X)`` volume.

    Parameters
    ----------
    volume : ndarray of shape (Z, Y, X)
    coords_xyz : ndarray of shape (n, 3), particle ``(x, y, z)`` in voxels
    box : int, the box side ``B``
    pad : ``"mean"`` or a number (module docstring)
    """
    refuse_lazy(volume, "crop_boxes")
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise GeometryError(f"crop_boxes takes a (Z, Y, X) volume, got shape {vol.shape}")
    starts = box_starts(coords_xyz, box)
    out = np.zeros((len(starts), box, box, box), dtype=np.float32)
    paste_region(out, starts, box, vol, (0, 0, 0))
    pad_outside(out, starts, box, vol.shape, parse_pad(pad))
    return out
