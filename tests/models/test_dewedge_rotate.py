"""Rotated boxes carry their wedge where :func:`rotated_wedge` says (the training masks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoflow.errors import ConfigError
from cryoflow.kernels.wedge import apply_wedge, fourier_grid, wedge_mask
from cryoflow.models.dewedge_rotate import (
    cube_rotations,
    extraction_size,
    random_rotations,
    rotate_cube,
    rotate_resample,
    rotated_wedge,
)


def _leak(volume: np.ndarray, measured: np.ndarray) -> float:
    f = np.abs(np.fft.rfftn(volume)) ** 2
    return float(f[~measured].sum() / f.sum())


def test_cube_rotations_move_the_wedge() -> None:
    sym = cube_rotations((-60, 60), 16)
    assert len(sym) == 20  # IsoNet's 20: the four that keep a symmetric wedge are left out
    assert not any(np.allclose(r, np.eye(3)) for r in sym)
    assert len(cube_rotations((-50, 60), 16)) == 22  # mirrored asymmetric wedges differ
    for r in sym:
        assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)


@pytest.mark.parametrize("tilt_range", [(-60, 60), (-45, 58)])
def test_cube_rotation_is_exact_and_its_wedge_is_right(tilt_range) -> None:
    rng = np.random.default_rng(0)
    b = 16
    vol = apply_wedge(rng.normal(size=(b, b, b)).astype(np.float32), tilt_range)
    for r in cube_rotations(tilt_range, b):
        out = rotate_cube(torch.from_numpy(vol), r).numpy()
        assert _leak(out, rotated_wedge((b, b, b), tilt_range, r)) < 1e-10
        # and it is the rotation b(R^T p): the voxel at offset p comes from R^T p
        c = (b - 1) / 2
        p = np.array([11, 5, 12])
        q = r.T @ (p - c) + c
        assert np.allclose(q, np.rint(q))
        assert out[tuple(p)] == vol[tuple(np.rint(q).astype(int))]


def test_random_rotation_convention() -> None:
    rng = np.random.default_rng(1)
    box, tilt_range = 24, (-60, 60)
    side = extraction_size(box, "random")
    assert side >= np.sqrt(3) * box and (side - box) % 2 == 0
    # smooth noise (interpolation is nearly exact) measured on the wedge
    k = np.sqrt((fourier_grid((side,) * 3, rfft=True) ** 2).sum(axis=0))
    f = np.fft.rfftn(rng.normal(size=(side,) * 3)) * wedge_mask((side,) * 3, tilt_range, rfft=True)
    vol = np.fft.irfftn(f * np.exp(-0.5 * (k / 0.15) ** 2), s=(side,) * 3, axes=(0, 1, 2))
    mats = random_rotations(rng, 3)
    out = rotate_resample(torch.from_numpy(np.stack([vol] * 3)[:, None]).float(), mats, box)
    for i, r in enumerate(mats):
        right = _leak(out[i, 0].numpy(), rotated_wedge((box,) * 3, tilt_range, r))
        wrong = _leak(out[i, 0].numpy(), rotated_wedge((box,) * 3, tilt_range, r.T))
        assert right < 0.2 and right < 0.6 * wrong


def test_resampling_a_cube_rotation_matches_the_exact_one() -> None:
    rng = np.random.default_rng(2)
    vol = torch.from_numpy(rng.normal(size=(1, 1, 12, 12, 12)).astype(np.float32))
    r = cube_rotations((-60, 60), 12)[3]
    exact = rotate_cube(vol, r)
    resampled = rotate_resample(vol, r[None], 12)
    torch.testing.assert_close(resampled, exact, atol=1e-4, rtol=0)


def test_unknown_family_refused() -> None:
    with pytest.raises(ConfigError, match="rotations"):
        extraction_size(16, "euler")
