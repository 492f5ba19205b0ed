"""Aligned particles as the eager heterogeneity loops take them, and their consensus.

:func:`aligned_set` checks the arrays once (particles ``(n, B, B, B)``, tilt ranges
``(n, 2)``, the consensus orientations and shifts ``(n, 3)``), draws the gold-standard half
sets unless given (:func:`~cryoflow.kernels.refine.split_halves`), and
:meth:`AlignedSet.consensus` averages the particles at their consensus poses
(:func:`~.pca_classify.consensus_round`). ``classify_multiref`` and ``refine_bodies`` both
start here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryoflow.errors import GeometryError
from cryoflow.kernels.align import AlignResult
from cryoflow.kernels.finish import RoundOutcome
from cryoflow.kernels.heterogeneity.pca_classify import consensus_round
from cryoflow.kernels.refine import split_halves


@dataclass(frozen=True)
class AlignedSet:
    """``volumes`` (n, B, B, B) float32, ``tilt_ranges`` (n, 2), ``alignment`` the consensus
    (orientations and shifts (n, 3)), ``half_ids`` (n,) 0 or 1."""

    volumes: np.ndarray
    tilt_ranges: np.ndarray
    alignment: AlignResult
    half_ids: np.ndarray

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(volumes, tilt_ranges, euler_deg, shifts_zyx_px, half_ids)``."""
        al = self.alignment
        return self.volumes, self.tilt_ranges, al.euler_deg, al.shifts_zyx_px, self.half_ids

    def consensus(
        self,
        voxel_size_angstrom: float,
        *,
        mask: np.ndarray | None = None,
        symmetry: str = "C1",
        batch_size: int = 32,
        device: str | torch.device = "cpu",
    ) -> RoundOutcome:
        """The consensus average, half maps, FSC and mask at the consensus poses."""
        return consensus_round(
            self.volumes,
            self.tilt_ranges,
            self.alignment,
            self.half_ids,
            voxel_size_angstrom=voxel_size_angstrom,
            mask=mask,
            symmetry=symmetry,
            batch_size=batch_size,
            device=device,
        )


def aligned_set(
    particles: np.ndarray,
    tilt_ranges: np.ndarray,
    consensus: tuple[np.ndarray, np.ndarray],
    half_ids: np.ndarray | None,
    *,
    seed: int,
    min_n: int = 1,
) -> AlignedSet:
    """The checked :class:`AlignedSet` (module docstring) of ``consensus`` = (orientations,
    shifts) (n, 3) each; ``half_ids`` None: a split drawn with ``seed``; at least ``min_n``
    particles."""
    euler_deg, shifts_zyx_px = consensus
    vols = np.asarray(particles, dtype=np.float32)
    tr = np.asarray(tilt_ranges, dtype=float).reshape(-1, 2)
    e = np.asarray(euler_deg, dtype=float).reshape(-1, 3)
    s = np.asarray(shifts_zyx_px, dtype=float).reshape(-1, 3)
    n = vols.shape[0] if vols.ndim else 0
    if vols.ndim != 4 or not (len(tr) == len(e) == len(s) == n) or n < int(min_n):
        raise GeometryError(
            f"need >= {int(min_n)} (n, B, B, B) particles with (n, 2) tilt ranges and (n, 3) "
            f"poses, got {vols.shape}, {tr.shape}, {e.shape}, {s.shape}"
        )
    halves = split_halves(n, seed) if half_ids is None else np.asarray(half_ids, dtype=int)
    return AlignedSet(vols, tr, AlignResult(e, s, np.zeros(n)), halves)
