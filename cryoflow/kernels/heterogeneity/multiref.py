"""Multi-reference classification: one round's per-batch step and its finish.

Per batch (:func:`classify_batch`; pure, arrays in, arrays out):

1. every particle is scored against each of the ``K`` class references with the averaging
   stage's wedge-aware constrained cross-correlation (:func:`~cryoflow.kernels.align.
   align_batch`: both sides under the particle's wedge and the reference's measured support,
   normalised within them, in one band shared by every class, under one mask), at orientations
   near its consensus alignment: the consensus pose itself with a half-voxel shift search, or
   with ``search.local_levels`` a local re-alignment per class around it, or with
   ``search.global_step_deg`` a global search per class (``top_k`` candidates refined by the
   local levels; consensus shifts as the start) for a consensus whose poses are wrong;
2. it goes to the class that scores best (ties to the lower index);
3. its measured Fourier components are added to that class's sums in the pose found there
   (:func:`~.groups.accumulate_groups`: per class, per gold-standard half, wedge weights
   summed, so each class is wedge-compensated over its own particles).

Finish (:func:`finish_classes`, once per round on the tree-summed :class:`~.groups.GroupSums`):
each class's half maps, FSC and FSC-weighted map (:func:`~cryoflow.kernels.finish.
finish_round` under the common mask); the next references are the means of each class's two
FSC-weighted half maps, all low-passed to one band: the *coarsest* of the classes' FSC-0.143
resolutions (or a fixed ``resolution_px``; a class with an empty half has no FSC and gives
its plain average, and no band), so that no class wins by carrying detail the
others lack, and the scores of different classes stay comparable.

Classes that empty out are reseeded between rounds (:func:`reseed_assignments`): a class with
fewer than ``min_count`` particles takes the worse-fitting half (lowest score) of the largest
class, and the two classes' sums are made again from those assignments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.geometry.symmetry import SymmetryGroup
from cryoflow.kernels.align import RoundReferences, SearchParams, align_batch
from cryoflow.kernels.finish import RoundOutcome, full_support
from cryoflow.kernels.fsc import lowpass
from cryoflow.kernels.heterogeneity.groups import GroupSums, accumulate_groups, finish_groups


@dataclass(frozen=True)
class ClassReferences:
    """What a classification round broadcasts to every batch.

    ``maps`` (K, B, B, B) float32, one reference per class; ``mask`` (B, B, B) the soft mask
    every class is scored under; ``resolution_px`` the common band limit (a period in voxels);
    ``supports`` (K, B, B, B) float32 in FFT order over the full grid (1 where each class
    was measured) or None for filled references; ``highpass_px`` the score's high-pass period
    (None: DC only).
    """

    maps: np.ndarray
    mask: np.ndarray
    resolution_px: float
    supports: np.ndarray | None = None
    highpass_px: float | None = None

    def __post_init__(self) -> None:
        m = np.asarray(self.maps)
        if m.ndim != 4 or m.shape[0] < 1 or m.shape[1:] != np.shape(self.mask):
            raise GeometryError(
                f"class references must be (K, B, B, B) with a (B, B, B) mask, got maps "
                f"{m.shape} and mask {np.shape(self.mask)}"
            )
        if self.supports is not None and np.shape(self.supports) != m.shape:
            raise GeometryError(
                f"supports must match the maps' shape {m.shape}, got {np.shape(self.supports)}"
            )
        if not self.resolution_px > 0:
            raise GeometryError(f"resolution_px must be > 0, got {self.resolution_px}")

    @property
    def n_classes(self) -> int:
        """``K``."""
        return int(np.shape(self.maps)[0])

    def for_class(self, k: int) -> RoundReferences:
        """Class ``k`` as the one-map :class:`RoundReferences` that ``align_batch`` takes."""
        sup = None if self.supports is None else np.asarray(self.supports[k])[None]
        return RoundReferences(np.asarray(self.maps[k])[None], self.mask, self.resolution_px, sup)


@dataclass(frozen=True)
class ClassifyBatch:
    """One batch's result: ``assignments`` (n,) class indices ``0 .. K-1``; ``scores`` (n, K)
    every class's constrained CC; ``euler_deg`` and ``shifts_zyx_px`` (n, 3) the pose in the
    assigned class; ``sums`` the batch's :class:`GroupSums` (None when not accumulated)."""

    assignments: np.ndarray
    scores: np.ndarray
    euler_deg: np.ndarray
    shifts_zyx_px: np.ndarray
    sums: GroupSums | None


def classify_batch(
    particles: np.ndarray,
    tilt_ranges: np.ndarray,
    references: ClassReferences,
    search: SearchParams,
    *,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    half_ids: np.ndarray,
    symmetry: str | SymmetryGroup = "C1",
    accumulate: bool = True,
    device: str | torch.device = "cpu",
) -> ClassifyBatch:
    """Score, assign and accumulate a batch (see module docstring).

    Parameters
    ----------
    particles, tilt_ranges
        As in :func:`~cryoflow.kernels.align.align_batch`.
    references : ClassReferences
    search : SearchParams
        Its global step (None: around the consensus only) and ``top_k``, its local levels
        (around the consensus, or the global candidates; ``()`` scores the consensus pose), shift
        windows, ``max_shift_px`` and ``chunk_bytes``; the band and high-pass come from
        ``references``.
    euler_deg, shifts_zyx_px : ndarray of shape (n, 3)
        The consensus alignment.
    half_ids : ndarray of shape (n,)
        0 or 1, each particle's gold-standard half (for the per-class FSC).
    """
    e = np.asarray(euler_deg, dtype=float).reshape(-1, 3)
    s = np.asarray(shifts_zyx_px, dtype=float).reshape(-1, 3)
    n = len(e)
    if np.shape(particles)[0] != n or len(s) != n:
        raise GeometryError(
            f"need one consensus orientation and shift per particle: {len(e)} and {len(s)} for "
            f"{np.shape(particles)[0]} particles"
        )
    glob = search.global_step_deg is not None  # a global search per class, no priors
    local = replace(search, top_k=search.top_k if glob else 1, highpass_px=references.highpass_px)
    k_all = references.n_classes
    scores = np.empty((n, k_all))
    poses = np.empty((k_all, n, 3))
    shifts = np.empty((k_all, n, 3))
    for k in range(k_all):
        res = align_batch(
            particles,
            tilt_ranges,
            references.for_class(k),
            local,
            priors_euler_deg=None if glob else e,
            priors_shifts_zyx_px=s,
            device=device,
        )
        scores[:, k], poses[k], shifts[k] = res.scores, res.euler_deg, res.shifts_zyx_px
    assign = np.argmax(scores, axis=1)
    rows = np.arange(n)
    best_e, best_s = poses[assign, rows], shifts[assign, rows]
    sums = None
    if accumulate:
        sums = accumulate_groups(
            particles,
            assign,
            best_e,
            best_s,
            tilt_ranges,
            half_ids,
            n_groups=k_all,
            symmetry=symmetry,
            device=device,
        )
    return ClassifyBatch(assign, scores, best_e, best_s, sums)


@dataclass(frozen=True)
class ClassRound:
    """A finished classification round: ``outcomes[k]`` class ``k``'s half maps, average, FSC
    (None for an empty class); ``maps`` (K, B, B, B) the class averages (zeros when empty);
    ``counts`` (K,); ``references`` the next round's broadcast."""

    outcomes: tuple[RoundOutcome | None, ...]
    maps: np.ndarray
    counts: np.ndarray
    references: ClassReferences


def finish_classes(
    sums: GroupSums,
    *,
    voxel_size_angstrom: float,
    mask: np.ndarray,
    highpass_px: float | None = None,
    resolution_px: float | None = None,
    weight_floor: float = 0.1,
) -> ClassRound:
    """The next class references from a round's reduced sums (see module docstring).

    ``mask`` (B, B, B): the common mask (every class's FSC and score); ``resolution_px``: a
    fixed band for the scores, else the coarsest FSC-0.143 resolution of the non-empty classes.
    """
    m = np.asarray(mask, dtype=np.float32)
    outcomes = finish_groups(
        sums, voxel_size_angstrom=voxel_size_angstrom, mask=m, weight_floor=weight_floor
    )
    box = sums.groups[0].box
    counts = sums.counts
    # classes with both halves filled have a gold-standard FSC; the others only an average
    paired = [
        o for o, g in zip(outcomes, sums.groups, strict=True) if o is not None and g.count.min() > 0
    ]
    if all(o is None for o in outcomes):
        raise GeometryError("every class is empty: nothing to make references from")
    if resolution_px is not None:
        band = float(resolution_px)
    elif paired:
        band = max(o.resolution_0143_px for o in paired)
    else:
        band = box / 4.0
    band = float(np.clip(band, 2.0, box / 2.0))
    maps = np.zeros((len(outcomes), box, box, box), np.float32)
    refs = np.zeros_like(maps)
    sup = np.zeros_like(maps)
    for k, (o, g) in enumerate(zip(outcomes, sums.groups, strict=True)):
        if o is None:
            continue
        maps[k] = o.average
        weighted = o.references.maps.mean(axis=0) if g.count.min() > 0 else o.average
        refs[k] = lowpass(weighted, band)
        sup[k] = full_support(g.weight.sum(axis=0), weight_floor * max(int(g.count.sum()), 1))
    return ClassRound(outcomes, maps, counts, ClassReferences(refs, m, band, sup, highpass_px))


def reseed_assignments(
    assignments: np.ndarray, scores: np.ndarray, *, min_count: int
) -> tuple[np.ndarray, list[int]]:
    """New assignments with every class of fewer than ``min_count`` particles reseeded.

    ``assignments`` (n,) in ``0 .. K-1``, ``scores`` (n, K). Each short class, in index order,
    takes the lower-scoring half (score against that class) of the currently largest class.
    Returns the new assignments and the classes reseeded.
    """
    a = np.asarray(assignments, dtype=int).copy()
    sc = np.asarray(scores, dtype=float)
    k_all = sc.shape[1]
    if int(min_count) * k_all > len(a):
        raise ConfigError(
            f"{len(a)} particles cannot fill {k_all} classes of at least {min_count} each"
        )
    reseeded = []
    for c in range(k_all):
        counts = np.bincount(a, minlength=k_all)
        if counts[c] >= int(min_count):
            continue
        big = int(np.argmax(counts))
        members = np.nonzero(a == big)[0]
        worst = members[np.argsort(sc[members, big], kind="stable")]
        a[worst[: len(members) // 2]] = c
        reseeded.append(c)
    return a, reseeded
