"""``finish_round``: half maps, gold-standard FSC, resolution and the next round's references.

From a round's reduced :class:`~cryoflow.kernels.average.HalfSums`:

1. half maps ``data_h / max(weight_h, floor)`` and the average from both halves' sums together;
2. the FSC mask: the user's, or an automatic one from the average (:func:`~cryoflow.kernels.
   masks.auto_mask` on the average low-passed at the previous round's resolution);
3. the gold-standard FSC of the masked half maps; resolutions at 0.143 and 0.5 (voxels, Å);
4. next references: each half map weighted per shell by ``sqrt(2 FSC / (1 + FSC))`` of the
   gold-standard curve and low-passed at the FSC-0.143 resolution (halves stay independent:
   the curve is a number per shell, no half sees the other's map), the band limit of the next alignment at the same resolution, the supports
   (components whose weight reached the floor) for the wedge-aware score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryoflow.kernels.align import RoundReferences
from cryoflow.kernels.average import HalfSums, reconstruct
from cryoflow.kernels.fsc import FSCCurve, fsc, fsc_weighted, lowpass
from cryoflow.kernels.masks import auto_mask


@dataclass(frozen=True)
class RoundOutcome:
    """What one round produced. Maps are (B, B, B) float32; ``half_maps`` (2, B, B, B)."""

    half_maps: np.ndarray
    average: np.ndarray
    mask: np.ndarray
    fsc: FSCCurve
    resolution_0143_px: float
    resolution_05_px: float
    voxel_size_angstrom: float
    references: RoundReferences

    @property
    def resolution_0143_angstrom(self) -> float:
        """The gold-standard FSC-0.143 resolution in Å."""
        return self.resolution_0143_px * self.voxel_size_angstrom

    @property
    def resolution_05_angstrom(self) -> float:
        """The FSC-0.5 resolution in Å."""
        return self.resolution_05_px * self.voxel_size_angstrom


def full_support(weight_half: np.ndarray, floor: float) -> np.ndarray:
    """ndarray (B, B, B) float32, FFT order, full grid: 1 where the rfft ``weight >= floor``."""
    w = np.asarray(weight_half)
    box = w.shape[0]
    full = np.empty((box, box, box), dtype=np.float32)
    nx = box // 2 + 1
    full[..., :nx] = w >= floor
    neg = np.arange(nx, box)
    iz = (-np.arange(box)) % box
    full[..., nx:] = (w[iz][:, iz][..., box - neg] >= floor).astype(np.float32)
    return full


def finish_round(
    sums: HalfSums,
    *,
    voxel_size_angstrom: float,
    mask: np.ndarray | None = None,
    previous_resolution_px: float | None = None,
    weight_floor: float = 0.1,
    fsc_threshold: float = 0.143,
) -> RoundOutcome:
    """Finish a round (see module docstring).

    Parameters
    ----------
    sums : HalfSums
        The round's reduced partial sums.
    voxel_size_angstrom : float
    mask : ndarray (B, B, B), optional
        The user's soft mask for the FSC and the next alignment; default automatic.
    previous_resolution_px : float, optional
        Low-pass for the automatic mask's map (default: 8 voxels).
    weight_floor : float
        The reconstruction's floor as a fraction of each half's particle count.
    fsc_threshold : float
        The FSC threshold that sets the next references' low-pass (0.143, gold standard).
    """
    halves = np.stack(
        [
            reconstruct(sums.data[h], sums.weight[h], int(sums.count[h]), weight_floor=weight_floor)
            for h in range(2)
        ]
    )
    total = int(sums.count.sum())
    average = reconstruct(sums.data.sum(0), sums.weight.sum(0), total, weight_floor=weight_floor)
    res_prev = previous_resolution_px if previous_resolution_px is not None else 8.0
    m = (
        np.asarray(mask, dtype=np.float32)
        if mask is not None
        else auto_mask(lowpass(average, res_prev))
    )
    curve = fsc(halves[0], halves[1], m)
    r0143 = curve.resolution_px(0.143)
    r05 = curve.resolution_px(0.5)
    r_next = curve.resolution_px(fsc_threshold)
    refs = np.stack([fsc_weighted(halves[h], curve, r_next) for h in range(2)])
    supports = np.stack(
        [full_support(sums.weight[h], weight_floor * max(int(sums.count[h]), 1)) for h in range(2)]
    )
    return RoundOutcome(
        half_maps=halves,
        average=average,
        mask=m,
        fsc=curve,
        resolution_0143_px=r0143,
        resolution_05_px=r05,
        voxel_size_angstrom=float(voxel_size_angstrom),
        references=RoundReferences(refs, m, r_next, supports),
    )
