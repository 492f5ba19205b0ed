"""An eager multi-body refinement: rounds of subtract -> refine locally -> reconstruct per body.

The pieces a distributed round maps (:func:`~.multibody.multibody_batch` per batch, the
:class:`~.groups.GroupSums` summed as a tree, :func:`~.multibody.finish_bodies` once), run
here in one process:

1. half sets (a seeded random split unless given) and the consensus half maps from the
   consensus alignment (:func:`~.pca_classify.consensus_round`) unless given; the first
   body references are its FSC-weighted half maps times each body's mask;
2. round 1 refines every body around the consensus pose with ``first_search`` (wider: the
   consensus blurs a moving body over its range of motion), later rounds around the previous
   round's body poses with ``later_search``, each against the bodies' own maps, and with the
   other bodies subtracted at *their* poses;
3. the body motions relative to the consensus and their principal motions
   (:mod:`~.motions`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from cryoflow.errors import ConfigError
from cryoflow.kernels.align import SearchParams
from cryoflow.kernels.finish import RoundOutcome
from cryoflow.kernels.heterogeneity.aligned import aligned_set
from cryoflow.kernels.heterogeneity.groups import tree_sum
from cryoflow.kernels.heterogeneity.motions import (
    BodyMotions,
    PrincipalMotions,
    principal_motions,
    relative_motions,
)
from cryoflow.kernels.heterogeneity.multibody import (
    BodyBatch,
    BodyRound,
    body_references,
    finish_bodies,
    multibody_batch,
)


@dataclass(frozen=True)
class MultibodyParams:
    """Settings of a multi-body refinement (angles in degrees, lengths in voxels).

    ``first_search`` / ``later_search``: the local searches of round 1 (around the consensus)
    and of later rounds (around the last body poses): their ``(step, radius)`` levels, their
    ``max_shift_px`` (how far a body's centre may move from its prior in one round) and shift
    windows; round 1's ``(radius, step)`` shift window is wider (a body turning about a hinge
    off its centre also moves: 20 degrees at 5 voxels is 1.7 voxels, beyond the default
    1-voxel window of a level, which would shrink the turn found); ``sigma_deg``: the
    Gaussian prior on each body's rotation away from the consensus (every round; None: no
    prior); ``highpass_mask_factor``:
    the score's high-pass as a multiple of each body mask's radius.
    """

    rounds: int = 3
    first_search: SearchParams = SearchParams(
        None, ((6.0, 24.0), (2.0, 6.0), (1.0, 2.0)), 3.0, local_shift_windows=((3.0, 1.0),)
    )
    later_search: SearchParams = SearchParams(None, ((2.0, 6.0), (1.0, 2.0)), 3.0)
    sigma_deg: float | None = 10.0
    highpass_mask_factor: float = 1.3
    weight_floor: float = 0.1
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.rounds) < 1:
            raise ConfigError(f"rounds must be >= 1, got {self.rounds}")
        searches = (self.first_search, self.later_search)
        if any(s.global_step_deg is not None for s in searches):
            raise ConfigError("a body's searches are local: give them global_step_deg=None")
        if not self.first_search.local_levels:
            raise ConfigError("first_search needs at least one (step, radius) level")
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class MultibodyResult:
    """Per particle and body ``euler_deg``/``shifts_zyx_px`` (n, nb, 3) and ``scores``
    (n, nb); the last round (body maps, FSC); the consensus; the motions relative to it and
    their principal motions; the half sets; per round the mean scores and resolutions."""

    euler_deg: np.ndarray
    shifts_zyx_px: np.ndarray
    scores: np.ndarray
    last: BodyRound
    consensus: RoundOutcome
    motions: BodyMotions
    principal: PrincipalMotions
    half_ids: np.ndarray
    history: list[dict[str, object]]


def refine_bodies(
    particles: np.ndarray,
    tilt_ranges: np.ndarray,
    *,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    masks: np.ndarray,
    voxel_size_angstrom: float,
    params: MultibodyParams | None = None,
    consensus: RoundOutcome | None = None,
    half_ids: np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> MultibodyResult:
    """Refine the bodies ``masks`` (nb, B, B, B) of aligned particles (n, B, B, B).

    ``euler_deg``/``shifts_zyx_px`` (n, 3): the consensus alignment; ``tilt_ranges`` (n, 2);
    ``consensus``: its finished round (half maps, FSC), else made from the alignment.
    """
    p = params if params is not None else MultibodyParams()
    data = aligned_set(
        particles, tilt_ranges, (euler_deg, shifts_zyx_px), half_ids, seed=p.seed, min_n=2
    )
    vols, tr, e, s, halves = data.arrays()
    n = len(vols)
    if consensus is None:
        consensus = data.consensus(voxel_size_angstrom, batch_size=p.batch_size, device=device)
    bodies = body_references(
        consensus.references.maps,
        masks,
        resolution_px=consensus.references.resolution_px,
        highpass_factor=p.highpass_mask_factor,
    )
    nb = bodies.n_bodies
    prior_e = np.repeat(e[:, None], nb, axis=1)
    prior_s = np.repeat(s[:, None], nb, axis=1)
    scores = np.zeros((n, nb))
    history: list[dict[str, object]] = []
    last: BodyRound | None = None
    bs = int(p.batch_size)
    for r in range(int(p.rounds)):
        search = replace(p.first_search if r == 0 else p.later_search, prior_sigma_deg=p.sigma_deg)
        parts: list[BodyBatch] = [
            multibody_batch(
                vols[lo : lo + bs],
                tr[lo : lo + bs],
                bodies,
                search,
                euler_deg=prior_e[lo : lo + bs],
                shifts_zyx_px=prior_s[lo : lo + bs],
                half_ids=halves[lo : lo + bs],
                consensus_euler_deg=e[lo : lo + bs],
                device=device,
            )
            for lo in range(0, n, bs)
        ]
        prior_e = np.concatenate([b.euler_deg for b in parts])
        prior_s = np.concatenate([b.shifts_zyx_px for b in parts])
        scores = np.concatenate([b.scores for b in parts])
        last = finish_bodies(
            tree_sum([b.sums for b in parts]),
            bodies,
            voxel_size_angstrom=voxel_size_angstrom,
            weight_floor=p.weight_floor,
        )
        history.append(
            {
                "round": r + 1,
                "band_px": bodies.resolution_px.tolist(),
                "mean_score": scores.mean(axis=0).tolist(),
                "fsc0143_px": [o.resolution_0143_px for o in last.outcomes],
            }
        )
        bodies = last.references
    assert last is not None
    motions = relative_motions(e, s, prior_e, prior_s, bodies.centres_zyx_px)
    return MultibodyResult(
        prior_e,
        prior_s,
        scores,
        last,
        consensus,
        motions,
        principal_motions(motions),
        halves,
        history,
    )
