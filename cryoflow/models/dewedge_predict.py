"""Eager application of a missing-wedge network: whole volumes, single tiles, blended tilings.

Every path does the same steps, so they agree:

1. standardise: ``(v - loc) / scale`` (the tomogram's own mean and std, as in training);
2. pad the far end of every axis with zeros up to a multiple of ``bin * 2**depth``;
3. bin by ``bin`` (mean of ``bin**3`` voxels; the network was trained at that sampling), run
   the network (no gradients, on ``device``) and upsample trilinearly back (voxel centres
   aligned, ``align_corners=False``): the output holds no frequencies above ``1 / (2 bin)``;
4. crop and undo the standardisation: ``out * scale + loc``.

:func:`apply_tiled` is the in-memory twin of :func:`cryoflow.graph.dewedge.dewedge_lazy`: the
same tiles (:class:`cryoflow.geometry.tiles.TileGrid`), the same weights, summed in C order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NotRequired, TypedDict, Unpack

import numpy as np
import torch
from torch import nn

from cryoflow.errors import GeometryError
from cryoflow.geometry.tiles import TileGrid
from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.backproject import torch_threads


class ApplyOptions(TypedDict):
    """How :func:`apply_network` runs, passed on unchanged by :func:`predict_tile` and
    :func:`apply_tiled`: ``loc``/``scale`` the standardisation, ``bin_factor`` the sampling
    the network was trained at, ``device`` (None: the network's), ``n_threads`` torch CPU
    threads for the call (None: unchanged)."""

    loc: float
    scale: float
    bin_factor: NotRequired[int]
    device: NotRequired[str | torch.device | None]
    n_threads: NotRequired[int | None]


def _multiple(model: nn.Module) -> int:
    return int(getattr(model, "multiple", 1))


def alignment(model: nn.Module, bin_factor: int) -> int:
    """Voxel multiple that tile starts and padded sizes must keep (``bin * 2**depth``)."""
    return int(bin_factor) * _multiple(model)


def apply_network(
    model: nn.Module,
    volume: np.ndarray,
    *,
    loc: float,
    scale: float,
    bin_factor: int = 1,
    device: str | torch.device | None = None,
    n_threads: int | None = None,
) -> np.ndarray:
    """ndarray of float32, shape (Z, Y, X): the network on one whole ``(Z, Y, X)`` volume.

    ``n_threads``: torch CPU threads for the call (None: unchanged; 1 inside a Dask task).
    """
    refuse_lazy(volume, "apply_network")
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise GeometryError(f"apply_network expects a (Z, Y, X) volume, got shape {vol.shape}")
    if device is None:
        device = next(model.parameters()).device
    b = int(bin_factor)
    m = alignment(model, b)
    # 1. standardise, 2. pad the far ends to a multiple of bin * 2**depth
    x = torch.from_numpy((vol - np.float32(loc)) / np.float32(scale))
    pad = [(-n) % m for n in vol.shape]
    x = nn.functional.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))[None, None].to(device)
    # 3. bin, run, upsample
    with torch_threads(n_threads), torch.inference_mode():
        if b > 1:
            x = nn.functional.avg_pool3d(x, b)
        out = model(x)
        if b > 1:
            out = nn.functional.interpolate(
                out, scale_factor=b, mode="trilinear", align_corners=False
            )
        out = out[0, 0]
    # 4. crop, undo the standardisation
    z, y, xx = vol.shape
    res = out[:z, :y, :xx].float().cpu().numpy()
    return (res * np.float32(scale) + np.float32(loc)).astype(np.float32)


def predict_tile(
    model: nn.Module,
    footprint: np.ndarray,
    grid: TileGrid,
    index: Sequence[int],
    **options: Unpack[ApplyOptions],
) -> np.ndarray:
    """ndarray of float32 with the shape of ``grid.region(index)``: the weighted contribution.

    ``footprint`` holds the voxels of ``grid.footprint(index)``; ``options`` are
    :func:`apply_network`'s (:class:`ApplyOptions`).
    """
    fp = grid.footprint(index)
    want = tuple(s.stop - s.start for s in fp)
    if tuple(np.shape(footprint)) != want:
        raise GeometryError(
            f"tile {tuple(index)} needs a footprint of {want}, got {np.shape(footprint)}"
        )
    out = apply_network(model, footprint, **options)
    region = grid.region(index)
    crop = tuple(
        slice(r.start - f.start, r.stop - f.start) for r, f in zip(region, fp, strict=True)
    )
    return out[crop] * grid.weights(index)


def apply_tiled(
    model: nn.Module, volume: np.ndarray, grid: TileGrid, **options: Unpack[ApplyOptions]
) -> np.ndarray:
    """ndarray of float32, shape (Z, Y, X): the network over ``grid``'s tiles, seams blended.

    ``grid.block`` and ``grid.margin`` should be multiples of :func:`alignment` (else tile
    results differ from the whole-volume result beyond blending). ``options`` are
    :func:`apply_network`'s (:class:`ApplyOptions`).
    """
    refuse_lazy(volume, "apply_tiled")
    vol = np.asarray(volume, dtype=np.float32)
    if vol.shape != grid.shape:
        raise GeometryError(f"volume shape {vol.shape} differs from the tile grid's {grid.shape}")
    out = np.zeros(vol.shape, dtype=np.float32)
    for index in grid.indices():
        out[grid.region(index)] += predict_tile(
            model, vol[grid.footprint(index)], grid, index, **options
        )
    return out
