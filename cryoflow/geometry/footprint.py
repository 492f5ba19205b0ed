"""Which detector pixels a block of voxels projects to (its footprint)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from cryoflow.geometry.projection import TiltGeometry


@dataclass(frozen=True)
class Footprint:
    """Detector region a volume block needs, as half-open pixel ranges.

    ``v`` is one ``(v0, v1)`` range shared by all tilts; ``u`` is one ``(u0, u1)`` per tilt.
    An empty range (``u0 == u1``) means the block misses that tilt's detector entirely.
    """

    v: tuple[int, int]
    u: tuple[tuple[int, int], ...]

    @property
    def u_union(self) -> tuple[int, int]:
        lo = [a for a, b in self.u if b > a]
        hi = [b for a, b in self.u if b > a]
        if not lo:
            return (0, 0)
        return (min(lo), max(hi))


def chunk_footprint(
    geometry: TiltGeometry,
    volume_shape: tuple[int, int, int],
    detector_shape: tuple[int, int],
    block: tuple[slice, slice, slice],
    *,
    margin: int = 1,
) -> Footprint:
    """Footprint of the voxel block ``block`` (slices in z, y, x) on a ``(V, U)`` detector.

    Projection is affine, so the block's image is the convex hull of its 8 corners; the
    returned ranges cover that hull, widened by ``margin`` pixels (rounding and linear
    interpolation), and clipped to the detector.
    """
    Z, Y, X = volume_shape
    V, U = detector_shape
    corners = np.array(
        [
            [z, y, x]
            for z in (block[0].start, block[0].stop - 1)
            for y in (block[1].start, block[1].stop - 1)
            for x in (block[2].start, block[2].stop - 1)
        ],
        dtype=float,
    )
    centred = corners - (np.array([Z, Y, X], float) - 1) / 2
    m = geometry.matrix_array  # (n, 2, 3)
    det = np.einsum("nij,cj->nci", m, centred) + geometry.shift_array[:, None, :]
    det += (np.array([V, U], float) - 1) / 2
    lo = np.floor(det.min(axis=1)).astype(int) - margin  # (n, 2)
    hi = np.ceil(det.max(axis=1)).astype(int) + margin + 1
    v0 = int(np.clip(lo[:, 0].min(), 0, V))
    v1 = int(np.clip(hi[:, 0].max(), 0, V))
    u = tuple(
        (int(np.clip(a, 0, U)), int(np.clip(b, 0, U)))
        if np.clip(b, 0, U) > np.clip(a, 0, U)
        else (0, 0)
        for a, b in zip(lo[:, 1], hi[:, 1], strict=True)
    )
    return Footprint(v=(v0, max(v0, v1)), u=u)


class BlockFrame(NamedTuple):
    """One volume block as a block kernel sees it, with where its detector crop sits.

    The fields are, in order, the arguments that follow the data in the block kernels
    (:func:`cryoflow.kernels.backproject.backproject_block`,
    :func:`cryoflow.kernels.edges.edge_sums`): the geometry, the whole volume's ``(Z, Y, X)``
    and detector's ``(V, U)`` sizes (for the centring), the block's ``(z, y, x)`` slices and
    ``origin``, the detector position ``(v0, u0)`` of the crop's first pixel.
    """

    geometry: TiltGeometry
    volume_shape: tuple[int, int, int]
    detector_shape: tuple[int, int]
    block: tuple[slice, slice, slice]
    origin: tuple[int, int] = (0, 0)

    def footprint(self, *, margin: int = 1) -> Footprint:
        """:func:`chunk_footprint` of the block."""
        return chunk_footprint(
            self.geometry, self.volume_shape, self.detector_shape, self.block, margin=margin
        )
