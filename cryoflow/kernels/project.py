"""Forward projection of one volume block onto a crop of the detector (eager).

Uses exactly the taps of :mod:`cryoflow.kernels.backproject`, scattering instead of gathering:

- ``"sum"``: every voxel adds ``weight * value`` to each of its taps (the exact adjoint of
  ``backproject`` for both interpolations);
- ``"any"``: a pixel is true when a non-zero voxel has a tap with non-zero weight on it
  (the 2D-to-3D paper's binary FP; equals ``sum > 0`` for non-negative volumes);
- ``"max"``: the largest voxel value with a tap on the pixel, ``-inf`` where none falls (the
  per-ray maximum used by the threshold search: ``any(votes > T) == max(votes) > T``).

Partial projections of different blocks combine by ``+`` (sum), ``|`` (any) or ``max``.
"""

from __future__ import annotations

import numpy as np
import torch

from cryoflow.errors import GeometryError
from cryoflow.geometry import TiltGeometry
from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.taps import (
    BlockCall,
    axis_taps,
    detector_positions,
    parse_interpolation,
    row_taps,
    simple_row_offset,
    torch_threads,
)

MODES = ("any", "sum", "max")


def parse_mode(mode: str) -> str:
    """Return ``mode`` if it is a projection mode, else raise ``ValueError`` naming them."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def project_dtypes(dtype: np.dtype, mode: str, interpolation: str) -> tuple[torch.dtype, np.dtype]:
    """(working torch dtype, output NumPy dtype) of a projection of a ``dtype`` volume.

    any -> bool; max -> float32 (float64 for wide integers and float64); sum -> int32 counts
    for bool / 8-bit integers and int64 for wider integers with ``nearest``, else float32.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise TypeError(f"volume must be bool, integer or float, got dtype {dtype}")
    if mode == "any":
        return torch.float32, np.dtype(bool)
    if mode == "max":
        wide = dtype.itemsize > 2 and not (dtype.kind == "f" and dtype.itemsize == 4)
        return (
            (torch.float64, np.dtype(np.float64)) if wide else (torch.float32, np.dtype(np.float32))
        )
    if dtype.kind in "biu" and interpolation == "nearest":
        if dtype.itemsize == 1:
            return torch.float32, np.dtype(np.int32)
        return torch.float64, np.dtype(np.int64)
    return torch.float32, np.dtype(np.float32)


def fill_value(mode: str) -> float:
    """Value of a pixel no voxel falls on: 0 (sum, any) or -inf (max)."""
    return float("-inf") if mode == "max" else 0.0


def project_block(
    volume: np.ndarray,
    geometry: TiltGeometry,
    volume_shape: tuple[int, int, int],
    detector_shape: tuple[int, int],
    block: tuple[slice, slice, slice],
    crop: tuple[int, int, int, int] | None = None,
    *,
    mode: str = "sum",
    interpolation: str = "nearest",
    n_threads: int | None = None,
) -> np.ndarray:
    """Project the voxels of one block onto a detector crop.

    Parameters
    ----------
    volume : ndarray of shape (bz, by, bx)
        The voxels of ``block`` of a ``volume_shape`` volume.
    geometry : TiltGeometry
    volume_shape : (Z, Y, X)
    detector_shape : (V, U)
    block : (slice, slice, slice)
        Explicit bounds of ``volume`` in the whole volume.
    crop : (v0, u0, Vc, Uc), optional
        Detector region to return; must hold the block's footprint. Default: whole detector.
    mode : {"sum", "any", "max"}
    interpolation : {"nearest", "linear"}
    n_threads : int, optional
        torch intra-op threads for this call.

    Returns
    -------
    ndarray of shape (n_tilts, Vc, Uc)
        dtype as :func:`project_dtypes`; pixels no voxel falls on hold :func:`fill_value`.
    """
    refuse_lazy(volume, "volume")
    volume = np.asarray(volume)
    parse_mode(mode)
    parse_interpolation(interpolation)
    shape = tuple(s.stop - s.start for s in block)
    if volume.ndim != 3 or volume.shape != shape:
        raise GeometryError(f"volume block must have shape {shape}, got {volume.shape}")
    V, U = detector_shape
    v0, u0, Vc, Uc = crop if crop is not None else (0, 0, V, U)
    work, out_dtype = project_dtypes(volume.dtype, mode, interpolation)
    call = BlockCall(
        geometry, volume_shape, detector_shape, block, (v0, u0, Vc, Uc), interpolation, work
    )
    with torch_threads(n_threads):
        offset = simple_row_offset(geometry, volume_shape, detector_shape)
        if offset is not None:
            out = _project_rows(volume, call, offset, mode)
        else:
            out = _project_pixels(volume, call, mode)
    if mode == "any":
        return out > 0
    return out.astype(out_dtype, copy=False)


def _source(volume: torch.Tensor, mode: str, work: torch.dtype) -> torch.Tensor:
    """Values scattered by ``mode``: indicators for any, the voxels otherwise."""
    if mode == "any":
        return (volume != 0).to(work)
    return volume.to(work)


def _scatter(out: torch.Tensor, index: torch.Tensor, src: torch.Tensor, mode: str) -> None:
    """``out[index[i]] (+)= src[i]`` along dim 0: add for sum/any, max for max."""
    if mode == "max":
        idx = index.to(torch.int64)[:, None].expand(-1, src.shape[1])
        out.scatter_reduce_(0, idx, src, "amax")
    else:
        out.index_add_(0, index, src)


def _project_rows(volume: np.ndarray, call: BlockCall, row_offset: int, mode: str) -> np.ndarray:
    """Fast path: scatter whole (z, x) columns of ``by`` rows; returns (n, Vc, Uc)."""
    geometry, volume_shape, detector_shape, block = (
        call.geometry, call.volume_shape, call.detector_shape, call.block,
    )  # fmt: skip
    interpolation, work = call.interpolation, call.work
    n = geometry.n_tilts
    v0, u0, Vc, Uc = call.crop
    V, U = detector_shape
    bz, by, bx = volume.shape
    # 1. taps per tilt, (K*n, bz*bx); weight-0 and off-detector taps point at the pad row
    index, weight, pad = row_taps(
        geometry, volume_shape, U, block, (u0, Uc), interpolation, per_tilt=True
    )
    # 2. scatter the (z, x) columns, each a row of by values, tilt by tilt
    src = _source(torch.from_numpy(volume), mode, work).permute(0, 2, 1).reshape(bz * bx, by)
    table = torch.full((pad + 1, by), fill_value(mode), dtype=work)
    for k in range(index.shape[0]):
        if weight is not None and mode == "sum":
            _scatter(table, index[k], src * weight[k, :, None].to(work), mode)
        else:
            _scatter(table, index[k], src, mode)
    # 3. table (n, Uc, by) -> detector rows of the block inside the crop
    out = np.full((n, Vc, Uc), fill_value(mode), dtype=torch.empty(0, dtype=work).numpy().dtype)
    r0 = max(block[1].start + row_offset, 0)
    r1 = min(block[1].stop + row_offset, V)
    if r1 > r0:
        if r0 < v0 or r1 > v0 + Vc:
            raise ValueError(
                f"the detector crop along y ({v0}:{v0 + Vc}) misses rows {r0}..{r1 - 1}"
            )
        b0 = r0 - row_offset - block[1].start
        rows = table[:-1].view(n, Uc, by)[:, :, b0 : b0 + (r1 - r0)].permute(0, 2, 1)
        out[:, r0 - v0 : r1 - v0] = rows.numpy()
    return out


def _project_pixels(volume: np.ndarray, call: BlockCall, mode: str) -> np.ndarray:
    """General path: scatter single voxels, one z slab at a time; returns (n, Vc, Uc)."""
    geometry, volume_shape, block = call.geometry, call.volume_shape, call.block
    detector_shape = call.detector_shape
    interpolation, work = call.interpolation, call.work
    n = geometry.n_tilts
    v0, u0, Vc, Uc = call.crop
    V, U = detector_shape
    pad = n * Vc * Uc
    table = torch.full((pad + 1, 1), fill_value(mode), dtype=work)
    base = (np.arange(n, dtype=np.int64) * (Vc * Uc))[:, None]
    for k in range(volume.shape[0]):
        z = block[0].start + k
        pv, pu = detector_positions(
            geometry, volume_shape, detector_shape, (slice(z, z + 1), block[1], block[2])
        )
        src = _source(torch.from_numpy(np.ascontiguousarray(volume[k]).reshape(1, -1)), mode, work)
        for iv, wv in axis_taps(pv.reshape(n, -1), V, interpolation):
            for iu, wu in axis_taps(pu.reshape(n, -1), U, interpolation):
                w = wv * wu
                on = w > 0
                inside = (iv >= v0) & (iv < v0 + Vc) & (iu >= u0) & (iu < u0 + Uc)
                if np.any(on & ~inside):
                    raise ValueError(
                        f"the detector crop {call.crop} (v0, u0, Vc, Uc) misses taps of block {block}"
                    )
                flat = np.where(on, (iv - v0) * Uc + (iu - u0) + base, pad)
                values = src.expand(n, -1)
                if mode == "sum" and interpolation == "linear":
                    values = values * torch.from_numpy(w).to(work)
                _scatter(
                    table,
                    torch.from_numpy(flat.reshape(-1)),
                    values.reshape(-1, 1).contiguous(),
                    mode,
                )
    return table[:-1].view(n, Vc, Uc).numpy()


# ---------------------------------------------------------------------------- reference
def project_reference(
    volume: np.ndarray,
    geometry: TiltGeometry,
    detector_shape: tuple[int, int],
    *,
    mode: str = "sum",
    interpolation: str = "nearest",
) -> np.ndarray:
    """Plain NumPy statement of the rule (slow, obvious), used by the tests.

    Parameters
    ----------
    volume : ndarray of shape (Z, Y, X)
    geometry : TiltGeometry
    detector_shape : (V, U)
    mode : {"sum", "any", "max"}
    interpolation : {"nearest", "linear"}

    Returns
    -------
    ndarray of shape (n_tilts, V, U)
    """
    volume = np.asarray(volume)
    parse_mode(mode)
    _, out_dtype = project_dtypes(volume.dtype, mode, interpolation)
    V, U = detector_shape
    n = geometry.n_tilts
    out = np.full((n, V, U), fill_value(mode), dtype=np.float64)
    whole = tuple(slice(0, s) for s in volume.shape)
    pv, pu = detector_positions(geometry, volume.shape, detector_shape, whole)  # type: ignore[arg-type]
    values = volume.astype(np.float64)
    for t in range(n):
        for iv, wv in axis_taps(pv[t], V, interpolation):
            for iu, wu in axis_taps(pu[t], U, interpolation):
                w = wv * wu
                on = w > 0
                if mode == "sum":
                    np.add.at(out[t], (iv[on], iu[on]), w[on] * values[on])
                elif mode == "any":
                    np.add.at(out[t], (iv[on], iu[on]), (values[on] != 0).astype(float))
                else:
                    np.maximum.at(out[t], (iv[on], iu[on]), values[on])
    if mode == "any":
        return out > 0
    if out_dtype.kind in "iu":
        return np.rint(out).astype(out_dtype)
    return out.astype(out_dtype)
