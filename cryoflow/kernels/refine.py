"""An eager, in-memory reference refinement: rounds of align -> accumulate -> finish.

The same three pure pieces a distributed round maps (:func:`~cryoflow.kernels.align.
align_batch` per batch, :class:`~cryoflow.kernels.average.HalfSums` summed as a tree,
:func:`~cryoflow.kernels.finish.finish_round` once), run here in one process, batch by batch:

1. half sets: a seeded random, balanced split (gold standard), unless given;
2. start: the user's reference, or the template-free initial model
   (:func:`~cryoflow.kernels.initial_model.initial_model`), low-passed to
   ``initial_resolution_px`` and given to both halves;
3. rounds ``1 .. global_rounds``: global grid then local levels; later rounds: local levels
   around the previous orientations and shifts;
4. every round: each half aligned to its own reference, both halves' sums, gold-standard FSC,
   the next references low-passed at the FSC-0.143 resolution (also the next band limit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.geometry.symmetry import parse_symmetry
from cryoflow.kernels.align import AlignResult, RoundReferences, SearchParams, align_batch
from cryoflow.kernels.average import HalfSums, accumulate_batch
from cryoflow.kernels.finish import RoundOutcome, finish_round
from cryoflow.kernels.fsc import lowpass
from cryoflow.kernels.initial_model import initial_model
from cryoflow.kernels.masks import mask_radius_px, spherical_mask


@dataclass(frozen=True)
class RefineParams:
    """Settings of a refinement (angles in degrees, lengths in voxels)."""

    rounds: int = 5
    global_rounds: int = 1
    global_step_deg: float = 20.0
    global_levels: tuple[tuple[float, float], ...] = ((8.0, 16.0), (3.0, 6.0))
    local_levels: tuple[tuple[float, float], ...] = ((2.0, 5.0), (1.0, 2.0))
    max_shift_px: float = 3.0
    initial_resolution_px: float = 4.0
    highpass_px: float | None = None
    highpass_mask_factor: float = 1.3
    symmetry: str = "C1"
    weight_floor: float = 0.1
    top_k: int = 5
    batch_size: int = 32
    initial_rounds: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.rounds) < 1 or not 0 <= int(self.global_rounds) <= int(self.rounds):
            raise ConfigError(
                f"need rounds >= 1 and 0 <= global_rounds <= rounds, got rounds={self.rounds}, "
                f"global_rounds={self.global_rounds}"
            )
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        parse_symmetry(self.symmetry)

    def highpass_for(self, mask: np.ndarray) -> float:
        """The score's high-pass period (voxels): ``highpass_px``, else ``highpass_mask_factor``
        times the radius of the alignment mask (periods longer than about the particle's size
        carry its rotation-blind envelope and the masks' edges, not its orientation)."""
        if self.highpass_px is not None:
            return float(self.highpass_px)
        return self.highpass_mask_factor * max(mask_radius_px(mask), 2.0)

    def search(self, round_index: int, mask: np.ndarray) -> SearchParams:
        """The search of round ``round_index`` (0-based) with alignment mask ``mask``."""
        hp = self.highpass_for(mask)
        if round_index < self.global_rounds:
            return SearchParams(
                self.global_step_deg, self.global_levels, self.max_shift_px, self.top_k, hp
            )
        return SearchParams(None, self.local_levels, self.max_shift_px, 1, hp)


@dataclass(frozen=True)
class RefineResult:
    """The last round's outcome, every particle's alignment and half set, and the history."""

    outcome: RoundOutcome
    alignment: AlignResult
    half_ids: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)


def split_halves(n: int, seed: int) -> np.ndarray:
    """ndarray (n,) of 0/1: a seeded random split into two halves of sizes differing by <= 1."""
    ids = np.arange(n) % 2
    return np.random.default_rng(seed).permutation(ids)


def align_all(
    particles: np.ndarray,
    tilt_ranges: np.ndarray,
    references: RoundReferences,
    search: SearchParams,
    half_ids: np.ndarray,
    priors: AlignResult | None,
    batch_size: int,
    device: str | torch.device,
) -> AlignResult:
    """:func:`align_batch` over batches of ``batch_size`` particles, concatenated."""
    parts = []
    for lo in range(0, len(particles), batch_size):
        sl = slice(lo, lo + batch_size)
        parts.append(
            align_batch(
                particles[sl],
                tilt_ranges[sl],
                references,
                search,
                half_ids=half_ids[sl],
                priors_euler_deg=None if priors is None else priors.euler_deg[sl],
                priors_shifts_zyx_px=None if priors is None else priors.shifts_zyx_px[sl],
                device=device,
            )
        )
    return AlignResult(
        np.concatenate([p.euler_deg for p in parts]),
        np.concatenate([p.shifts_zyx_px for p in parts]),
        np.concatenate([p.scores for p in parts]),
    )


def accumulate_all(
    particles: np.ndarray,
    alignment: AlignResult,
    tilt_ranges: np.ndarray,
    half_ids: np.ndarray,
    *,
    symmetry: str,
    batch_size: int,
    device: str | torch.device,
) -> HalfSums:
    """:func:`accumulate_batch` over batches, the partial sums added pairwise (a tree)."""
    sums = [
        accumulate_batch(
            particles[lo : lo + batch_size],
            alignment.euler_deg[lo : lo + batch_size],
            alignment.shifts_zyx_px[lo : lo + batch_size],
            tilt_ranges[lo : lo + batch_size],
            half_ids[lo : lo + batch_size],
            symmetry=symmetry,
            device=device,
        )
        for lo in range(0, len(particles), batch_size)
    ]
    while len(sums) > 1:
        sums = [
            sums[i] + sums[i + 1] if i + 1 < len(sums) else sums[i] for i in range(0, len(sums), 2)
        ]
    return sums[0]


def refine(
    particles: np.ndarray,
    tilt_ranges: np.ndarray,
    *,
    voxel_size_angstrom: float,
    params: RefineParams | None = None,
    reference: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    half_ids: np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> RefineResult:
    """Refine a reference from ``particles`` (n, B, B, B) with tilt ranges (n, 2).

    ``reference`` (B, B, B): the start (the result lies in its frame), else template-free;
    ``mask`` (B, B, B): the user's soft mask (else automatic each round).
    """
    p = params if params is not None else RefineParams()
    vols = np.asarray(particles, dtype=np.float32)
    tr = np.asarray(tilt_ranges, dtype=float).reshape(-1, 2)
    n, box = vols.shape[0], vols.shape[-1]
    if vols.ndim != 4 or tr.shape[0] != n or n < 2:
        raise GeometryError(
            f"refine needs >= 2 particles (n, B, B, B) and (n, 2) tilt ranges, got {vols.shape} "
            f"and {tr.shape}"
        )
    halves = split_halves(n, p.seed) if half_ids is None else np.asarray(half_ids, dtype=int)
    # 1. the start, low-passed, for both halves
    if reference is None:
        start = initial_model(vols, tr, params=p, device=device)
    else:
        start = np.asarray(reference, dtype=np.float32)
        if start.shape != (box,) * 3:
            raise GeometryError(
                f"the reference must be a ({box}, {box}, {box}) map, got {start.shape}"
            )
    first_mask = mask if mask is not None else spherical_mask(box, box / 2.0 - 4.0, 3.0)
    refs = RoundReferences(
        np.stack([lowpass(start, p.initial_resolution_px)] * 2),
        np.asarray(first_mask, np.float32),
        p.initial_resolution_px,
    )
    alignment: AlignResult | None = None
    history: list[dict[str, float]] = []
    outcome: RoundOutcome | None = None
    for r in range(p.rounds):
        search = p.search(r, refs.mask)
        priors = alignment if search.global_step_deg is None else None
        alignment = align_all(vols, tr, refs, search, halves, priors, p.batch_size, device)
        sums = accumulate_all(
            vols,
            alignment,
            tr,
            halves,
            symmetry=p.symmetry,
            batch_size=p.batch_size,
            device=device,
        )
        outcome = finish_round(
            sums,
            voxel_size_angstrom=voxel_size_angstrom,
            mask=mask,
            previous_resolution_px=refs.resolution_px,
            weight_floor=p.weight_floor,
        )
        history.append(
            {
                "round": float(r + 1),
                "band_px": float(refs.resolution_px),
                "fsc0143_px": outcome.resolution_0143_px,
                "fsc05_px": outcome.resolution_05_px,
                "mean_score": float(np.mean(alignment.scores)),
            }
        )
        refs = outcome.references
    assert outcome is not None and alignment is not None
    return RefineResult(outcome, alignment, halves, history)
