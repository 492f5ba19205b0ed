"""The paper's Algorithm 2 as a lazy Dask graph: edge maps per tilt, refined sums per block.

``edge_maps`` runs the 2D detector tilt by tilt (one task per tilt: the threshold needs the
whole image's peaks). ``edge_sums`` splits the volume into ``(z, y, x)`` blocks; each block's
task reads only the detector window its voxels project to (its footprint, all tilts), builds
the per-tilt back-projections ``B(h)`` of that block, refines them and sums them
(:func:`cryoflow.kernels.edges.edge_sums`). Refinement is voxel-wise across tilts, so blocks
are independent and need no halo. Peak memory per task is about ``n_tilts`` bytes per voxel of
the block.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from cryoflow.geometry import BlockFrame, TiltGeometry
from cryoflow.graph.backproject import footprint_blocks
from cryoflow.graph.labels import blocks_to_array
from cryoflow.kernels import edges as k

__all__ = ["edge_maps", "edge_sums"]


def edge_maps(
    images: Any,
    *,
    sigma1: float = 1.0,
    sigma2: float = 2.0,
    alpha: float = 0.5,
    denoise: k.Denoise = "none",
    denoise_size: float = 1.0,
    name: str = "edges2d",
) -> da.Array:
    """Binary edge maps of a tilt series, one task per tilt (steps 1-5 of the kernel module).

    Parameters
    ----------
    images : array of shape (n_tilts, Y, U) (NumPy, Dask or xarray)

    Returns
    -------
    dask array of shape (n_tilts, Y, U), bool, chunks (1, Y, U)
    """
    k.dog(np.zeros((1, 3, 3), np.float32), sigma1, sigma2, denoise=denoise)  # validate early
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    arr = da.asarray(getattr(images, "data", images))
    if arr.ndim != 3:
        raise ValueError(f"images must have shape (n_tilts, Y, U), got {arr.shape}")
    arr = arr.rechunk({0: 1, 1: -1, 2: -1})
    params = dict(
        sigma1=sigma1, sigma2=sigma2, alpha=alpha, denoise=denoise, denoise_size=denoise_size
    )
    return arr.map_blocks(
        k.detect_edges,
        **params,
        dtype=bool,
        meta=np.zeros((0, 0, 0), bool),
        name=f"{name}-{tokenize(arr, params)}",
    )


def edge_sums(
    edges: Any,
    geometry: TiltGeometry,
    volume_shape: tuple[int, int, int],
    *,
    chunks: int | tuple[int, int, int] = 64,
    iterations: int = 1,
    window: int = 1,
    min_support: int = 2,
    name: str = "edges3d",
) -> da.Array:
    """Refined per-voxel sums ``S = sum_h B(h)`` of per-tilt edge back-projections, lazily.

    Parameters
    ----------
    edges : array of shape (n_tilts, V, U), bool (NumPy, Dask or xarray)
    geometry : TiltGeometry with n_tilts projections
    volume_shape : (Z, Y, X)
    chunks : int or (cz, cy, cx)
        Output block shape.
    iterations, window, min_support
        Refinement ``m``, ``k``, ``s`` (see :func:`cryoflow.kernels.edges.refine`).

    Returns
    -------
    dask array of shape (Z, Y, X), uint16
        The paper's ``E3D`` is ``edge_sums(...) > T``.
    """
    arr = da.asarray(getattr(edges, "data", edges)).astype(bool)
    if arr.ndim != 3 or arr.shape[0] != geometry.n_tilts:
        raise ValueError(
            f"edges must have shape (n_tilts={geometry.n_tilts}, V, U), got {arr.shape}"
        )
    refinement = k.Refinement(iterations, window, min_support)  # validates early
    vol = (int(volume_shape[0]), int(volume_shape[1]), int(volume_shape[2]))
    det = (int(arr.shape[1]), int(arr.shape[2]))
    cz, cy, cx = (chunks,) * 3 if isinstance(chunks, int) else tuple(chunks)
    out_chunks = da.core.normalize_chunks((cz, cy, cx), vol)
    tok = tokenize(arr, geometry, vol, (cz, cy, cx), iterations, window, min_support)
    out_name = f"{name}-{tok}"
    blocks = {}
    for idx, block, crop in footprint_blocks(geometry, vol, det, out_chunks):
        if crop is None:  # the block misses every detector
            blocks[idx] = dask.delayed(np.zeros, pure=True)(
                tuple(s.stop - s.start for s in block), np.uint16, dask_key_name=(out_name, *idx)
            )
            continue
        (v0, v1), (u0, u1) = crop
        blocks[idx] = dask.delayed(k.edge_sums, pure=True)(
            arr[:, v0:v1, u0:u1],
            BlockFrame(geometry, vol, det, block, (v0, u0)),
            refinement,
            dask_key_name=(out_name, *idx),
        )
    return blocks_to_array(out_name, blocks, out_chunks, np.uint16)
