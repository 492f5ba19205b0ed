"""Multi-body refinement: one round's per-batch step and its finish.

Bodies are soft masks ``m_b`` (B, B, B) over the consensus average, each with a reference
``V_b`` (first the consensus half maps times ``m_b``, later the body's own masked half maps)
and a centre ``c_b`` (its masked density's centroid, rounded to whole voxels, relative to the
box centre). A body's pose ``(M_b, s_b)`` uses the averaging convention in the consensus
frame: the particle's body density at ``r`` is ``V_b(M_b^-1 (r - s_b))``.

Per batch (:func:`multibody_batch`), for every particle (each with its own half's maps) and
body ``b``:

1. *subtract the other bodies*: every body's reference placed in the particle at its pose
   inside the particle's wedge (:func:`~.subtract.place_in_poses`); ``a_p`` times all but
   body ``b``'s are removed (``a_p`` the whole model's least-squares scale, from the priors).
   Bodies are refined in turn and each one subtracts those before it at their *new* poses
   (a Gauss-Seidel sweep: a body next to a moving one is not pulled by that one's residual);
2. *body-centred search*: the subtracted particle is shifted (a Fourier phase) so that the
   body's centre, at ``s' = s_b + M_b c_b``, lies at the box centre, and the reference is
   rolled so ``c_b`` does: rotations then turn the body about its own centre (rotation and
   translation decouple), and ``max_shift_px`` bounds the body's shift from its prior;
3. local refinement around the prior (:func:`~cryoflow.kernels.align.align_batch` with
   ``search.local_levels``, wedge-aware score, the body's mask rotating with it, the particle
   under a sphere about the body); found ``(M, t)`` gives ``s_b = s' + t - M c_b``. With
   ``search.prior_sigma_deg`` a Gaussian prior on the body's rotation away from the
   *consensus* orientation (``consensus_euler_deg``, every round) weighs each orientation
   (align's step 5), as RELION's multi-body refinement does: a body refined alone has
   directions its signal hardly fixes (an arm's spin about its own long axis), and without
   the prior the search fits the noise there (measured on the hinge phantom: 10 degrees of
   off-axis turn, as much as the swing itself);
4. the particle (whole, not subtracted) is added to body ``b``'s sums in the body's new pose
   (:class:`~.groups.GroupSums`, one ``HalfSums`` per body): each body is reconstructed from
   its own orientations, sharp where the body is and the other bodies blurred by their
   motion relative to it. Not from the subtracted particle: that one already carries the
   mask's soft profile at the bodies' borders, and the next reference (map times mask) would
   carry it twice, pulling the alignment (measured: 7 degrees of drift on noise-free
   phantoms in the second round).

Finish (:func:`finish_bodies`): per body, half maps, FSC under its own mask, FSC-weighted
half maps times the mask as the next references (each body at its own resolution).

Where masks overlap, the references use the masks divided by their sum there
(:func:`partition`), so the bodies' references add up to the consensus: what is subtracted
for body ``b`` is exactly what is not body ``b``'s, however much the user's masks overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from cryoflow.errors import GeometryError
from cryoflow.geometry.rotation import matrix_zyx_from_euler
from cryoflow.kernels.align import RoundReferences, SearchParams, align_batch
from cryoflow.kernels.average import HalfSums, accumulate_batch
from cryoflow.kernels.finish import RoundOutcome, finish_round
from cryoflow.kernels.heterogeneity.groups import GroupSums
from cryoflow.kernels.heterogeneity.subtract import model_scales, place_in_poses, subtract_models
from cryoflow.kernels.masks import mask_radius_px
from cryoflow.kernels.truth_metrics import shift_volume


@dataclass(frozen=True)
class BodyReferences:
    """What a multi-body round broadcasts.

    ``maps`` (nb, H, B, B, B) float32: each body's reference per half set (H = 1 or 2), in the
    consensus frame, already weighted by its :func:`partition` of the masks; ``masks``
    (nb, B, B, B) the bodies' soft masks as given (each body's alignment and FSC mask); ``centres_zyx_px`` (nb, 3)
    integer offsets of each body's centre from the box centre; ``resolution_px`` (nb,) each
    body's band limit; ``highpass_px`` (nb,) each body's score high-pass (periods, voxels).
    """

    maps: np.ndarray
    masks: np.ndarray
    centres_zyx_px: np.ndarray
    resolution_px: np.ndarray
    highpass_px: np.ndarray

    def __post_init__(self) -> None:
        m = np.shape(self.maps)
        nb = m[0] if len(m) == 5 else -1
        if (
            len(m) != 5
            or m[1] not in (1, 2)
            or np.shape(self.masks) != (nb, *m[2:])
            or np.shape(self.centres_zyx_px) != (nb, 3)
            or np.shape(self.resolution_px) != (nb,)
            or np.shape(self.highpass_px) != (nb,)
        ):
            raise GeometryError(
                f"body references need maps (nb, 1 or 2, B, B, B), masks (nb, B, B, B), centres "
                f"(nb, 3) and per-body resolutions (nb,), got {m}, {np.shape(self.masks)}, "
                f"{np.shape(self.centres_zyx_px)}, {np.shape(self.resolution_px)}"
            )

    @property
    def n_bodies(self) -> int:
        """``nb``."""
        return int(np.shape(self.maps)[0])


def body_centres(volume: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """ndarray (nb, 3) int: the centroid of ``volume * mask_b`` (positive part), rounded,
    as ``(z, y, x)`` voxels from the box centre."""
    v = np.clip(np.asarray(volume, dtype=np.float64), 0.0, None)
    box = v.shape[0]
    c = np.arange(box, dtype=np.float64) - box // 2
    grid = np.stack(np.meshgrid(c, c, c, indexing="ij"))
    out = []
    for m in np.asarray(masks, dtype=np.float64):
        w = v * m
        total = w.sum()
        if not total > 0:
            raise GeometryError("a body mask covers no positive density of the consensus map")
        out.append(np.rint((grid * w).reshape(3, -1).sum(axis=1) / total))
    return np.asarray(out, dtype=np.int64)


def partition(masks: np.ndarray) -> np.ndarray:
    """ndarray (nb, B, B, B): the masks divided by ``max(1, sum_b m_b)``, so where bodies
    overlap their weights add up to one (no density is subtracted twice, none kept twice)."""
    mk = np.clip(np.asarray(masks, dtype=np.float32), 0.0, 1.0)
    return mk / np.maximum(mk.sum(axis=0), 1.0)


def body_references(
    consensus_halves: np.ndarray,
    masks: np.ndarray,
    *,
    resolution_px: float,
    highpass_factor: float = 1.3,
) -> BodyReferences:
    """The first round's references: the consensus (H, B, B, B) times each body's mask,
    partitioned where masks overlap (:func:`partition`)."""
    halves = np.asarray(consensus_halves, dtype=np.float32)
    halves = halves[None] if halves.ndim == 3 else halves
    mk = np.clip(np.asarray(masks, dtype=np.float32), 0.0, 1.0)
    if mk.ndim != 4 or mk.shape[1:] != halves.shape[1:]:
        raise GeometryError(
            f"body masks must be (nb, B, B, B) like the consensus {halves.shape[1:]}, got "
            f"{mk.shape}"
        )
    maps = halves[None] * partition(mk)[:, None]
    centres = body_centres(halves.mean(axis=0), mk)
    nb = len(mk)
    hp = np.array(
        [
            highpass_factor * max(mask_radius_px(_roll(m, -c)), 2.0)
            for m, c in zip(mk, centres, strict=True)
        ]
    )
    return BodyReferences(maps, mk, centres, np.full(nb, float(resolution_px)), hp)


def _roll(volume: np.ndarray, shift_zyx: np.ndarray) -> np.ndarray:
    """``out(r) = volume(r - shift)`` for an integer shift (exact, periodic)."""
    return np.roll(np.asarray(volume), tuple(int(v) for v in shift_zyx), axis=(-3, -2, -1))


def _place(
    maps: np.ndarray,
    e: np.ndarray,
    s: np.ndarray,
    tr: np.ndarray,
    ref_half: np.ndarray,
    device: str | torch.device,
) -> np.ndarray:
    """One body's references (H, B, B, B) placed in each particle (n, B, B, B), its half's."""
    box = maps.shape[-1]
    out = np.zeros((len(e), box, box, box), np.float32)
    for h in np.unique(ref_half):
        sel = np.nonzero(ref_half == h)[0]
        out[sel] = place_in_poses(maps[h], e[sel], s[sel], tr[sel], device=device)
    return out


@dataclass(frozen=True)
class BodyBatch:
    """One batch's result: per particle and body ``euler_deg`` and ``shifts_zyx_px``
    (n, nb, 3), ``scores`` (n, nb); ``scales`` (n,) the subtraction's model scales;
    ``sums`` one ``HalfSums`` per body."""

    euler_deg: np.ndarray
    shifts_zyx_px: np.ndarray
    scores: np.ndarray
    scales: np.ndarray
    sums: GroupSums


def multibody_batch(
    particles: np.ndarray,
    tilt_ranges: np.ndarray,
    bodies: BodyReferences,
    search: SearchParams,
    *,
    euler_deg: np.ndarray,
    shifts_zyx_px: np.ndarray,
    half_ids: np.ndarray,
    consensus_euler_deg: np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> BodyBatch:
    """Refine every body of a batch locally and accumulate it (see module docstring).

    Parameters
    ----------
    particles, tilt_ranges, search
        As in :func:`~cryoflow.kernels.align.align_batch`; here ``search.local_levels`` are
        searched around each prior and ``max_shift_px`` is the largest shift of a body's
        centre from its prior.
    bodies : BodyReferences
    euler_deg, shifts_zyx_px : ndarray of shape (n, nb, 3)
        Priors per body (the consensus pose repeated, the first round).
    half_ids : ndarray of shape (n,)
        0 or 1; with one reference per body every particle uses it.
    consensus_euler_deg : ndarray of shape (n, 3), optional
        The consensus orientations, centre of the rotation prior (default: the priors).
    """
    vols = np.asarray(particles, dtype=np.float32)
    n, nb = vols.shape[0], bodies.n_bodies
    e = np.asarray(euler_deg, dtype=float).reshape(n, nb, 3)
    s = np.asarray(shifts_zyx_px, dtype=float).reshape(n, nb, 3)
    tr = np.asarray(tilt_ranges, dtype=float).reshape(-1, 2)
    halves = np.asarray(half_ids, dtype=int).reshape(-1)
    anchor = None if consensus_euler_deg is None else np.asarray(consensus_euler_deg, float)
    if len(tr) != n or len(halves) != n or (anchor is not None and anchor.shape != (n, 3)):
        raise GeometryError(f"need one tilt range, half id (and consensus pose) per particle ({n})")
    h_maps = np.shape(bodies.maps)[1]
    ref_half = halves if h_maps == 2 else np.zeros(n, dtype=int)
    # 1. every body placed at its prior pose, each particle with its own half's reference
    models = np.stack(
        [_place(bodies.maps[b], e[:, b], s[:, b], tr, ref_half, device) for b in range(nb)]
    )
    scales = model_scales(vols, models.sum(axis=0))
    out_e, out_s, out_c = e.copy(), s.copy(), np.empty((n, nb))
    sums = []
    for b in range(nb):
        sub = subtract_models(vols, models, b, scales)
        c = bodies.centres_zyx_px[b].astype(float)
        m_prior = matrix_zyx_from_euler(e[:, b])
        centre = s[:, b] + m_prior @ c  # s' (n, 3): the body's centre in each particle
        # 2. body-centred: particle shifted by -s', reference and mask rolled by -c
        moved = np.stack([shift_volume(sub[i], -centre[i]) for i in range(n)])
        refs = RoundReferences(
            _roll(bodies.maps[b], -c),
            _roll(bodies.masks[b], -c),
            float(bodies.resolution_px[b]),
        )
        local = replace(search, global_step_deg=None, top_k=1, highpass_px=bodies.highpass_px[b])
        # 3. local refinement around the prior
        res = align_batch(
            moved,
            tr,
            refs,
            local,
            half_ids=ref_half,
            priors_euler_deg=e[:, b],
            priors_shifts_zyx_px=np.zeros((n, 3)),
            anchor_euler_deg=anchor,
            device=device,
        )
        m_new = matrix_zyx_from_euler(res.euler_deg)
        out_e[:, b] = res.euler_deg
        out_s[:, b] = centre + res.shifts_zyx_px - m_new @ c
        out_c[:, b] = res.scores
        # the next bodies subtract this one at its new pose
        models[b] = _place(bodies.maps[b], out_e[:, b], out_s[:, b], tr, ref_half, device)
        # 4. the particle into the body's sums, in the body's own pose
        sums.append(
            accumulate_batch(vols, out_e[:, b], out_s[:, b], tr, halves, device=device)
            if n
            else HalfSums.zeros(vols.shape[-1])
        )
    return BodyBatch(out_e, out_s, out_c, scales, GroupSums(tuple(sums)))


@dataclass(frozen=True)
class BodyRound:
    """A finished multi-body round: ``outcomes[b]`` body ``b``'s half maps, average and FSC
    under its mask; ``maps`` (nb, B, B, B) the bodies' reconstructions (unmasked);
    ``references`` the next round's broadcast."""

    outcomes: tuple[RoundOutcome, ...]
    maps: np.ndarray
    references: BodyReferences


def finish_bodies(
    sums: GroupSums,
    bodies: BodyReferences,
    *,
    voxel_size_angstrom: float,
    weight_floor: float = 0.1,
) -> BodyRound:
    """Each body's maps, FSC under its own mask and next references (see module docstring)."""
    if sums.n_groups != bodies.n_bodies:
        raise GeometryError(f"{sums.n_groups} body sums for {bodies.n_bodies} bodies")
    outcomes = tuple(
        finish_round(g, voxel_size_angstrom=voxel_size_angstrom, mask=m, weight_floor=weight_floor)
        for g, m in zip(sums.groups, bodies.masks, strict=True)
    )
    h_maps = np.shape(bodies.maps)[1]
    maps = np.stack([o.average for o in outcomes])
    refs = np.stack(
        [
            (o.references.maps if h_maps == 2 else o.references.maps.mean(0, keepdims=True)) * m
            for o, m in zip(outcomes, partition(bodies.masks), strict=True)
        ]
    ).astype(np.float32)
    res = np.array([o.references.resolution_px for o in outcomes])
    nxt = replace(bodies, maps=refs, resolution_px=res)
    return BodyRound(outcomes, maps, nxt)
