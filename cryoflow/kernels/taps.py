"""Where voxels fall on the detector, and the taps they read: the rule every projector shares.

Voxel ``(z, y, x)`` of a volume ``(Z, Y, X)`` falls on detector position

    pv = ((zc*M[t,0,0] + yc*M[t,0,1]) + xc*M[t,0,2]) + dv[t] + (V-1)/2
    pu = ((zc*M[t,1,0] + yc*M[t,1,1]) + xc*M[t,1,2]) + du[t] + (U-1)/2

(float64, in exactly this order, so every projector rounds identically; :func:`detector_positions`).
``nearest`` reads pixel ``(rint(pv), rint(pu))``; ``linear`` the bilinear taps ``floor(p)``,
``floor(p)+1`` with weights ``1-w`` and ``w`` per axis (:func:`axis_taps`). Taps off the
detector, or with weight 0, contribute nothing. When image row ``v`` sees only volume row
``y`` (:func:`simple_row_offset`), whole (z, x) columns share their taps (:func:`row_taps`).
Used by :mod:`cryoflow.kernels.backproject` (gather) and :mod:`cryoflow.kernels.project`
(scatter).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from cryoflow.geometry import TiltGeometry

__all__ = [
    "BlockCall",
    "INTERPOLATIONS",
    "Interpolation",
    "axis_taps",
    "centred",
    "covered",
    "detector_positions",
    "parse_interpolation",
    "row_taps",
    "simple_row_offset",
    "torch_threads",
]

Interpolation = Literal["nearest", "linear"]
INTERPOLATIONS = ("nearest", "linear")


@dataclass(frozen=True)
class BlockCall:
    """One projector call on one volume block, checked: the geometry, the whole volume's and
    detector's shapes, the block (explicit slices, in ``(z, y, x)``), the detector crop
    ``(v0, u0, Vc, Uc)`` read or written, the interpolation and the working torch dtype."""

    geometry: TiltGeometry
    volume_shape: tuple[int, int, int]
    detector_shape: tuple[int, int]
    block: tuple[slice, slice, slice]
    crop: tuple[int, int, int, int]
    interpolation: str
    work: torch.dtype


def parse_interpolation(value: str) -> str:
    """Return ``value`` if it is a known interpolation, else raise ``ValueError`` naming them."""
    if value not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {value!r}")
    return value


@contextlib.contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(n_threads)`` (unchanged when ``None``)."""
    if n_threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def centred(start: int, stop: int, size: int) -> np.ndarray:
    """ndarray of shape (stop - start,): centred coordinates ``i - (size-1)/2``, float64."""
    return np.arange(start, stop, dtype=np.float64) - (size - 1) / 2


def detector_positions(
    geometry: TiltGeometry,
    volume_shape: tuple[int, int, int],
    detector_shape: tuple[int, int],
    block: tuple[slice, slice, slice],
) -> tuple[np.ndarray, np.ndarray]:
    """Detector positions ``(pv, pu)`` of the voxels of ``block``, each (n_tilts, bz, by, bx).

    Float64 pixel coordinates (0 = centre of the first pixel), evaluated in the module
    docstring's order.
    """
    Z, Y, X = volume_shape
    V, U = detector_shape
    zc = centred(block[0].start, block[0].stop, Z)[None, :, None, None]
    yc = centred(block[1].start, block[1].stop, Y)[None, None, :, None]
    xc = centred(block[2].start, block[2].stop, X)[None, None, None, :]
    m = geometry.matrix_array[:, :, :, None, None, None]  # (n, 2, 3, 1, 1, 1)
    s = geometry.shift_array
    pv = ((zc * m[:, 0, 0] + yc * m[:, 0, 1]) + xc * m[:, 0, 2]) + s[:, 0, None, None, None]
    pu = ((zc * m[:, 1, 0] + yc * m[:, 1, 1]) + xc * m[:, 1, 2]) + s[:, 1, None, None, None]
    return pv + (V - 1) / 2, pu + (U - 1) / 2


def axis_taps(p: np.ndarray, size: int, interpolation: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Taps of positions ``p`` along one detector axis of ``size`` pixels.

    Returns a list of ``(index, weight)`` pairs shaped like ``p`` (int64, float64); taps off the
    detector or with weight 0 have weight 0.
    """
    if interpolation == "nearest":
        i = np.rint(p).astype(np.int64)
        return [(i, ((i >= 0) & (i < size)).astype(np.float64))]
    f = np.floor(p)
    w = p - f
    i0 = f.astype(np.int64)
    i1 = i0 + 1
    w0 = np.where((i0 >= 0) & (i0 < size), 1.0 - w, 0.0)
    w1 = np.where((i1 >= 0) & (i1 < size), w, 0.0)
    return [(i0, w0), (i1, w1)]


def simple_row_offset(
    geometry: TiltGeometry, volume_shape: Sequence[int], detector_shape: Sequence[int]
) -> int | None:
    """Detector row of volume row 0 when row ``v`` sees only row ``y`` (fast path), else None."""
    V, Y = int(detector_shape[0]), int(volume_shape[1])
    if not geometry.is_simple or (V - Y) % 2:
        return None
    # The rule must give pv == y + offset exactly; check it rather than trust the tolerance.
    m = geometry.matrix_array
    if not (np.all(m[:, 0] == [0.0, 1.0, 0.0]) and np.all(geometry.shift_array[:, 0] == 0.0)):
        return None
    return (V - Y) // 2


def covered(index: np.ndarray, weight: np.ndarray, origin: int, size: int, axis: str) -> None:
    """Raise if a contributing tap lies outside the crop ``origin : origin+size``."""
    used = index[weight > 0]
    if used.size and (used.min() < origin or used.max() >= origin + size):
        raise ValueError(
            f"the image crop along {axis} ({origin}:{origin + size}) misses taps "
            f"{int(used.min())}..{int(used.max())}; pass the block's footprint"
        )


def row_taps(
    geometry: TiltGeometry,
    volume_shape: tuple[int, int, int],
    detector_width: int,
    block: tuple[slice, slice, slice],
    u_crop: tuple[int, int],
    interpolation: str,
    *,
    any_rule: bool = False,
    per_tilt: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Fast-path taps: table row of every (z, x) column of ``block`` at every tilt.

    Table rows are ``variant*n*Uc + t*Uc + (u - u0)`` for a crop ``u_crop = (u0, Uc)``; taps
    off the detector or with weight 0 point at the zero row ``pad`` (returned).

    Returns
    -------
    index : int32 tensor of shape (bz*bx, K*n_tilts), or (K*n_tilts, bz*bx) with ``per_tilt``
        K = 1 (nearest, or linear with ``any_rule``) or 2 (linear: the floor tap of every tilt,
        then the ceil taps).
    weight : float64 tensor shaped like ``index``, or None for unweighted taps.
    pad : int
    """
    n = geometry.n_tilts
    u0, Uc = u_crop
    Z, _, X = volume_shape
    U = int(detector_width)
    m = torch.from_numpy(geometry.matrix_array)
    zc = torch.from_numpy(centred(block[0].start, block[0].stop, Z))[None, :, None]
    xc = torch.from_numpy(centred(block[2].start, block[2].stop, X))[None, None, :]
    # 1. positions, (n, bz, bx), in the module docstring's order (the y term is exactly 0)
    pu = zc * m[:, 1, 0, None, None] + xc * m[:, 1, 2, None, None]
    du = geometry.shift_array[:, 1]
    if np.any(du != 0):  # adding 0.0 changes nothing: skip the pass
        pu += torch.from_numpy(du[:, None, None])
    pu += (U - 1) / 2
    pu = pu.reshape(n, -1)
    base = (torch.arange(n, dtype=torch.int32) * Uc - u0)[:, None]
    pad = n * Uc * (2 if any_rule else 1)
    corners = pu[:, [0, bz_last(block), -1 - bz_last(block), -1]].T  # (4, n)
    if interpolation == "nearest":
        _check_cover(torch.round(corners), torch.round(corners), U, u0, Uc)
        r = pu.round_()
        on = (r >= 0) & (r < U)
        index = r.to(torch.int32).add_(base).masked_fill_(~on, pad)
        return _layout(index, per_tilt), None, pad
    f = torch.floor(pu)
    _check_cover(torch.floor(corners), torch.floor(corners) + 1, U, u0, Uc)
    w1 = pu.sub_(f)  # in place: pu is no longer needed
    i0 = f.to(torch.int32)
    on0 = (i0 >= 0) & (i0 < U)
    on1 = (i0 >= -1) & (i0 < U - 1) & (w1 > 0)
    i0.add_(base)
    if any_rule:
        both = on0 & on1
        index = torch.where(on0, i0, i0 + 1).add_(both.to(torch.int32) * (n * Uc))
        index.masked_fill_(~(on0 | on1), pad)
        return _layout(index, per_tilt), None, pad
    w0 = (1.0 - w1).masked_fill_(~on0, 0.0)
    w1 = w1.masked_fill_(~on1, 0.0)
    index = torch.cat([i0.masked_fill(~on0, pad), (i0 + 1).masked_fill_(~on1, pad)])
    return _layout(index, per_tilt), _layout(torch.cat([w0, w1]), per_tilt), pad


def bz_last(block: tuple[slice, slice, slice]) -> int:
    """Flat (z, x) index of the block's last x at its first z (a corner)."""
    return block[2].stop - block[2].start - 1


def _layout(a: torch.Tensor, per_tilt: bool) -> torch.Tensor:
    """(taps, voxels) -> itself, or (voxels, taps) contiguous for ``embedding_bag``."""
    return a if per_tilt else a.T.contiguous()


def _check_cover(lo: torch.Tensor, hi: torch.Tensor, size: int, u0: int, Uc: int) -> None:
    """Raise unless the crop ``u0:u0+Uc`` holds every on-detector tap between ``lo`` and ``hi``.

    ``lo``/``hi``: (corners, n_tilts) tap indices at the block corners (taps are monotone in
    the position, and positions are affine, so the corners bound them).
    """
    a = lo.min(dim=0).values.clamp(0, size - 1)
    b = hi.max(dim=0).values.clamp(0, size - 1)
    hits = (hi.max(dim=0).values >= 0) & (lo.min(dim=0).values < size)
    if bool(torch.any(hits & ((a < u0) | (b >= u0 + Uc)))):
        raise ValueError(
            f"the image crop along x ({u0}:{u0 + Uc}) misses taps "
            f"{int(a[hits].min())}..{int(b[hits].max())}; pass the block's footprint"
        )
