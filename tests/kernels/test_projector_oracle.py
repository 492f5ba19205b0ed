"""Projector and back-projector against a literal per-voxel loop (an independent oracle).

The loop below restates the rule of CONTRACT.md and ``kernels/backproject.py`` one voxel, one
tilt and one tap at a time in plain Python floats: it calls none of the kernels' helpers
(``detector_positions``, ``axis_taps``, ``row_taps``), so a bug in them cannot hide in the
reference. Geometries cover every path: the single-axis fast path (with a detector-u shift), a
rotated tilt axis with shifts on both axes, the 2D-to-3D paper's directions, dual axis, and a
general random ``M_volume2detector`` with random shifts.
"""

from __future__ import annotations

import numpy as np
import pytest

import cryoflow
from cryoflow.geometry import TiltGeometry
from cryoflow.kernels.backproject import backproject_block
from cryoflow.kernels.project import project_block
from tests.kernels._voxel_loops import loop_backproject, loop_project

ANGLES = [-57.0, -31.0, -4.0, 0.0, 22.0, 48.0]
VOLUME = (6, 7, 9)  # (Z, Y, X), every axis a different length
DETECTOR = (9, 11)  # (V, U)


def _general(seed: int) -> TiltGeometry:
    rng = np.random.default_rng(seed)
    n = 4
    matrices = rng.normal(size=(n, 2, 3))
    shifts = rng.uniform(-1.7, 1.7, size=(n, 2))
    return TiltGeometry(
        angles_deg=tuple(float(a) for a in rng.uniform(-60, 60, n)),
        matrices=tuple(tuple(tuple(float(v) for v in row) for row in m) for m in matrices),
        shifts_px=tuple(tuple(float(v) for v in s) for s in shifts),
    )


GEOMETRIES = {
    "single-axis-u-shift": TiltGeometry.single_axis(
        ANGLES, shifts_px=np.c_[np.zeros(6), np.linspace(-1.3, 2.2, 6)]
    ),
    "rotated-shifted": TiltGeometry.single_axis(
        ANGLES, tilt_axis_deg=23.0, shifts_px=np.linspace(-1.9, 2.4, 12).reshape(6, 2)
    ),
    "directions": TiltGeometry.from_directions([130, 90, 55, 100], [10, 35, -60, 170]),
    "dual-axis": TiltGeometry.dual_axis([-50, 0, 35], [-20, 0, 65]),
    "general": _general(3),
}


def _images(dtype, n, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.random((n, *DETECTOR))
    if dtype is bool:
        return values > 0.6
    if np.dtype(dtype).kind == "i":
        return (values * 50).astype(dtype)
    return (values - 0.3).astype(dtype)


def _whole(shape):
    return tuple(slice(0, s) for s in shape)


@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
@pytest.mark.parametrize("dtype", [np.float32, bool, np.int16])
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_backproject_kernel_equals_the_voxel_loop(name, dtype, interpolation):
    geometry = GEOMETRIES[name]
    images = _images(dtype, geometry.n_tilts)
    expected = loop_backproject(images, geometry, VOLUME, interpolation)
    got = backproject_block(
        images, geometry, VOLUME, DETECTOR, _whole(VOLUME), interpolation=interpolation
    )
    if got.dtype.kind in "iu":
        np.testing.assert_array_equal(got, np.rint(expected).astype(got.dtype))
        assert np.array_equal(expected, np.rint(expected))
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.count_nonzero(expected) > expected.size // 4  # the geometry hits the detector


@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
@pytest.mark.parametrize("mode", ["sum", "any", "max"])
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_project_kernel_equals_the_voxel_loop(name, mode, interpolation):
    geometry = GEOMETRIES[name]
    rng = np.random.default_rng(1)
    volume = rng.random(VOLUME).astype(np.float32)
    volume[volume < 0.5] = 0  # zeros, so "any" differs from "every pixel hit"
    expected = loop_project(volume, geometry, DETECTOR, mode, interpolation)
    got = project_block(
        volume, geometry, VOLUME, DETECTOR, _whole(VOLUME), mode=mode, interpolation=interpolation
    )
    if mode == "any":
        np.testing.assert_array_equal(got, expected.astype(bool))
        assert 0 < np.count_nonzero(expected) < expected.size
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["rotated-shifted", "general", "single-axis-u-shift"])
def test_chunked_dask_results_equal_the_voxel_loop(name):
    """Through the public API, split into blocks that each read only their footprint."""
    geometry = GEOMETRIES[name]
    images = _images(np.float32, geometry.n_tilts, seed=4)
    for interpolation in ("nearest", "linear"):
        expected = loop_backproject(images, geometry, VOLUME, interpolation)
        got = cryoflow.backproject(
            images, geometry, VOLUME, interpolation=interpolation, chunks=(4, 3, 5)
        )
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
    # project() uses detectors of the volume's Y rows: a volume with Y = V
    volume = np.random.default_rng(5).random((6, 9, 9)).astype(np.float32)  # Y = V = 9
    expected = loop_project(volume, geometry, DETECTOR, "sum", "linear")
    got = cryoflow.project(
        volume, geometry, DETECTOR[1], "sum", interpolation="linear", chunks=(4, 5, 4)
    )
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_the_loop_restates_the_contract_on_a_hand_worked_case():
    """The oracle itself, checked by hand: one bright voxel, three tilts, nearest."""
    images = np.zeros((3, 1, 5), np.float32)
    images[:, 0, :] = np.arange(5)  # pixel u holds the value u
    geometry = TiltGeometry.single_axis([0.0, 90.0, -90.0])
    # volume (Z=3, Y=1, X=3): voxel (z=0, y=0, x=2) has zc=-1, xc=1;
    # t=0: uc = 1 -> u = 3; t=90: uc = zc = -1 -> u = 1; t=-90: uc = -zc = 1 -> u = 3
    out = loop_backproject(images, geometry, (3, 1, 3), "nearest")
    assert out[0, 0, 2] == 3 + 1 + 3
    assert backproject_block(images, geometry, (3, 1, 3), (1, 5), _whole((3, 1, 3)))[0, 0, 2] == 7
