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

1. voxel -> detector positions for the block (float64, :func:`detector_positions`);
2. positions -> gather indices into a table built from the cropped images (+ one zero row that
   every off-detector tap points at);
3. one ``torch.nn.functional.embedding_bag(mode="sum")`` sums each voxel's bag of taps.

The fast path (image row ``v`` sees only volume row ``y``) gathers whole rows of ``by`` values
per (z, x) column; the general path gathers single pixels per voxel, one z slab at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch

from cryoflow.errors import GeometryError
from cryoflow.geometry import TiltGeometry
from cryoflow.kernels._guards import refuse_lazy

Interpolation = Literal["nearest", "linear"]
INTERPOLATIONS = ("nearest", "linear")


# ---------------------------------------------------------------------------- small helpers
#: the kernels' guard against lazy input, under the name the projector kernels import
ensure_eager = refuse_lazy


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


def _check_block(images: np.ndarray, geometry: TiltGeometry, block: Sequence[slice]) -> None:
    if images.ndim != 3:
        raise GeometryError(f"images must be (n_tilts, V, U), got shape {images.shape}")
    if images.shape[0] != geometry.n_tilts:
        raise GeometryError(
            f"images hold {images.shape[0]} tilts but the geometry has {geometry.n_tilts}"
        )
    if len(block) != 3 or any(s.start is None or s.stop is None for s in block):
        raise ValueError(f"block must be three slices with explicit bounds, got {block}")


def _covered(index: np.ndarray, weight: np.ndarray, origin: int, size: int, axis: str) -> None:
    """Raise if a contributing tap lies outside the crop ``origin : origin+size``."""
    used = index[weight > 0]
    if used.size and (used.min() < origin or used.max() >= origin + size):
        raise ValueError(
            f"the image crop along {axis} ({origin}:{origin + size}) misses taps "
            f"{int(used.min())}..{int(used.max())}; pass the block's footprint"
        )


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
    ensure_eager(images, "images")
    images = np.asarray(images)
    parse_interpolation(interpolation)
    _check_block(images, geometry, block)
    work, out_dtype = backproject_dtypes(images.dtype, geometry.n_tilts, interpolation)
    any_rule = images.dtype == np.bool_ and interpolation == "linear"
    with torch_threads(n_threads):
        offset = simple_row_offset(geometry, volume_shape, detector_shape)
        if offset is not None:
            out = _backproject_rows(
                images,
                geometry,
                volume_shape,
                detector_shape,
                block,
                crop_origin,
                offset,
                interpolation,
                work,
                any_rule,
            )
        else:
            out = _backproject_pixels(
                images,
                geometry,
                volume_shape,
                detector_shape,
                block,
                crop_origin,
                interpolation,
                work,
                any_rule,
            )
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
    images: np.ndarray,
    geometry: TiltGeometry,
    volume_shape: tuple[int, int, int],
    detector_shape: tuple[int, int],
    block: tuple[slice, slice, slice],
    crop_origin: tuple[int, int],
    row_offset: int,
    interpolation: str,
    work: torch.dtype,
    any_rule: bool,
) -> np.ndarray:
    """Fast path: gather whole detector rows; returns (bz, by, bx) in the working dtype."""
    n, Vc, Uc = images.shape
    v0, u0 = crop_origin
    V, U = detector_shape
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


def _backproject_pixels(
    images: np.ndarray,
    geometry: TiltGeometry,
    volume_shape: tuple[int, int, int],
    detector_shape: tuple[int, int],
    block: tuple[slice, slice, slice],
    crop_origin: tuple[int, int],
    interpolation: str,
    work: torch.dtype,
    any_rule: bool,
) -> np.ndarray:
    """General path: gather single pixels, one z slab at a time; returns (bz, by, bx)."""
    n, Vc, Uc = images.shape
    v0, u0 = crop_origin
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
            _covered(i, w, v0, Vc, "y")
        for i, w in tu:
            _covered(i, w, u0, Uc, "x")
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
