"""Partial Fourier sums of several maps at once (classes or bodies), and their finish.

:class:`GroupSums` holds one :class:`~cryoflow.kernels.average.HalfSums` per group (a class
of multi-reference classification, a body of multi-body refinement): each group has its own
gold-standard halves, its own wedge weights (so every class is wedge-compensated on its own
particles) and its own count. ``a + b`` adds group by group, so a round's batches reduce as a
tree in any order, exactly as the averaging sums do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import numpy as np
import torch

from cryoflow.errors import GeometryError
from cryoflow.geometry.symmetry import SymmetryGroup
from cryoflow.kernels.average import HalfSums, accumulate_batch
from cryoflow.kernels.finish import RoundOutcome, finish_round


@dataclass(frozen=True)
class GroupSums:
    """One :class:`HalfSums` per group, all of one box; ``groups[k]`` is group ``k``."""

    groups: tuple[HalfSums, ...]

    def __post_init__(self) -> None:
        if not self.groups:
            raise GeometryError("GroupSums needs at least one group")
        boxes = {g.box for g in self.groups}
        if len(boxes) != 1:
            raise GeometryError(f"every group's sums must share one box, got boxes {boxes}")

    @classmethod
    def zeros(cls, n_groups: int, box: int) -> GroupSums:
        """Empty sums of ``n_groups`` groups for a box of side ``box``."""
        if int(n_groups) < 1:
            raise GeometryError(f"need n_groups >= 1, got {n_groups}")
        return cls(tuple(HalfSums.zeros(box) for _ in range(int(n_groups))))

    @property
    def n_groups(self) -> int:
        """The number of groups ``K``."""
        return len(self.groups)

    @property
    def counts(self) -> np.ndarray:
        """ndarray (K,) int: particles summed into each group (both halves, symmetry copies)."""
        return np.array([int(g.count.sum()) for g in self.groups], dtype=np.int64)

    def __add__(self, other: GroupSums) -> GroupSums:
        if not isinstance(other, GroupSums):
            return NotImplemented
        if other.n_groups != self.n_groups:
            raise GeometryError(f"cannot add sums of {self.n_groups} and {other.n_groups} groups")
        return GroupSums(tuple(a + b for a, b in zip(self.groups, other.groups, strict=True)))


def accumulate_groups(
    particles: np.ndarray,
    group_ids: np.ndarray,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    tilt_ranges: np.ndarray,
    half_ids: np.ndarray,
    *,
    n_groups: int,
    symmetry: str | SymmetryGroup = "C1",
    device: str | torch.device = "cpu",
) -> GroupSums:
    """Each particle added to its own group's sums (:func:`accumulate_batch` per group).

    Parameters
    ----------
    particles : ndarray of shape (n, B, B, B)
    group_ids : ndarray of shape (n,)
        Integers ``0 .. n_groups - 1`` (a particle with a negative id is left out).
    euler_deg, shifts_zyx_px : ndarray of shape (n, 3)
        Each particle's orientation and shift (contract convention, the group's frame).
    tilt_ranges : ndarray of shape (n, 2)
    half_ids : ndarray of shape (n,)
        0 or 1: the particle's gold-standard half.
    """
    v = np.asarray(particles)
    ids = np.asarray(group_ids, dtype=int).reshape(-1)
    n = v.shape[0] if v.ndim == 4 else -1
    if v.ndim != 4 or ids.shape != (n,):
        raise GeometryError(
            f"need (n, B, B, B) particles and (n,) group ids, got {v.shape} and {ids.shape}"
        )
    if n and ids.max(initial=-1) >= int(n_groups):
        raise GeometryError(f"group ids must lie in 0 .. {int(n_groups) - 1}, got {ids.max()}")
    e = np.asarray(euler_deg, dtype=float).reshape(-1, 3)
    s = np.asarray(shifts_zyx_px, dtype=float).reshape(-1, 3)
    tr = np.asarray(tilt_ranges, dtype=float).reshape(-1, 2)
    h = np.asarray(half_ids, dtype=int).reshape(-1)
    box = v.shape[-1]
    out = []
    for k in range(int(n_groups)):
        sel = np.nonzero(ids == k)[0]
        if sel.size == 0:
            out.append(HalfSums.zeros(box))
            continue
        out.append(
            accumulate_batch(
                v[sel], e[sel], s[sel], tr[sel], h[sel], symmetry=symmetry, device=device
            )
        )
    return GroupSums(tuple(out))


def finish_groups(
    sums: GroupSums,
    *,
    voxel_size_angstrom: float,
    mask: np.ndarray | None,
    previous_resolution_px: float | None = None,
    weight_floor: float = 0.1,
) -> tuple[RoundOutcome | None, ...]:
    """:func:`~cryoflow.kernels.finish.finish_round` per group (None for an empty group).

    ``mask`` (B, B, B): one mask for every group (each group's FSC and next alignment), or
    None for each group's automatic mask.
    """
    return tuple(
        finish_round(
            g,
            voxel_size_angstrom=voxel_size_angstrom,
            mask=mask,
            previous_resolution_px=previous_resolution_px,
            weight_floor=weight_floor,
        )
        if int(g.count.sum()) > 0
        else None
        for g in sums.groups
    )


class _Addable(Protocol):
    def __add__(self, other: Any, /) -> Any: ...


T = TypeVar("T", bound=_Addable)


def tree_sum(parts: Sequence[T]) -> T:
    """Pairwise sum of associative partial sums (as a distributed round reduces them)."""
    items = list(parts)
    if not items:
        raise GeometryError("nothing to sum: no partial sums were given")
    while len(items) > 1:
        items = [
            cast(T, items[i] + items[i + 1]) if i + 1 < len(items) else items[i]
            for i in range(0, len(items), 2)
        ]
    return items[0]
