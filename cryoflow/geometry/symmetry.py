"""Point-group symmetry ``C1``, ``Cn`` and ``Dn``: operators and symmetric orientation distances.

Convention (RELION's and the contract's reference frame, acting on ``(x, y, z)``):

- ``Cn``: rotations by ``360 k / n`` degrees about ``z``, ``k = 0 .. n-1``.
- ``Dn``: ``Cn`` plus the two-fold rotations about axes in the ``xy`` plane, the first along ``x``
  (``2n`` operators).

A reference with symmetry ``G`` satisfies ``ref(g^-1 r) = ref(r)`` for every ``g`` in ``G``, so an
orientation ``R`` (reference -> tomogram) and ``R @ g`` describe the same particle. Distances
between orientations are therefore the minimum over ``g`` of the angle of ``A^T B g``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.spatial.transform import Rotation

from cryoflow.errors import ConfigError
from cryoflow.geometry.rotation import XYZ_TO_ZYX, angular_distance_deg

_PATTERN = re.compile(r"^([CD])([1-9][0-9]*)$")


@dataclass(frozen=True)
class SymmetryGroup:
    """A point group ``C<n>`` or ``D<n>``; ``parse_symmetry("C1")`` is no symmetry."""

    kind: str  # "C" or "D"
    order: int  # n

    @property
    def name(self) -> str:
        """The group's name, e.g. ``"D7"``."""
        return f"{self.kind}{self.order}"

    @cached_property
    def operators_xyz(self) -> np.ndarray:
        """ndarray of shape (|G|, 3, 3): the operators acting on ``(x, y, z)``, identity first."""
        angles = 2.0 * np.pi * np.arange(self.order) / self.order
        cn = Rotation.from_rotvec(np.outer(angles, [0.0, 0.0, 1.0])).as_matrix()
        if self.kind == "C":
            return cn
        flip = np.diag([1.0, -1.0, -1.0])  # two-fold about x
        return np.concatenate([cn, cn @ flip])

    @property
    def operators_zyx(self) -> np.ndarray:
        """ndarray of shape (|G|, 3, 3): the same operators acting on ``(z, y, x)``."""
        return XYZ_TO_ZYX @ self.operators_xyz @ XYZ_TO_ZYX

    def __len__(self) -> int:
        return self.order * (2 if self.kind == "D" else 1)

    def expand_xyz(self, matrices_xyz: np.ndarray) -> np.ndarray:
        """ndarray of shape (n, |G|, 3, 3): every orientation's equivalents ``R @ g``."""
        m = np.asarray(matrices_xyz, dtype=float).reshape(-1, 3, 3)
        return np.einsum("nij,gjk->ngik", m, self.operators_xyz)

    def distance_deg(self, a_xyz: np.ndarray, b_xyz: np.ndarray) -> np.ndarray:
        """ndarray of shape (...): ``min over g`` of the angle (deg) between ``A`` and ``B g``.

        ``a_xyz`` and ``b_xyz`` are ``(..., 3, 3)`` orientations (reference -> tomogram).
        """
        a = np.asarray(a_xyz, dtype=float)
        b = np.asarray(b_xyz, dtype=float)
        bg = b[..., None, :, :] @ self.operators_xyz  # (..., |G|, 3, 3)
        d = angular_distance_deg(a[..., None, :, :], bg)
        return d.min(axis=-1)


def parse_symmetry(value: str | SymmetryGroup) -> SymmetryGroup:
    """A :class:`SymmetryGroup` from ``"C1"``, ``"C6"``, ``"D7"`` (case-insensitive)."""
    if isinstance(value, SymmetryGroup):
        return value
    m = _PATTERN.match(str(value).strip().upper())
    if m is None:
        raise ConfigError(
            f"symmetry must be C<n> or D<n> with n >= 1 (C1 = none), e.g. C1, C6, D7; got {value!r}"
        )
    return SymmetryGroup(m.group(1), int(m.group(2)))
