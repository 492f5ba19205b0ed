"""Overlapping tiles with blended seams: where a blockwise filter reads, writes and how it weighs.

A ``(Z, Y, X)`` volume is cut, on every axis, into cores ``[s_i, e_i)`` of ``block`` voxels
(the last one shorter). Tile ``i`` is processed on its *footprint* ``[s_i - margin, e_i +
margin)`` (clipped to the volume) and contributes to its *region* ``[s_i - b_lo, e_i + b_hi)``,
where ``b`` is the blend width of the seam on that side, ``min(blend, core sizes / 2)`` (0 at
the volume's ends). Across a seam at ``e_i`` the two tiles' weights are linear ramps,

    w_i(t) = (e_i + b - t - 1/2) / (2 b),   w_{i+1}(t) = (t - e_i + b + 1/2) / (2 b),

so they sum to 1 at every voxel (a partition of unity); a 3D tile's weight is the product of its
three axes' weights. With ``margin`` at least ``blend`` plus the filter's reach, every voxel is
computed with its full context and the seam leaves no step.

For a U-Net with ``d`` poolings, ``block`` and ``margin`` multiples of ``2**d`` put every
footprint's start on the pooling grid of the whole volume (see :mod:`cryoflow.models.unet3d`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from cryoflow.errors import ConfigError, GeometryError


def _cores(n: int, block: int) -> tuple[tuple[int, int], ...]:
    return tuple((s, min(s + block, n)) for s in range(0, n, block))


def _blends(cores: Sequence[tuple[int, int]], blend: int) -> list[int]:
    """Blend width of each seam between consecutive cores."""
    return [
        min(blend, (a1 - a0) // 2, (b1 - b0) // 2)
        for (a0, a1), (b0, b1) in zip(cores[:-1], cores[1:], strict=True)
    ]


@dataclass(frozen=True)
class TileGrid:
    """Blended tiles over a ``(Z, Y, X)`` volume (see the module docstring).

    shape : (Z, Y, X); block : core side; margin : context read around each core;
    blend : seam half-width (``0 <= blend <= margin``, ``2 * blend <= block``).
    """

    shape: tuple[int, int, int]
    block: int
    margin: int
    blend: int

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise GeometryError(f"TileGrid needs a (Z, Y, X) shape, got {self.shape}")
        object.__setattr__(self, "shape", shape)
        b, m, w = int(self.block), int(self.margin), int(self.blend)
        if b < 1 or not 0 <= m <= b or not 0 <= w <= m or 2 * w > b:
            raise ConfigError(
                "tiles need block >= 1, 0 <= margin <= block, 0 <= blend <= margin and "
                f"2 * blend <= block; got block={b}, margin={m}, blend={w}"
            )
        object.__setattr__(self, "block", b)
        object.__setattr__(self, "margin", m)
        object.__setattr__(self, "blend", w)

    def cores(self, axis: int) -> tuple[tuple[int, int], ...]:
        """The half-open cores ``(s, e)`` along ``axis``."""
        return _cores(self.shape[axis], self.block)

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """Dask-style chunk sizes of the cores."""
        return tuple(tuple(e - s for s, e in self.cores(a)) for a in range(3))

    @property
    def region_chunks(self) -> tuple[tuple[int, ...], ...]:
        """Sizes of the tiles' regions along each axis (they overlap: not a partition)."""
        return tuple(
            tuple(
                r1 - r0 for _, _, (r0, r1) in (self._axis(a, i) for i in range(len(self.cores(a))))
            )
            for a in range(3)
        )

    @property
    def n_tiles(self) -> tuple[int, int, int]:
        return (len(self.cores(0)), len(self.cores(1)), len(self.cores(2)))

    def indices(self) -> Iterator[tuple[int, int, int]]:
        """Every tile index ``(i, j, k)`` in C order."""
        yield from itertools.product(*(range(n) for n in self.n_tiles))  # type: ignore[misc]

    def _axis(self, axis: int, i: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        cores = self.cores(axis)
        seams = _blends(cores, self.blend)
        s, e = cores[i]
        lo = seams[i - 1] if i > 0 else 0
        hi = seams[i] if i < len(seams) else 0
        n = self.shape[axis]
        return (s, e), (max(s - self.margin, 0), min(e + self.margin, n)), (s - lo, e + hi)

    def core(self, index: Sequence[int]) -> tuple[slice, slice, slice]:
        """Slices of tile ``index``'s core."""
        return tuple(slice(*self._axis(a, i)[0]) for a, i in enumerate(index))  # type: ignore[return-value]

    def footprint(self, index: Sequence[int]) -> tuple[slice, slice, slice]:
        """Slices of the voxels tile ``index`` reads."""
        return tuple(slice(*self._axis(a, i)[1]) for a, i in enumerate(index))  # type: ignore[return-value]

    def region(self, index: Sequence[int]) -> tuple[slice, slice, slice]:
        """Slices of the voxels tile ``index`` contributes to (its core plus the blend zones)."""
        return tuple(slice(*self._axis(a, i)[2]) for a, i in enumerate(index))  # type: ignore[return-value]

    def weights(self, index: Sequence[int]) -> np.ndarray:
        """ndarray of float32 with the shape of :meth:`region`: the tile's blend weights."""
        ws = []
        for a, i in enumerate(index):
            (s, e), _, (r0, r1) = self._axis(a, i)
            t = np.arange(r0, r1, dtype=np.float64) + 0.5
            w = np.ones(r1 - r0)
            lo, hi = s - r0, r1 - e
            if lo > 0:
                w = np.minimum(w, (t - (s - lo)) / (2 * lo))
            if hi > 0:
                w = np.minimum(w, ((e + hi) - t) / (2 * hi))
            ws.append(np.clip(w, 0.0, 1.0))
        return (ws[0][:, None, None] * ws[1][None, :, None] * ws[2][None, None, :]).astype(
            np.float32
        )

    def neighbours(self, index: Sequence[int]) -> list[tuple[int, int, int]]:
        """Tiles (``index`` included) whose region overlaps tile ``index``'s core, C order."""
        n = self.n_tiles
        ranges = [range(max(i - 1, 0), min(i + 2, n[a])) for a, i in enumerate(index)]
        return list(itertools.product(*ranges))  # type: ignore[arg-type]
