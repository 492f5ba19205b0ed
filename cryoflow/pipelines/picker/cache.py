"""Decoded slabs of a volume, kept while the page browses through them.

A storage chunk is the unit of decoding: a plane through a volume stored in 128^3 chunks
costs as much as the 128 planes of the chunk slab around it. :class:`SlabCache` keeps the
decoded slab (all chunks along the view's normal axis that hold the plane) of the most
recent views, least recently used first out, within ``max_bytes``; the next planes of the
same slab (the page's arrow keys) are then slices of memory. The store is never written.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import dask.array as da
import numpy as np

__all__ = ["SlabCache"]


class SlabCache:
    """LRU of decoded slabs, bounded by ``max_bytes`` (0 keeps none)."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = int(max_bytes)
        self._slabs: OrderedDict[Hashable, tuple[int, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for _, a in self._slabs.values())

    def plane(self, key: Hashable, data: da.Array, axis: int, k: int) -> np.ndarray:
        """``data``'s plane ``k`` along ``axis`` (a view into its cached slab).

        ``key`` names ``data`` (tomogram, volume, level); the slab is the run of storage
        chunks along ``axis`` that holds ``k``.
        """
        bounds = np.cumsum((0, *data.chunks[axis]))
        j = int(np.searchsorted(bounds, k, side="right") - 1)
        k0, k1 = int(bounds[j]), int(bounds[j + 1])
        slab_key = (key, axis, j)
        with self._lock:
            hit = self._slabs.get(slab_key)
            if hit is not None:
                self._slabs.move_to_end(slab_key)
                self.hits += 1
        if hit is None:
            self.misses += 1
            sel: list[slice] = [slice(None)] * data.ndim
            sel[axis] = slice(k0, k1)
            slab = np.asarray(data[tuple(sel)].compute(scheduler="threads"))
            hit = (k0, slab)
            with self._lock:
                if slab.nbytes <= self.max_bytes:
                    self._slabs[slab_key] = hit
                    while self.nbytes > self.max_bytes:
                        self._slabs.popitem(last=False)
        start, slab = hit
        return np.take(slab, k - start, axis=axis)
