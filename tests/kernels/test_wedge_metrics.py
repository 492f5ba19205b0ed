"""Fourier measurements of a missing-wedge filling against a known truth."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.kernels.wedge import apply_wedge, wedge_mask
from cryoflow.kernels.wedge_metrics import (
    fourier_cc,
    missing_angle_deg,
    neighbour_copy,
    real_space_cc,
    wedge_cc,
    wedge_region,
)


def _blobs(shape=(32, 32, 32), n=12, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    vol = np.zeros(shape, np.float32)
    for _ in range(n):
        c = rng.uniform(4, np.asarray(shape) - 4)
        r = rng.uniform(1.5, 3.5)
        vol += ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r).astype(np.float32)
    return vol


def test_missing_angle_hand_worked() -> None:
    a = missing_angle_deg((16, 16, 16), (-60, 60))
    assert a[0, 0, 3] == 0 and a[0, 5, 0] == 0 and a[0, 0, 0] == 0  # kx axis, ky axis, DC
    np.testing.assert_allclose(a[3, 0, 0], 30.0)  # along kz: 90 - 60
    np.testing.assert_allclose(a[4, 0, 1], np.degrees(np.arctan(4.0)) - 60.0)
    b = missing_angle_deg((16, 16, 16), (-20, 60))
    np.testing.assert_allclose(b[-2, 0, 2], 25.0)  # -45 deg, 25 below the range
    assert ((a > 0) == ~wedge_mask((16, 16, 16), (-60, 60))).all()  # the contract's rule


def test_truth_scores_one_and_a_wedged_truth_zero() -> None:
    truth = _blobs()
    assert wedge_cc(truth, truth, (-60, 60)) == pytest.approx(1.0)
    assert abs(wedge_cc(apply_wedge(truth, (-60, 60)), truth, (-60, 60))) < 1e-6
    assert wedge_cc(-truth, truth, (-60, 60)) == pytest.approx(-1.0)
    assert wedge_cc(np.zeros_like(truth), truth, (-60, 60)) == 0.0


def test_deep_region_is_a_subset_and_k_max_limits_it() -> None:
    shape = (24, 24, 24)
    full = wedge_region(shape, (-60, 60))
    deep = wedge_region(shape, (-60, 60), min_angle_deg=15)
    low = wedge_region(shape, (-60, 60), k_max=0.1)
    assert deep.sum() < full.sum() and (deep <= full).all() and (low <= full).all()
    assert low.sum() < full.sum()


def test_fourier_cc_over_a_region() -> None:
    a = _blobs(seed=1)
    region = wedge_mask(a.shape, (-90, 90))
    region[0, 0, 0] = False
    assert fourier_cc(a, 2 * a + 3, region) == pytest.approx(1.0)


def test_neighbour_copy_keeps_measured_and_fakes_the_wedge() -> None:
    truth = _blobs(seed=2)
    wedged = apply_wedge(truth, (-60, 60))
    copy = neighbour_copy(wedged, (-60, 60))
    measured = wedge_mask(truth.shape, (-60, 60))
    f_copy, f_in = np.fft.fftn(copy), np.fft.fftn(wedged)
    np.testing.assert_allclose(f_copy[measured], f_in[measured], atol=1e-3)
    region = wedge_region(truth.shape, (-60, 60))
    assert np.abs(f_copy[region]).sum() > 0.2 * np.abs(np.fft.fftn(truth)[region]).sum()
    # copying neighbours is not the truth, least of all deep in the wedge
    assert wedge_cc(copy, truth, (-60, 60), min_angle_deg=15) < 0.5


def test_real_space_cc() -> None:
    a = _blobs(seed=3)
    assert real_space_cc(a, 3 * a - 1) == pytest.approx(1.0)
    mask = a > 0
    assert real_space_cc(a, a + 1.0, mask=mask) == pytest.approx(1.0) or not mask.any()


def test_lazy_and_mismatched_input_refused() -> None:
    a = _blobs()
    with pytest.raises(TypeError, match="lazy"):
        wedge_cc(da.from_array(a), a, (-60, 60))
    with pytest.raises(GeometryError, match="one shape"):
        wedge_cc(a, a[:-1], (-60, 60))
    with pytest.raises(GeometryError, match="tilt range"):
        wedge_cc(a, a, (60, -60))
