"""The missing-wedge mask and its application against a per-component oracle: a Fourier
component is measured when the line through it and the origin in the (kx, kz) plane is the
line of one tilt direction (cos t, sin t), t in the range: its angle, or that angle +- 180
degrees, lies in the range. Written from the contract's rule, sharing nothing with the kernel."""

from __future__ import annotations

import itertools
import math

import dask.array as da
import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.kernels.wedge import apply_wedge, wedge_mask


def _freq(n: int, i: int) -> float:
    return (i if i <= (n - 1) // 2 else i - n) / n


def _measured(kz: float, kx: float, lo: float, hi: float) -> bool:
    if kz == 0 and kx == 0:
        return True  # the ky axis: every tilt measures it
    theta = math.degrees(math.atan2(kz, kx))
    return any(lo - 1e-9 <= c <= hi + 1e-9 for c in (theta - 180.0, theta, theta + 180.0))


def _mask_loop(shape, lo, hi, rfft: bool = False) -> np.ndarray:
    """The mask, one component at a time (``rfft``: the non-negative kx = k / X only)."""
    z, y, x = shape
    nx = x // 2 + 1 if rfft else x
    out = np.zeros((z, y, nx), dtype=bool)
    for i, j, k in itertools.product(range(z), range(y), range(nx)):
        kx = k / x if rfft else _freq(x, k)
        out[i, j, k] = _measured(_freq(z, i), kx, lo, hi)
    return out


@pytest.mark.parametrize(
    "tilt_range", [(-60.0, 60.0), (-30.0, 55.0), (-89.5, 89.5), (0.0, 0.0), (45.0, 60.0)]
)
def test_mask_equals_the_line_rule_for_every_component(tilt_range) -> None:
    # 128 x 128 in (z, x): components within a degree of the kz axis on both sides of it
    shape = (128, 1, 128)
    expected = _mask_loop(shape, *tilt_range)
    np.testing.assert_array_equal(wedge_mask(shape, tilt_range), expected)
    np.testing.assert_array_equal(
        wedge_mask(shape, tilt_range, rfft=True), _mask_loop(shape, *tilt_range, rfft=True)
    )


def test_the_full_range_measures_everything_and_odd_boxes_too() -> None:
    assert wedge_mask((128, 1, 128), (-90.0, 90.0)).all()
    shape = (9, 3, 7)
    np.testing.assert_array_equal(wedge_mask(shape, (-45.0, 20.0)), _mask_loop(shape, -45.0, 20.0))


@pytest.mark.parametrize("shape", [(7, 6, 9), (9, 3, 7)])
def test_apply_wedge_zeroes_exactly_the_unmeasured_components(shape) -> None:
    """Odd z and x: no component lies on a Nyquist plane, whose frequency (+0.5 or -0.5)
    and so whose line is ambiguous."""
    rng = np.random.default_rng(sum(shape))
    vol = rng.normal(size=shape).astype(np.float32)
    out = apply_wedge(vol, (-50.0, 40.0))
    assert out.shape == vol.shape and out.dtype == np.float32
    expected = np.fft.ifftn(np.fft.fftn(vol.astype(np.float64)) * _mask_loop(shape, -50.0, 40.0))
    np.testing.assert_allclose(out, expected.real, atol=1e-5)
    # float64 input is taken as float32, like every kernel's volume
    np.testing.assert_array_equal(apply_wedge(vol.astype(np.float64) + 1e-12, (-50.0, 40.0)), out)


def test_apply_wedge_refuses_lazy_and_non_3d_input_naming_itself() -> None:
    with pytest.raises(TypeError, match="apply_wedge is a kernel"):
        apply_wedge(da.zeros((4, 4, 4), chunks=2), (-60.0, 60.0))
    with pytest.raises(GeometryError, match=r"apply_wedge expects a \(Z, Y, X\) volume"):
        apply_wedge(np.zeros((4, 4), np.float32), (-60.0, 60.0))


def test_the_contracts_fold_at_plus_minus_90() -> None:
    """Angles are folded into (-90, 90]: the kz axis is at +90, so a range ending at +90
    measures it and one starting at -90 (but ending below 90) does not, on both halves."""
    shape = (8, 1, 8)
    kz_axis = np.zeros((8, 1, 8), dtype=bool)
    kz_axis[1:, 0, 0] = True
    assert wedge_mask(shape, (-60.0, 90.0))[kz_axis].all()
    assert not wedge_mask(shape, (-90.0, 60.0))[kz_axis].any()
