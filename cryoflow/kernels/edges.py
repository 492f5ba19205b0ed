"""The paper's Algorithm 2 (edge detection) as eager kernels on one chunk.

Per tilt image (2D):

1. optional denoising: ``"gaussian"`` (sigma ``denoise_size``) or ``"median"`` (window
   ``denoise_size``), or ``"none"``;
2. difference of Gaussians ``D = G(sigma1) * I - G(sigma2) * I`` with ``sigma1 < sigma2``
   (bright thin structures give positive ``D``; for dark-on-bright data pass ``-I``);
3. peaks: pixels of ``D`` equal to the maximum of their 3x3 neighbourhood with ``D > 0``;
4. the paper's threshold from the minimum and maximum peak values,
   ``T = min(peaks) + alpha * (max(peaks) - min(peaks))`` per tilt;
5. the binary edge map ``E = D >= T`` (and ``D > 0``); a tilt without peaks has no edges.

Per volume block (3D), from the edge maps:

6. per-tilt binary back-projections ``B(h)`` of the block (the contract's nearest-neighbour
   rule, :func:`tilt_backprojections`);
7. ``m`` iterations of refinement (:func:`refine`): tilts are ordered by angle (within one
   axis of a dual-axis series) and, all at once per iteration,
   ``B(h) <- B(h) AND (#{j : 0 < |rank(j) - rank(h)| <= k, B(j)} >= s)``.
   Tilts at the ends of a series (fewer than ``s`` neighbours) need all the neighbours they
   have. With the defaults ``k = 1, s = 2`` this is ``B(h) AND B(h-1) AND B(h+1)``: each
   iteration trims every run of consecutive tilts whose lines cover a voxel by one tilt at
   both ends, so after ``m`` iterations a voxel keeps only runs longer than ``2m``. A line
   drawn through a voxel far from the structure is covered by few consecutive tilts, one near
   the structure's surface by many, so the refinement confines each tilt's line to the
   neighbourhood of the surface it touched (the paper's "limit the line's impact region").
   ``k = 1, s = 1`` gives the looser ``B(h) AND (B(h-1) OR B(h+1))``, idempotent after one
   iteration;
8. the vote sum ``S = sum_h B(h)``; the paper's final edge volume is ``E3D = S > T``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from cryoflow.geometry import BlockFrame, TiltGeometry
from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.backproject import backproject_block

__all__ = [
    "PAPER",
    "Refinement",
    "detect_edges",
    "dog",
    "edge_sums",
    "peak_threshold",
    "refine",
    "tilt_backprojections",
    "tilt_order",
]

Denoise = Literal["none", "gaussian", "median"]


def dog(
    images: np.ndarray,
    sigma1: float = 1.0,
    sigma2: float = 2.0,
    *,
    denoise: Denoise = "none",
    denoise_size: float = 1.0,
) -> np.ndarray:
    """Difference of Gaussians of each tilt image (steps 1-2).

    Parameters
    ----------
    images : ndarray of shape (n_tilts, Y, U)
    sigma1, sigma2 : float
        Gaussian widths in pixels, ``0 <= sigma1 < sigma2``.
    denoise : {"none", "gaussian", "median"}
    denoise_size : float
        Gaussian sigma or median window (rounded up to an odd integer) in pixels.

    Returns
    -------
    ndarray of shape (n_tilts, Y, U), float32
    """
    refuse_lazy(images, "dog")
    if not 0 <= sigma1 < sigma2:
        raise ValueError(f"need 0 <= sigma1 < sigma2, got sigma1={sigma1}, sigma2={sigma2}")
    img = np.asarray(images, dtype=np.float32)
    if img.ndim != 3:
        raise ValueError(f"images must have shape (n_tilts, Y, U), got {img.shape}")
    if denoise == "gaussian":
        img = ndimage.gaussian_filter(img, (0, denoise_size, denoise_size))
    elif denoise == "median":
        w = int(np.ceil(denoise_size)) | 1
        img = ndimage.median_filter(img, size=(1, w, w))
    elif denoise != "none":
        raise ValueError(f"denoise must be 'none', 'gaussian' or 'median', got {denoise!r}")
    g1 = ndimage.gaussian_filter(img, (0, sigma1, sigma1)) if sigma1 > 0 else img
    g2 = ndimage.gaussian_filter(img, (0, sigma2, sigma2))
    return (g1 - g2).astype(np.float32, copy=False)


def peak_threshold(response: np.ndarray, alpha: float = 0.5) -> float:
    """The paper's threshold from one tilt's DoG peaks (steps 3-4).

    Parameters
    ----------
    response : ndarray of shape (Y, U)
    alpha : float in [0, 1]

    Returns
    -------
    float
        ``min(peaks) + alpha * (max(peaks) - min(peaks))``; ``inf`` when there is no peak.
    """
    refuse_lazy(response, "peak_threshold")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    r = np.asarray(response)
    peaks = r[(r == ndimage.maximum_filter(r, size=3)) & (r > 0)]
    if peaks.size == 0:
        return float("inf")
    lo, hi = float(peaks.min()), float(peaks.max())
    return lo + alpha * (hi - lo)


def detect_edges(
    images: np.ndarray,
    *,
    sigma1: float = 1.0,
    sigma2: float = 2.0,
    alpha: float = 0.5,
    denoise: Denoise = "none",
    denoise_size: float = 1.0,
) -> np.ndarray:
    """Binary edge maps of a tilt series (steps 1-5).

    ``images`` and the filter's parameters as in :func:`dog`, ``alpha`` as in
    :func:`peak_threshold`.

    Returns
    -------
    ndarray of shape (n_tilts, Y, U), bool
    """
    d = dog(images, sigma1, sigma2, denoise=denoise, denoise_size=denoise_size)
    out = np.zeros(d.shape, dtype=bool)
    for t in range(d.shape[0]):
        out[t] = (d[t] >= peak_threshold(d[t], alpha)) & (d[t] > 0)
    return out


def tilt_order(geometry: TiltGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Tilt indices sorted by (axis, angle), and the axis id of each sorted position.

    Returns
    -------
    order : ndarray of shape (n_tilts,), int
    axis : ndarray of shape (n_tilts,), int
    """
    angles = np.asarray(geometry.angles_deg, float)
    axis = np.asarray(geometry.axis_id, int)
    order = np.lexsort((angles, axis))
    return order, axis[order]


def tilt_backprojections(edges: np.ndarray, frame: BlockFrame) -> np.ndarray:
    """Per-tilt binary back-projections ``B(h)`` of one volume block (step 6).

    Parameters
    ----------
    edges : ndarray of shape (n_tilts, v, u), bool
        The detector window ``[v0:v0+v, u0:u0+u]`` of the edge maps (all tilts) that covers
        the block's footprint; pixels outside the window count as off.
    frame : BlockFrame
        The geometry, the whole volume's and detector's sizes, the block ``(z, y, x)`` within
        the volume and ``origin = (v0, u0)``, the position of ``edges[:, 0, 0]`` on the detector.

    Returns
    -------
    ndarray of shape (n_tilts, bz, by, bx), bool
        ``B[h, z, y, x] = edges_full[h, rint(v), rint(u)]`` under the contract's rule.
    """
    refuse_lazy(edges, "tilt_backprojections")
    edges = np.asarray(edges, dtype=bool)
    n = edges.shape[0]
    shape = tuple(s.stop - s.start for s in frame.block)
    out = np.zeros((n, *shape), dtype=bool)
    for h in range(n):
        # the projectors' kernel on one tilt: its vote count is 0 or 1
        votes = backproject_block(
            edges[h : h + 1], *frame._replace(geometry=frame.geometry.select([h]))
        )
        out[h] = votes > 0
    return out


@dataclass(frozen=True)
class Refinement:
    """The refinement's parameters (step 7): ``m``, ``k`` and ``s`` of the module docstring.

    ``iterations`` (``m >= 0``) rounds; each tilt's neighbours are the tilts up to ``window``
    (``k >= 1``) positions away in angle order, and ``min_support`` (``s >= 1``) of them must
    also be on.
    """

    iterations: int = 1
    window: int = 1
    min_support: int = 2

    def __post_init__(self) -> None:
        m, k, s = self.iterations, self.window, self.min_support
        if m < 0 or k < 1 or s < 1:
            raise ValueError(
                f"need iterations >= 0, window >= 1, min_support >= 1; got {m}, {k}, {s}"
            )


PAPER = Refinement()  # k = 1, s = 2: B(h) AND B(h-1) AND B(h+1), once


def refine(b: np.ndarray, geometry: TiltGeometry, refinement: Refinement = PAPER) -> np.ndarray:
    """Refine per-tilt back-projections by their angular neighbours (step 7).

    Parameters
    ----------
    b : ndarray of shape (n_tilts, ...), bool
        ``B(h)`` in the geometry's tilt order.
    geometry : TiltGeometry
    refinement : Refinement

    Returns
    -------
    ndarray of the same shape, bool
    """
    refuse_lazy(b, "refine")
    window, min_support = refinement.window, refinement.min_support
    order, axis = tilt_order(geometry)
    cur = np.asarray(b, dtype=bool)[order]
    n = cur.shape[0]
    # same[d][i]: positions i and i+d are neighbours on one tilt axis
    same = {d: axis[d:] == axis[:-d] for d in range(1, window + 1)}
    n_neighbours = np.zeros(n, dtype=np.int64)
    for d in range(1, window + 1):
        n_neighbours[d:] += same[d]
        n_neighbours[:-d] += same[d]
    # tilts at the ends of a series have fewer neighbours; they need support from all of them
    need = np.minimum(min_support, n_neighbours).astype(np.uint8)
    for _ in range(refinement.iterations):
        support = np.zeros(cur.shape, dtype=np.uint8)
        for d in range(1, window + 1):
            support[d:][same[d]] += cur[:-d][same[d]]
            support[:-d][same[d]] += cur[d:][same[d]]
        cur = cur & (support >= need.reshape((-1,) + (1,) * (cur.ndim - 1)))
    out = np.empty_like(cur)
    out[order] = cur
    return out


def edge_sums(edges: np.ndarray, frame: BlockFrame, refinement: Refinement = PAPER) -> np.ndarray:
    """Refined vote sum ``S = sum_h B(h)`` of one block (steps 6-8).

    ``edges`` and ``frame`` as in :func:`tilt_backprojections`.

    Returns
    -------
    ndarray of shape (bz, by, bx), uint16
    """
    b = tilt_backprojections(edges, frame)
    return refine(b, frame.geometry, refinement).sum(axis=0, dtype=np.uint16)
