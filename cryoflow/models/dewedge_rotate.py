"""Rotating training boxes so that their missing wedge lands elsewhere.

A box ``b`` rotated by ``R`` (acting on centred ``(z, y, x)`` voxel offsets) is
``b_R(p) = b(R^T p)``; its transform is ``F(b)(R^T k)``, so a box measured on the wedge ``W``
is measured on ``W(R^T k)`` after rotation: :func:`rotated_wedge` (``wedge_mask`` with
``rotation_zyx = R^T``).

Two families:

- ``"cube"`` (IsoNet): the 24 rotations of the cube, applied exactly by transposes and flips
  (no interpolation). The rotations whose rotated wedge equals the wedge teach nothing about
  filling and are left out (:func:`cube_rotations`).
- ``"random"`` (DeepDeWedge): uniform rotations of SO(3), applied by trilinear resampling of a
  larger box (side ``ceil(sqrt(3) * box)``, so the rotated box has no empty corners) with
  :func:`torch.nn.functional.grid_sample`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from cryoflow.errors import ConfigError
from cryoflow.geometry.rotation import XYZ_TO_ZYX
from cryoflow.kernels.wedge import wedge_mask

ROTATIONS = ("cube", "random")


def rotated_wedge(
    shape: Sequence[int], tilt_range_deg: Sequence[float], rotation_zyx: np.ndarray
) -> np.ndarray:
    """Bool ndarray of shape (Z, Y, X // 2 + 1) (rfft order): where a rotated box is measured."""
    return wedge_mask(shape, tilt_range_deg, rotation_zyx=np.asarray(rotation_zyx).T, rfft=True)


def _signed_permutations() -> list[np.ndarray]:
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            for i, j in enumerate(perm):
                m[i, j] = signs[i]
            if np.linalg.det(m) > 0:
                out.append(m)
    return out


@lru_cache(maxsize=32)
def _cube_rotations(tilt_range_deg: tuple[float, float], box: int) -> tuple[np.ndarray, ...]:
    base = wedge_mask((box, box, box), tilt_range_deg, rfft=True)
    keep = []
    for m in _signed_permutations():
        if not np.array_equal(rotated_wedge((box, box, box), tilt_range_deg, m), base):
            keep.append(m)
    return tuple(keep)


def cube_rotations(tilt_range_deg: Sequence[float], box: int) -> tuple[np.ndarray, ...]:
    """The cube rotations (``(3, 3)`` signed permutations on ``(z, y, x)``) that move the wedge.

    For a symmetric range 20 of the 24 remain (IsoNet's set); the identity never does.
    """
    lo, hi = (float(v) for v in tilt_range_deg)
    return _cube_rotations((lo, hi), int(box))


def rotate_cube(volumes: torch.Tensor, rotation_zyx: np.ndarray) -> torch.Tensor:
    """``(..., n, n, n)`` boxes rotated exactly by a signed permutation ``R``: ``b(R^T p)``."""
    m = np.asarray(rotation_zyx)
    lead = volumes.ndim - 3
    # output axis i reads input axis perm[i], reversed where the entry is -1
    perm = [int(np.flatnonzero(m[i])[0]) for i in range(3)]
    out = volumes.permute(*range(lead), *(lead + p for p in perm))
    flips = [lead + i for i in range(3) if m[i, perm[i]] < 0]
    return torch.flip(out, flips) if flips else out


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """ndarray of shape (n, 3, 3): uniform rotations acting on ``(z, y, x)``."""
    m_xyz = Rotation.random(n, random_state=rng).as_matrix()
    return XYZ_TO_ZYX @ m_xyz @ XYZ_TO_ZYX


def extraction_size(box: int, rotations: str) -> int:
    """Side of the box to cut so that a rotated ``box`` has no empty corners."""
    if rotations not in ROTATIONS:
        raise ConfigError(f"rotations must be one of {list(ROTATIONS)}, got {rotations!r}")
    if rotations == "cube":
        return int(box)
    side = int(np.ceil(np.sqrt(3.0) * box))
    return side + (side - box) % 2  # same parity: the centres coincide


def rotate_resample(volumes: torch.Tensor, rotations_zyx: np.ndarray, box: int) -> torch.Tensor:
    """Trilinear rotation of ``(B, 1, L, L, L)`` boxes about their centres, cropped to ``box``.

    Returns ``(B, 1, box, box, box)`` with ``out_b(p) = in_b(R_b^T p)`` (centred offsets).
    """
    b, _, side = volumes.shape[0], volumes.shape[1], volumes.shape[-1]
    r = torch.as_tensor(np.asarray(rotations_zyx), dtype=volumes.dtype, device=volumes.device)
    # affine_grid works in (x, y, z) order and normalised units (align_corners=True)
    rev = torch.as_tensor(XYZ_TO_ZYX, dtype=volumes.dtype, device=volumes.device)
    theta = torch.zeros(b, 3, 4, dtype=volumes.dtype, device=volumes.device)
    theta[:, :, :3] = rev @ r.transpose(1, 2) @ rev * ((box - 1) / (side - 1))
    grid = torch.nn.functional.affine_grid(theta, [b, 1, box, box, box], align_corners=True)
    return torch.nn.functional.grid_sample(
        volumes, grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
