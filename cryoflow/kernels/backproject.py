"""Back-projection of one volume block from the footprint of a tilt series (eager).

The rule (CONTRACT.md): voxel ``(z, y, x)`` falls on detector position

    pv = ((zc*M[t,0,0] + yc*M[t,0,1]) + xc*M[t,0,2]) + dv[t] + (V-1)/2
    pu = ((zc*M[t,1,0] + yc*M[t,1,1]) + xc*M[t,1,2]) + du[t] + (U-1)/2

(float64, in exactly this order, so every projector rounds identically). ``nearest`` reads
pixel ``(rint(pv), rint(pu))``; ``linear`` reads the bilinear taps ``floor(p)``, ``floor(p)+1``
with weights ``1-w`` and ``w`` per axis. Taps off the detector, or with weight 0, contribute
nothing. For the single-axis case ``pv = y`` exactly and the rule is the contract's
``u = rint(xc*cos(t) + zc*sin(t) + (U-1)/2)``.

Value rules: float images give a float32 sum; integer images give integer sums; boolean images
give integer vote counts where, per tilt, *any* true tap sets the voxel (with ``nearest`` that is
the one pixel).

Steps of :func:`backproject_block`:

1. voxel -> detector positions for the block (float64,
   :func:`cryoflow.kernels.taps.detector_positions`);
2. positions -> gather indices into a table built from the cropped images (+ one zero row that
   every off-detector tap points at);
3. one ``torch.nn.functional.embedding_bag(mode="sum")`` sums each voxel's bag of taps.

The fast path (image row ``v`` sees only volume row ``y``) gathers whole rows of ``by`` values
per (z, x) column; the general path gathers single pixels per voxel, one z slab at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cryoflow.errors import GeometryError
from cryoflow.geometry import TiltGeometry
from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.taps import (  # noqa: F401 - the rule's names, also imported from here
    INTERPOLATIONS,
    BlockCall,
    Interpolation,
    axis_taps,
    covered,
    detector_positions,
    parse_interpolation,
    row_taps,
    simple_row_offset,
    torch_threads,
)


# ---------------------------------------------------------------------------- small helpers
def backproject_dtypes(
    dtype: np.dtype, n_tilts: int, interpolation: str
) -> tuple[torch.dtype, np.dtype]:
    """(working torch dtype, output NumPy dtype) of a back-projection of ``dtype`` images.

    bool -> int16 vote counts (int32 from 32768 tilts); int8/uint8 -> int32; wider integers ->
    int64 (exact below 2**53); float -> float32. Integer (non-bool) images with ``linear``
    interpolation give a float32 weighted sum.
    """
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return torch.float32, np.dtype(np.int16 if n_tilts < 2**15 else np.int32)
    if dtype.kind in "iu" and interpolation == "nearest":
        if dtype.itemsize == 1:
            return torch.float32, np.dtype(np.int32)
        return torch.float64, np.dtype(np.int64)
    if dtype.kind in "iuf":
        return torch.float32, np.dtype(np.float32)
    raise TypeError(f"images must be bool, integer or float, got dtype {dtype}")


def _check_block(images: np.ndarray, geometry: TiltGeometry, block: Sequence[slice]) -> None:
    if images.ndim != 3:
        raise GeometryError(f"images must be (n_tilts, V, U), got shape {images.shape}")
    if images.shape[0] != geometry.n_tilts:
        raise GeometryError(
            f"images hold {images.shape[0]} tilts but the geometry has {geometry.n_tilts}"
        )
    if len(block) != 3 or any(s.start is None or s.stop is None for s in block):
        raise ValueError(f"block must be three slices with explicit bounds, got {block}")


# ---------------------------------------------------------------------------- kernel
def backproject_block(
    images: np.ndarray,
    geometry: TiltGeometry,
    volume_shape: tuple[int, int, int],
    detector_shape: tuple[int, int],
    block: tuple[slice, slice, slice],
    crop_origin: tuple[int, int] = (0, 0),
    *,
    interpolation: str = "nearest",
    n_threads: int | None = None,
) -> np.ndarray:
    """Back-project a crop of the tilt series into one volume block.

    Parameters
    ----------
    images : ndarray of shape (n_tilts, Vc, Uc)
        Detector rows ``v0:v0+Vc`` and columns ``u0:u0+Uc`` of every tilt image, where
        ``(v0, u0) = crop_origin``; must cover the block's footprint (all of it is fine).
    geometry : TiltGeometry
        n_tilts projections.
    volume_shape : (Z, Y, X)
        Shape of the whole volume (sets the centre).
    detector_shape : (V, U)
        Shape of a whole tilt image (sets the centre and the edges).
    block : (slice, slice, slice)
        The voxels to compute, with explicit bounds, in (z, y, x).
    crop_origin : (v0, u0)
        Detector pixel of ``images[:, 0, 0]``.
    interpolation : {"nearest", "linear"}
    n_threads : int, optional
        torch intra-op threads for this call (the caller's budget); ``None`` leaves it alone.

    Returns
    -------
    ndarray of shape (bz, by, bx)
        float32 sums, or integer vote counts / sums (see :func:`backproject_dtypes`).
    """
    refuse_lazy(images, "images")
    images = np.asarray(images)
    parse_interpolation(interpolation)
    _check_block(images, geometry, block)
    work, out_dtype = backproject_dtypes(images.dtype, geometry.n_tilts, interpolation)
    any_rule = images.dtype == np.bool_ and interpolation == "linear"
    crop = (*crop_origin, *images.shape[1:])
    call = BlockCall(geometry, volume_shape, detector_shape, block, crop, interpolation, work)
    with torch_threads(n_threads):
        offset = simple_row_offset(geometry, volume_shape, detector_shape)
        if offset is not None:
            out = _backproject_rows(images, call, offset, any_rule)
        else:
            out = _backproject_pixels(images, call, any_rule)
    return out.astype(out_dtype, copy=False)  # integer sums are exact in ``work``


def _bag(
    taps: list[tuple[np.ndarray, np.ndarray]], tilt_stride: int, pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-tilt taps (each (n_tilts, N)) into embedding_bag input (N, n_tilts*K)."""
    idx, wts = [], []
    n_tilts = taps[0][0].shape[0]
    base = (np.arange(n_tilts, dtype=np.int64) * tilt_stride)[:, None]
    for i, w in taps:
        idx.append(np.where(w > 0, i + base, pad))
        wts.append(w)
    index = np.concatenate(idx, axis=0).T  # (N, n_tilts*K)
    weight = np.concatenate(wts, axis=0).T
    return torch.from_numpy(np.ascontiguousarray(index)), torch.from_numpy(
        np.ascontiguousarray(weight)
    )


def _any_taps(
    taps: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Linear taps of one axis -> one tap ("any true tap") and its OR-table variant.

    Variant 1 (both taps contribute) reads ``pixel[i] | pixel[i+1]``; variant 0 one pixel.
    """
    (i0, w0), (i1, w1) = taps
    both = (w0 > 0) & (w1 > 0)
    index = np.where(w0 > 0, i0, i1)
    return [(index, ((w0 > 0) | (w1 > 0)).astype(np.float64))], both.astype(np.int64)


def _or_pairs(table: np.ndarray, axis: int) -> np.ndarray:
    """``table[..., i] | table[..., i+1]`` along ``axis`` (last entry: itself)."""
    nxt = np.concatenate(
        [
            np.take(table, np.arange(1, table.shape[axis]), axis=axis),
            np.zeros_like(np.take(table, [0], axis=axis)),
        ],
        axis=axis,
    )
    return table | nxt


def row_table(
    images: np.ndarray,
    rows: tuple[int, int],
    block_rows: tuple[int, int],
    by: int,
    work: torch.dtype,
    *,
    any_rule: bool = False,
) -> torch.Tensor:
    """Gather table of the fast path, shape (K*n*Uc + 1, by), last row zero.

    ``images[:, rows[0]:rows[1]]`` (n, ., Uc) fill block rows ``block_rows[0]:block_rows[1]``
    of ``by``; row ``t*Uc + u`` holds column ``u`` of tilt ``t``; with ``any_rule`` a second
    copy holds ``column u | column u+1``.
    """
    n, _, Uc = images.shape
    k = 2 if any_rule else 1
    table = torch.zeros(k * n * Uc + 1, by, dtype=work)
    view = table[:-1].view(k, n, Uc, by)
    src = torch.from_numpy(np.ascontiguousarray(images[:, rows[0] : rows[1]])).transpose(1, 2)
    view[0, :, :, block_rows[0] : block_rows[1]] = src
    if any_rule:
        pair = src.clone()
        pair[:, :-1] |= src[:, 1:]
        view[1, :, :, block_rows[0] : block_rows[1]] = pair
    return table


def _backproject_rows(
    images: np.ndarray, call: BlockCall, row_offset: int, any_rule: bool
) -> np.ndarray:
    """Fast path: gather whole detector rows; returns (bz, by, bx) in the working dtype."""
    geometry, volume_shape, block = call.geometry, call.volume_shape, call.block
    interpolation, work = call.interpolation, call.work
    v0, u0, Vc, Uc = call.crop
    V, U = call.detector_shape
    bz, by, bx = (s.stop - s.start for s in block)
    # 1. table rows <- block rows that land on the detector
    r0 = max(block[1].start + row_offset, 0)
    r1 = min(block[1].stop + row_offset, V)
    if r1 > r0 and (r0 < v0 or r1 > v0 + Vc):
        raise ValueError(
            f"the image crop along y ({v0}:{v0 + Vc}) misses rows {r0}..{r1 - 1}; "
            "pass the block's footprint"
        )
    b0 = r0 - row_offset - block[1].start
    table = row_table(
        images,
        (r0 - v0, max(r1, r0) - v0),
        (b0, b0 + max(r1 - r0, 0)),
        by,
        work,
        any_rule=any_rule,
    )
    # 2. one bag of taps per (z, x) column
    index, weight, _ = row_taps(
        geometry, volume_shape, U, block, (u0, Uc), interpolation, any_rule=any_rule
    )
    out = torch.nn.functional.embedding_bag(
        index,
        table,
        mode="sum",
        per_sample_weights=None if weight is None else weight.to(work),
    )  # (bz*bx, by)
    return out.view(bz, bx, by).permute(0, 2, 1).contiguous().numpy()


def _backproject_pixels(images: np.ndarray, call: BlockCall, any_rule: bool) -> np.ndarray:
    """General path: gather single pixels, one z slab at a time; returns (bz, by, bx)."""
    geometry, volume_shape, detector_shape, block = (
        call.geometry, call.volume_shape, call.detector_shape, call.block,
    )  # fmt: skip
    interpolation, work = call.interpolation, call.work
    n = images.shape[0]
    v0, u0, Vc, Uc = call.crop
    V, U = detector_shape
    bz, by, bx = (s.stop - s.start for s in block)
    table = images
    if any_rule:  # variants: pixel, u-pair, v-pair, 2x2 quad
        pair_u = _or_pairs(images, axis=2)
        table = np.stack([images, pair_u, _or_pairs(images, axis=1), _or_pairs(pair_u, axis=1)])
    pad = table.size
    flat = torch.from_numpy(np.concatenate([table.reshape(-1), np.zeros(1, table.dtype)]))
    weight_table = flat.to(work)[:, None]
    out = np.empty((bz, by, bx), dtype=np.float64 if work == torch.float64 else np.float32)
    for k in range(bz):
        z = block[0].start + k
        pv, pu = detector_positions(
            geometry, volume_shape, detector_shape, (slice(z, z + 1), block[1], block[2])
        )
        tv = axis_taps(pv.reshape(n, -1), V, interpolation)
        tu = axis_taps(pu.reshape(n, -1), U, interpolation)
        for i, w in tv:
            covered(i, w, v0, Vc, "y")
        for i, w in tu:
            covered(i, w, u0, Uc, "x")
        variant: np.ndarray | int = 0
        if any_rule:
            tv, var_v = _any_taps(tv)
            tu, var_u = _any_taps(tu)
            variant = (2 * var_v + var_u) * (n * Vc * Uc)
        taps = [((iv - v0) * Uc + (iu - u0) + variant, wv * wu) for iv, wv in tv for iu, wu in tu]
        index, tap_w = _bag(taps, Vc * Uc, pad)
        use_w = interpolation == "linear" and not any_rule
        res = torch.nn.functional.embedding_bag(
            index,
            weight_table,
            mode="sum",
            per_sample_weights=tap_w.to(work) if use_w else None,
        )
        out[k] = res.numpy().reshape(by, bx)
    return out


# ---------------------------------------------------------------------------- reference
def backproject_reference(
    images: np.ndarray,
    geometry: TiltGeometry,
    volume_shape: tuple[int, int, int],
    *,
    interpolation: str = "nearest",
) -> np.ndarray:
    """Plain NumPy statement of the rule (slow, obvious), used by the tests.

    Parameters
    ----------
    images : ndarray of shape (n_tilts, V, U)
    geometry : TiltGeometry
    volume_shape : (Z, Y, X)
    interpolation : {"nearest", "linear"}

    Returns
    -------
    ndarray of shape (Z, Y, X), dtype as :func:`backproject_dtypes`.
    """
    images = np.asarray(images)
    parse_interpolation(interpolation)
    n, V, U = images.shape
    _, out_dtype = backproject_dtypes(images.dtype, n, interpolation)
    Z, Y, X = volume_shape
    out = np.zeros(volume_shape, dtype=np.float64)
    whole = (slice(0, Z), slice(0, Y), slice(0, X))
    pv, pu = detector_positions(geometry, volume_shape, (V, U), whole)
    for t in range(n):
        hit = np.zeros(volume_shape, dtype=bool)
        for iv, wv in axis_taps(pv[t], V, interpolation):
            for iu, wu in axis_taps(pu[t], U, interpolation):
                w = wv * wu
                on = w > 0
                value = images[t, iv[on], iu[on]]
                if images.dtype == np.bool_:
                    hit[on] |= value
                elif interpolation == "nearest":
                    out[on] += value
                else:
                    out[on] += w[on] * value
        out += hit
    if out_dtype.kind in "iu":
        return np.rint(out).astype(out_dtype)
    return out.astype(out_dtype)
