"""Class averages through the averaging kernels: per-class Fourier sums, added as a tree.

Each class's sums are :class:`cryoflow.kernels.average.HalfSums` of its particles
(:func:`~cryoflow.kernels.average.accumulate_batch`: wedge-compensated, shifts undone, both
gold-standard halves kept apart); a batch returns one per class, :class:`ClassSums` add
element-wise (associative), and :func:`finish_classes` divides data by weight with the
averaging's floor (:func:`~cryoflow.kernels.average.reconstruct`) over both halves of a class.
The consensus average is the one-class case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryoflow.errors import GeometryError
from cryoflow.kernels.average import HalfSums, accumulate_batch, reconstruct
from cryoflow.kernels.fourier_rotate import box_side


@dataclass(frozen=True)
class ClassSums:
    """One :class:`HalfSums` per class (``len(sums) = K``)."""

    sums: tuple[HalfSums, ...]

    def __add__(self, other: ClassSums) -> ClassSums:
        if not isinstance(other, ClassSums):
            return NotImplemented
        if len(other.sums) != len(self.sums):
            raise GeometryError(
                f"cannot add sums of {len(self.sums)} and {len(other.sums)} classes"
            )
        return ClassSums(tuple(a + b for a, b in zip(self.sums, other.sums, strict=True)))


def accumulate_classes(
    particles: np.ndarray,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    tilt_ranges: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    half_ids: np.ndarray | None = None,
    symmetry: str = "C1",
    device: str | torch.device = "cpu",
) -> ClassSums:
    """Per-class partial sums of a batch.

    Parameters
    ----------
    particles : ndarray (n, B, B, B); euler_deg (n, 3); shifts_zyx_px (n, 3); tilt_ranges (n, 2)
        As for :func:`~cryoflow.kernels.average.accumulate_batch`.
    labels : ndarray of shape (n,)
        Class of each particle, ``0 .. n_classes - 1``.
    half_ids : ndarray of shape (n,), optional
        Gold-standard halves (0/1); default all 0.
    """
    box = box_side(np.asarray(particles))
    lab = np.asarray(labels, dtype=int).reshape(-1)
    n = len(lab)
    if n != len(particles) or (n and (lab.min() < 0 or lab.max() >= int(n_classes))):
        raise GeometryError(
            f"need one label in 0..{int(n_classes) - 1} per particle, got {n} labels for "
            f"{len(particles)} particles"
        )
    halves = np.zeros(n, int) if half_ids is None else np.asarray(half_ids, dtype=int).reshape(-1)
    e = np.asarray(euler_deg, dtype=float).reshape(-1, 3)
    s = np.asarray(shifts_zyx_px, dtype=float).reshape(-1, 3)
    tr = np.asarray(tilt_ranges, dtype=float).reshape(-1, 2)
    out = []
    for k in range(int(n_classes)):
        sel = np.flatnonzero(lab == k)
        if len(sel) == 0:
            out.append(HalfSums.zeros(box))
            continue
        out.append(
            accumulate_batch(
                np.asarray(particles)[sel],
                e[sel],
                s[sel],
                tr[sel],
                halves[sel],
                symmetry=symmetry,
                device=device,
            )
        )
    return ClassSums(tuple(out))


def finish_classes(sums: ClassSums, *, weight_floor: float = 0.1) -> np.ndarray:
    """ndarray (K, B, B, B) float32: each class's average over both halves (zeros if empty)."""
    maps = []
    for hs in sums.sums:
        count = int(hs.count.sum())
        if count == 0:
            maps.append(np.zeros((hs.box,) * 3, np.float32))
            continue
        maps.append(reconstruct(hs.data.sum(0), hs.weight.sum(0), count, weight_floor=weight_floor))
    return np.stack(maps)


def consensus_average(
    particles: np.ndarray,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    tilt_ranges: np.ndarray,
    *,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """ndarray (B, B, B): the wedge-compensated average of all particles (one class)."""
    n = len(particles)
    sums = accumulate_classes(
        particles, euler_deg, shifts_zyx_px, tilt_ranges, np.zeros(n, int), 1, device=device
    )
    return finish_classes(sums)[0]
