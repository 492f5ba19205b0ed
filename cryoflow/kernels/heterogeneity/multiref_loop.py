"""An eager multi-reference classification (``--method multiref``): rounds of classify -> finish.

The pieces a distributed round maps (:func:`~.multiref.classify_batch` per batch, the
:class:`~.groups.GroupSums` summed as a tree, :func:`~.multiref.finish_classes` once), run
here in one process:

1. half sets (gold standard, for the per-class FSC): a seeded random split unless given;
2. the consensus average of the aligned particles, and its automatic mask unless one is given
   (every class is scored and its FSC taken under this one mask, which holds every
   conformation because it is cut from their average);
3. seeds (``seed_method``): ``"pca"`` (default) the PCA + k-means split
   (:func:`~.pca_classify.classify_pca`) at the consensus resolution; ``"random"`` random
   subsets; or ``initial_assignments`` given; the seed classes are averaged
   (:func:`~.groups.accumulate_groups`) into the first references;
4. rounds: every particle scored against every class near its consensus pose
   (``local_levels``: local re-alignment per class, none by default), assigned to its best,
   the classes re-averaged; a class left with fewer than ``min_count`` particles is reseeded
   (:func:`~.multiref.reseed_assignments`) and the sums are made again from the new
   assignments; stop when at most ``tolerance`` of the particles changed class (and nothing
   was reseeded), or after ``iterations`` rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.geometry.symmetry import parse_symmetry
from cryoflow.kernels.align import SearchParams
from cryoflow.kernels.finish import RoundOutcome
from cryoflow.kernels.heterogeneity.aligned import aligned_set
from cryoflow.kernels.heterogeneity.groups import GroupSums, accumulate_groups, tree_sum
from cryoflow.kernels.heterogeneity.multiref import (
    ClassifyBatch,
    ClassReferences,
    ClassRound,
    classify_batch,
    finish_classes,
    reseed_assignments,
)
from cryoflow.kernels.heterogeneity.pca_classify import PcaParams, classify_pca
from cryoflow.kernels.masks import mask_radius_px

SEED_METHODS = ("pca", "random")


@dataclass(frozen=True)
class MultirefParams:
    """Settings of a multi-reference classification (angles in degrees, lengths in voxels).

    ``resolution_px`` None: the common band follows the classes' FSC (the coarsest);
    ``min_class_fraction``: a class holding fewer than this share of the particles (and
    never fewer than 2) is reseeded; ``tolerance``: the share of changed assignments at which
    the rounds stop.
    """

    n_classes: int = 2
    iterations: int = 10
    seed_method: str = "pca"
    local_levels: tuple[tuple[float, float], ...] = ()
    global_step_deg: float | None = None
    top_k: int = 5
    max_shift_px: float = 3.0
    resolution_px: float | None = None
    highpass_mask_factor: float = 1.3
    min_class_fraction: float = 0.02
    tolerance: float = 0.005
    symmetry: str = "C1"
    weight_floor: float = 0.1
    batch_size: int = 32
    seed: int = 0
    pca: PcaParams = field(default_factory=PcaParams)

    def __post_init__(self) -> None:
        if int(self.n_classes) < 1:
            raise ConfigError(f"n_classes must be >= 1, got {self.n_classes}")
        if int(self.iterations) < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.iterations}")
        if self.seed_method not in SEED_METHODS:
            raise ConfigError(
                f"seed_method must be one of {', '.join(SEED_METHODS)}, got {self.seed_method!r}"
            )
        if not 0 <= self.min_class_fraction < 1 or not 0 <= self.tolerance < 1:
            raise ConfigError("min_class_fraction and tolerance must lie in [0, 1)")
        parse_symmetry(self.symmetry)


@dataclass(frozen=True)
class MultirefResult:
    """Every particle's class (``assignments`` (n,)), scores (n, K), pose in its class
    (``euler_deg``, ``shifts_zyx_px`` (n, 3)), the last round, the consensus, the half sets,
    and per round: ``changed`` share, class counts, band, reseeded classes."""

    assignments: np.ndarray
    scores: np.ndarray
    euler_deg: np.ndarray
    shifts_zyx_px: np.ndarray
    last: ClassRound
    consensus: RoundOutcome
    half_ids: np.ndarray
    seeds: np.ndarray
    history: list[dict[str, object]]


def _accumulate(
    vols: np.ndarray,
    assign: np.ndarray,
    e: np.ndarray,
    s: np.ndarray,
    tr: np.ndarray,
    halves: np.ndarray,
    p: MultirefParams,
    device: str | torch.device,
) -> GroupSums:
    bs = int(p.batch_size)
    return tree_sum(
        [
            accumulate_groups(
                vols[lo : lo + bs],
                assign[lo : lo + bs],
                e[lo : lo + bs],
                s[lo : lo + bs],
                tr[lo : lo + bs],
                halves[lo : lo + bs],
                n_groups=p.n_classes,
                symmetry=p.symmetry,
                device=device,
            )
            for lo in range(0, len(vols), bs)
        ]
    )


def classify_multiref(
    particles: np.ndarray,
    tilt_ranges: np.ndarray,
    *,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    voxel_size_angstrom: float,
    params: MultirefParams | None = None,
    mask: np.ndarray | None = None,
    half_ids: np.ndarray | None = None,
    initial_assignments: np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> MultirefResult:
    """Classify aligned particles (n, B, B, B) into ``n_classes`` (see module docstring).

    ``euler_deg``/``shifts_zyx_px`` (n, 3): the consensus alignment; ``tilt_ranges`` (n, 2);
    ``mask`` (B, B, B): the user's (else automatic from the consensus);
    ``initial_assignments`` (n,): seed classes (overrides ``seed_method``).
    """
    p = params if params is not None else MultirefParams()
    data = aligned_set(particles, tilt_ranges, (euler_deg, shifts_zyx_px), half_ids, seed=p.seed)
    vols, tr, e, s, halves = data.arrays()
    n = len(vols)
    k_all = int(p.n_classes)
    min_count = max(2, int(np.ceil(p.min_class_fraction * n)))
    if min_count * k_all > n:
        raise ConfigError(f"{n} particles are too few for {k_all} classes of >= {min_count}")
    rng = np.random.default_rng([p.seed, 1])  # not the half split's stream
    # 1. the consensus and the common mask
    consensus = data.consensus(
        voxel_size_angstrom,
        mask=mask,
        symmetry=p.symmetry,
        batch_size=p.batch_size,
        device=device,
    )
    common = consensus.mask
    hp = p.highpass_mask_factor * max(mask_radius_px(common), 2.0)
    search = SearchParams(
        p.global_step_deg,
        p.local_levels,
        max(p.max_shift_px, float(np.abs(s).max(initial=0.0)) + 1.0),
        top_k=p.top_k,
    )
    # 2. seeds
    if initial_assignments is not None:
        assign = np.asarray(initial_assignments, dtype=int).reshape(-1)
        if assign.shape != (n,) or assign.min() < 0 or assign.max() >= k_all:
            raise GeometryError(f"initial_assignments must be (n,) classes 0 .. {k_all - 1}")
    elif p.seed_method == "random":
        assign = rng.permutation(np.arange(n) % k_all)
    else:
        pca = classify_pca(
            vols,
            tr,
            euler_deg=e,
            shifts_zyx_px=s,
            average=consensus.average,
            mask=common,
            resolution_px=p.resolution_px or consensus.resolution_0143_px,
            params=replace(p.pca, n_classes=k_all, seed=p.seed),
            device=device,
        )
        assign = pca.labels
    seeds = assign.copy()
    scores = np.zeros((n, k_all))
    assign, reseeded = reseed_assignments(assign, scores, min_count=min_count)
    sums = _accumulate(vols, assign, e, s, tr, halves, p, device)
    rnd = _finish(sums, common, hp, p, voxel_size_angstrom)
    best_e, best_s = e.copy(), s.copy()
    history: list[dict[str, object]] = []
    for it in range(int(p.iterations)):
        refs = rnd.references
        parts = [
            _classify(vols, tr, refs, search, e, s, halves, lo, p, device)
            for lo in range(0, n, int(p.batch_size))
        ]
        new = np.concatenate([b.assignments for b in parts])
        scores = np.concatenate([b.scores for b in parts])
        best_e = np.concatenate([b.euler_deg for b in parts])
        best_s = np.concatenate([b.shifts_zyx_px for b in parts])
        changed = float(np.mean(new != assign))
        assign = new
        sums = tree_sum([b.sums for b in parts if b.sums is not None])
        assign, reseeded = reseed_assignments(assign, scores, min_count=min_count)
        if reseeded:
            moved = assign != new
            best_e[moved], best_s[moved] = e[moved], s[moved]
            sums = _accumulate(vols, assign, best_e, best_s, tr, halves, p, device)
        rnd = _finish(sums, common, hp, p, voxel_size_angstrom)
        history.append(
            {
                "round": it + 1,
                "changed": changed,
                "counts": np.bincount(assign, minlength=k_all).tolist(),
                "band_px": float(refs.resolution_px),
                "mean_best_score": float(scores.max(axis=1).mean()),
                "reseeded": reseeded,
            }
        )
        if changed <= p.tolerance and not reseeded:
            break
    return MultirefResult(assign, scores, best_e, best_s, rnd, consensus, halves, seeds, history)


def _classify(
    vols: np.ndarray,
    tr: np.ndarray,
    refs: ClassReferences,
    search: SearchParams,
    e: np.ndarray,
    s: np.ndarray,
    halves: np.ndarray,
    lo: int,
    p: MultirefParams,
    device: str | torch.device,
) -> ClassifyBatch:
    sl = slice(lo, lo + int(p.batch_size))
    return classify_batch(
        vols[sl],
        tr[sl],
        refs,
        search,
        euler_deg=e[sl],
        shifts_zyx_px=s[sl],
        half_ids=halves[sl],
        symmetry=p.symmetry,
        device=device,
    )


def _finish(
    sums: GroupSums, mask: np.ndarray, hp: float, p: MultirefParams, voxel: float
) -> ClassRound:
    return finish_classes(
        sums,
        voxel_size_angstrom=voxel,
        mask=mask,
        highpass_px=hp,
        resolution_px=p.resolution_px,
        weight_floor=p.weight_floor,
    )
