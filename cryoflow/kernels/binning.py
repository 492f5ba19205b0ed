"""Mean-binning of tilt images (eager NumPy, one chunk of tilts in, one out)."""

from __future__ import annotations

import numpy as np

from cryoflow.errors import InputFileError
from cryoflow.kernels._guards import refuse_lazy

__all__ = ["bin_image"]


def bin_image(block: np.ndarray, factor: int, first_tilt: int = 0) -> np.ndarray:
    """Mean-bin tilt images ``(n, Y, X)`` by ``factor`` (edges that do not fill a bin dropped).

    Returns
    -------
    ndarray of shape (n, Y // factor, X // factor), float32

    Raises
    ------
    TypeError
        For Dask input (kernels are eager).
    InputFileError
        When an image holds non-finite values (a corrupt tilt); tilts are numbered from
        ``first_tilt``.
    """
    refuse_lazy(block, "bin_image")
    block = np.asarray(block)
    if not np.all(np.isfinite(block)):
        bad = sorted({first_tilt + int(i) for i in np.argwhere(~np.isfinite(block))[:, 0]})
        raise InputFileError("tilt series", f"non-finite pixels in tilt image(s) {bad[:5]}")
    n, y, x = block.shape
    yb, xb = y // factor, x // factor
    cut = block[:, : yb * factor, : xb * factor].astype(np.float32)
    return cut.reshape(n, yb, factor, xb, factor).mean(axis=(2, 4), dtype=np.float32)
