"""A template-free initial model from the particles themselves.

Steps (all particles together, one reference, no half sets yet):

1. every particle gets a uniformly random orientation (seeded) and no shift; their
   wedge-compensated Fourier average is a featureless blob of the particles' size and mass
   (the random orientations fill every wedge);
2. ``initial_rounds`` rounds of: global search (the refinement's global grid and levels) of
   every particle against the current model low-passed at ``initial_resolution_px``, then a new
   wedge-compensated average (with the symmetry, if any).

Symmetry breaking comes from the data: aligning noisy, asymmetric particles to a nearly
isotropic blob gives orientations that are not uniform in the shape's frame, so the next average
already carries the shape's largest asymmetric features, which the next round sharpens.
The result's frame is arbitrary (a template-free average is defined up to a rotation).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from cryoflow.geometry.rotation import random_euler
from cryoflow.kernels.align import AlignResult, RoundReferences, align_batch
from cryoflow.kernels.average import HalfSums, accumulate_batch, reconstruct
from cryoflow.kernels.fsc import lowpass
from cryoflow.kernels.masks import spherical_mask

if TYPE_CHECKING:
    from cryoflow.kernels.refine import RefineParams


def _average(
    vols: np.ndarray,
    tr: np.ndarray,
    al: AlignResult,
    symmetry: str,
    batch: int,
    weight_floor: float,
    device: str | torch.device,
) -> np.ndarray:
    sums = HalfSums.zeros(vols.shape[-1])
    zeros = np.zeros(len(vols), dtype=int)
    for lo in range(0, len(vols), batch):
        sl = slice(lo, lo + batch)
        sums = sums + accumulate_batch(
            vols[sl],
            al.euler_deg[sl],
            al.shifts_zyx_px[sl],
            tr[sl],
            zeros[sl],
            symmetry=symmetry,
            device=device,
        )
    return reconstruct(sums.data[0], sums.weight[0], int(sums.count[0]), weight_floor=weight_floor)


def initial_model(
    particles: np.ndarray,
    tilt_ranges: np.ndarray,
    *,
    params: RefineParams,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """ndarray (B, B, B): the initial model of ``particles`` (n, B, B, B) (see module doc)."""
    vols = np.asarray(particles, dtype=np.float32)
    tr = np.asarray(tilt_ranges, dtype=float).reshape(-1, 2)
    n, box = vols.shape[0], vols.shape[-1]
    rng = np.random.default_rng(params.seed + 1)
    al = AlignResult(random_euler(rng, n), np.zeros((n, 3)), np.zeros(n))
    model = _average(vols, tr, al, params.symmetry, params.batch_size, params.weight_floor, device)
    mask = spherical_mask(box, box / 2.0 - 4.0, 3.0)
    search = replace(params.search(0, mask), global_step_deg=params.global_step_deg)
    for _ in range(int(params.initial_rounds)):
        refs = RoundReferences(
            lowpass(model, params.initial_resolution_px)[None], mask, params.initial_resolution_px
        )
        parts = [
            align_batch(
                vols[lo : lo + params.batch_size],
                tr[lo : lo + params.batch_size],
                refs,
                search,
                device=device,
            )
            for lo in range(0, n, params.batch_size)
        ]
        al = AlignResult(
            np.concatenate([p.euler_deg for p in parts]),
            np.concatenate([p.shifts_zyx_px for p in parts]),
            np.concatenate([p.scores for p in parts]),
        )
        model = _average(
            vols, tr, al, params.symmetry, params.batch_size, params.weight_floor, device
        )
    return model
