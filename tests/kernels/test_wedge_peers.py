"""The trivial non-linear peers put correlated power into the missing wedge (a linear filter
cannot)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from cryoflow.errors import ConfigError
from cryoflow.kernels.wedge import apply_wedge
from cryoflow.kernels.wedge_metrics import wedge_cc
from cryoflow.kernels.wedge_peers import blur_threshold, rectified_square


def _blobs(shape=(32, 32, 32), seed=0) -> np.ndarray:  # sparse: 3% of the volume
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    vol = np.zeros(shape, np.float32)
    for _ in range(10):
        c = rng.uniform(5, np.asarray(shape) - 5)
        vol[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 9.0] = 1.0
    return vol


def test_peers_fill_the_wedge_and_a_linear_filter_does_not() -> None:
    truth = _blobs()
    wedged = apply_wedge(truth, (-60, 60))
    assert wedge_cc(ndimage.gaussian_filter(wedged, 1.0), truth, (-60, 60)) < 0.05
    assert wedge_cc(blur_threshold(wedged, sigma_px=1.0, quantile=0.95), truth, (-60, 60)) > 0.3
    assert wedge_cc(rectified_square(wedged, sigma_px=1.0), truth, (-60, 60)) > 0.3


def test_blur_threshold_is_binary_at_its_quantile() -> None:
    out = blur_threshold(_blobs(), sigma_px=1.0, quantile=0.8)
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert out.mean() == pytest.approx(0.2, abs=0.02)


def test_errors() -> None:
    v = _blobs()
    with pytest.raises(ConfigError, match="quantile"):
        blur_threshold(v, quantile=1.5)
    with pytest.raises(TypeError, match="lazy"):
        rectified_square(da.from_array(v))
    with pytest.raises(ConfigError, match="volume"):
        rectified_square(v[0])
