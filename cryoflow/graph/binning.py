"""Lazy mean-binning of a tilt series, one task per tilt (:func:`cryoflow.kernels.binning.bin_image`)."""

from __future__ import annotations

import dask.array as da
import numpy as np
from dask.base import tokenize

from cryoflow.kernels.binning import bin_image

__all__ = ["bin_graph"]


def _bin_block(block: np.ndarray, first: np.ndarray, factor: int) -> np.ndarray:
    return bin_image(block, factor, int(first.flat[0]))


def bin_graph(images: da.Array, factor: int, *, prefix: str = "bin") -> da.Array:
    """Mean-bin every tilt image by ``factor``.

    Parameters
    ----------
    images : dask.array.Array of shape (n, Y, X)
    factor : int

    Returns
    -------
    dask.array.Array of shape (n, Y // factor, X // factor), float32, one tilt per chunk;
    tasks named ``<prefix>-<token>``. A tilt with non-finite pixels fails its task with an
    ``InputFileError`` naming the tilt.
    """
    n, y, x = (int(s) for s in images.shape)
    f = int(factor)
    src = images.rechunk((1, y, x))
    first = da.arange(n, chunks=1).reshape(n, 1, 1)  # each block's tilt number, for messages
    return da.map_blocks(
        _bin_block,
        src,
        first,
        f,
        dtype=np.float32,
        chunks=((1,) * n, (y // f,), (x // f,)),
        meta=np.empty((0, 0, 0), np.float32),
        name=f"{prefix}-{tokenize(src.name, f)}",
    )
