"""Decoded slabs of a volume, kept while the page browses through them.

A storage chunk is the unit of decoding: a plane through a volume stored in 128^3 chunks
costs as much as the 128 planes of the chunk slab around it. :class:`SlabCache` keeps the
decoded slab (all chunks along the view's normal axis that hold the plane, read in one call,
so the store decodes them concurrently) of the most recent views, least recently used first
out, within ``max_bytes``; the next planes of the same slab (the page's arrow keys) are then
slices of memory. On a miss the plane alone is read at once (a plane costs a fraction of its
slab: fewer bytes copied out of each chunk) and the slab is read in one background thread,
ready for the next request; a request for a slab being read waits for it (a second read
would only compete with it for the disk and the cores). The store is never written.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["SlabCache"]


class SlabCache:
    """LRU of decoded slabs, bounded by ``max_bytes`` (0 keeps none)."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = int(max_bytes)
        self._slabs: OrderedDict[Hashable, tuple[int, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, Future[None]] = {}
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slab-reader")
        self.hits = self.misses = 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for _, a in self._slabs.values())

    def plane(self, key: Hashable, array: Any, axis: int, k: int) -> np.ndarray:
        """Plane ``k`` along ``axis`` of ``array`` (a view into its cached slab).

        ``array`` is array-like with ``shape``, regular ``chunks`` (ints, as a Zarr array's)
        and ``__getitem__``; ``key`` names it (tomogram, volume, level).
        """
        step = int(array.chunks[axis])
        j = int(k) // step
        k0, k1 = j * step, min((j + 1) * step, int(array.shape[axis]))
        slab_key = (key, axis, j)
        with self._lock:
            hit = self._slabs.get(slab_key)
            if hit is not None:
                self._slabs.move_to_end(slab_key)
                self.hits += 1
            loading = self._pending.get(slab_key)
        if hit is None and loading is not None:  # the slab is on its way: wait, not compete
            loading.exception()
            with self._lock:
                hit = self._slabs.get(slab_key)
                if hit is not None:
                    self.hits += 1
        if hit is None:
            sel: list[slice | int] = [slice(None)] * len(array.shape)
            sel[axis] = int(k)
            plane = np.asarray(array[tuple(sel)])
            with self._lock:
                self.misses += 1
                slab_bytes = plane.nbytes * (k1 - k0)
                wanted = slab_key not in self._pending and 0 < slab_bytes <= self.max_bytes
                if wanted:
                    sel[axis] = slice(k0, k1)
                    self._pending[slab_key] = self._reader.submit(
                        self._load, slab_key, array, tuple(sel), k0
                    )
            return plane
        start, slab = hit
        return np.take(slab, int(k) - start, axis=axis)

    def _load(self, slab_key: Hashable, array: Any, sel: tuple[slice | int, ...], k0: int) -> None:
        try:
            slab = np.asarray(array[sel])
            with self._lock:
                if slab.nbytes <= self.max_bytes:
                    self._slabs[slab_key] = (k0, slab)
                    while self.nbytes > self.max_bytes:
                        self._slabs.popitem(last=False)
        finally:
            with self._lock:
                self._pending.pop(slab_key, None)

    def wait(self) -> None:
        """Wait for the slabs being read (tests; shutting down)."""
        while True:
            with self._lock:
                pending = list(self._pending.values())
            if not pending:
                return
            for f in pending:
                f.exception()

    def close(self) -> None:
        """Stop reading slabs (the one being read finishes) and drop every slab."""
        self._reader.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._slabs.clear()
