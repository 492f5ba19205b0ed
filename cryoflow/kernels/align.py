"""``align_batch``: orientations and shifts of a batch of particles against the round's references.

Per batch (pure: arrays in, arrays out; no I/O, no Dask):

1. Each particle is scored against its own half's reference (gold standard: ``half_ids``).
2. Without priors, every orientation of a uniform SO(3) grid (:mod:`cryoflow.geometry.so3_grid`,
   ``global_step_deg``) is scored, the reference rotated once per orientation for the whole batch;
   the ``top_k`` best orientations of each particle go on.
3. Local refinement: for each ``(step, radius)`` of ``local_levels``, a cubic lattice of small
   rotations around the current best (finer and finer), each particle its own orientations.
4. Translations, for every orientation (:mod:`cryoflow.kernels.score`): the global search
   scores every integer shift within ``max_shift_px``; each local level scores half-voxel
   offsets within 1 voxel of the particle's current shift (orientation and sub-voxel shift
   found together: at a resolution of 3 voxels an integer-only shift search costs up to a
   third of the correlation and biases the orientation); last, a 3-point parabola per axis
   through the half-voxel neighbours. Every shift stays within ``max_shift_px``.
5. Optional Gaussian prior on the orientation (``prior_sigma_deg``, local levels only): each
   level keeps the orientation that maximises the score read as a log-likelihood minus the
   prior, ``N c|c| / (2 (1 - c*^2)) - angle^2 / (2 sigma^2)``, with ``c`` the score, ``c*`` the
   level's best score, ``angle`` the distance from the particle's anchor (``anchor_euler_deg``,
   default the priors) and ``N`` the particle's independent measured components (its band
   and wedge components times its mask's mean square; white noise in the band). Directions
   the data hardly determine then stay at the anchor instead of fitting the noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.geometry.rotation import (
    XYZ_TO_ZYX,
    angular_distance_deg,
    euler_from_matrix_xyz,
    matrix_xyz_from_euler,
)
from cryoflow.geometry.so3_grid import grid_for_step, local_grid
from cryoflow.kernels.fourier_rotate import as_tensor, box_side
from cryoflow.kernels.masks import mask_radius_px, spherical_mask
from cryoflow.kernels.score import (
    DEFAULT_CHUNK_BYTES,
    ParticleSpectra,
    ReferenceSpectrum,
    ShiftWindow,
    prepare_particles,
    prepare_reference,
    recentre,
    score_orientations,
    shift_window,
    window_maps,
)


@dataclass(frozen=True)
class SearchParams:
    """How one round searches orientations and shifts.

    ``global_step_deg``: the global grid's step (None: local search around priors only);
    ``local_levels``: ``(step_deg, radius_deg)`` pairs, coarse to fine; ``max_shift_px``: the
    largest shift searched (a ball); ``top_k``: global candidates refined per particle;
    ``local_shift_windows``: ``(radius_px, step_px)`` of the shifts searched around each
    particle's current shift at local level ``j`` (levels beyond the tuple, and by default
    all, use ``(1, 0.5)``: half-voxel offsets within 1 voxel); ``prior_sigma_deg``: the
    Gaussian orientation prior of step 5 (None: none).
    """

    global_step_deg: float | None = 20.0
    local_levels: tuple[tuple[float, float], ...] = ((8.0, 16.0), (3.0, 6.0))
    max_shift_px: float = 3.0
    top_k: int = 1
    highpass_px: float | None = None
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    local_shift_windows: tuple[tuple[float, float], ...] = ()
    prior_sigma_deg: float | None = None

    def __post_init__(self) -> None:
        ps = self.prior_sigma_deg
        if ps is not None and not (np.isfinite(ps) and ps > 0):
            raise ConfigError(f"prior_sigma_deg must be > 0 degrees or None, got {ps}")
        for w in self.local_shift_windows:
            if len(w) != 2 or not (w[0] >= 0 and w[1] > 0):
                raise ConfigError(
                    f"each local shift window is (radius_px >= 0, step_px > 0), got {w!r}"
                )
        g = self.global_step_deg
        if g is not None and not (np.isfinite(g) and 0 < g <= 180):
            raise ConfigError(f"global_step_deg must lie in (0, 180] degrees or be None, got {g}")
        for lvl in self.local_levels:
            if len(lvl) != 2 or not (lvl[0] > 0 and lvl[1] >= 0):
                raise ConfigError(
                    f"each local level is (step_deg > 0, radius_deg >= 0), got {lvl!r}"
                )
        if not (np.isfinite(self.max_shift_px) and self.max_shift_px >= 0):
            raise ConfigError(f"max_shift_px must be >= 0, got {self.max_shift_px}")
        if int(self.top_k) < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")


@dataclass(frozen=True)
class RoundReferences:
    """What a round broadcasts to every batch.

    ``maps`` (H, B, B, B) float32, one reference per half set (H = 1 or 2); ``mask`` (B, B, B)
    the soft alignment mask (on the reference); ``resolution_px`` the band limit (a period in
    voxels); ``supports`` (H, B, B, B) float32 in FFT order over the full grid, 1 where each
    reference was measured, or None for filled references.
    """

    maps: np.ndarray
    mask: np.ndarray
    resolution_px: float
    supports: np.ndarray | None = None

    def __post_init__(self) -> None:
        m = np.asarray(self.maps)
        if m.ndim != 4 or m.shape[0] not in (1, 2) or m.shape[1:] != np.shape(self.mask):
            raise GeometryError(
                f"references must be (1 or 2, B, B, B) with a (B, B, B) mask, got maps "
                f"{m.shape} and mask {np.shape(self.mask)}"
            )
        if not self.resolution_px > 0:
            raise GeometryError(f"resolution_px must be > 0, got {self.resolution_px}")


@dataclass(frozen=True)
class AlignResult:
    """Per particle: ``euler_deg`` (n, 3) ``rot, tilt, psi``; ``shifts_zyx_px`` (n, 3), the
    particle's centre relative to the box centre; ``scores`` (n,), constrained CC in [-1, 1]."""

    euler_deg: np.ndarray
    shifts_zyx_px: np.ndarray
    scores: np.ndarray


def _zyx(m_xyz: np.ndarray) -> np.ndarray:
    return XYZ_TO_ZYX @ m_xyz @ XYZ_TO_ZYX


def _subvoxel(cc: torch.Tensor, step: float) -> torch.Tensor:
    """(P, 3) float: a 3-point parabola per axis about the centre of (P, 3, 3, 3) ``cc``
    sampled at ``step`` voxels (offset clipped to half a step)."""
    c0 = cc[:, 1, 1, 1]
    faces = (
        (cc[:, 0, 1, 1], cc[:, 2, 1, 1]),
        (cc[:, 1, 0, 1], cc[:, 1, 2, 1]),
        (cc[:, 1, 1, 0], cc[:, 1, 1, 2]),
    )
    out = []
    for cm, cp in faces:
        den = cm - 2 * c0 + cp
        d = torch.where(den < 0, 0.5 * (cm - cp) / torch.where(den < 0, den, -1.0), 0.0)
        out.append(d.clamp(-0.5, 0.5) * step)
    return torch.stack(out, dim=1).to(torch.float64)


def _choose(
    scores: torch.Tensor,
    grid_xyz: np.ndarray,
    anchors_xyz: np.ndarray | None,
    n_eff: torch.Tensor,
    sigma_deg: float | None,
) -> torch.Tensor:
    """(P,) index of each particle's orientation among (P, L) ``scores`` of ``grid_xyz``
    (P, L, 3, 3): the best score, or with a prior the best posterior (module docstring, 5)."""
    if sigma_deg is None or anchors_xyz is None:
        return scores.argmax(dim=1)
    c = scores.to(torch.float64)
    top = c.max(dim=1, keepdim=True).values.clamp(-0.999, 0.999)
    loglik = n_eff[:, None] * c * c.abs() / (2.0 * (1.0 - top**2))
    angle = angular_distance_deg(anchors_xyz[:, None], grid_xyz)
    prior = torch.as_tensor(angle**2 / (2.0 * float(sigma_deg) ** 2), device=c.device)
    return (loglik - prior).argmax(dim=1)


def _search(
    parts: ParticleSpectra,
    ref: ReferenceSpectrum,
    rot_zyx: np.ndarray,
    centres: torch.Tensor,
    window: ShiftWindow,
    max_shift_px: float,
    chunk_bytes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (P, O) and total shifts (P, O, 3) of orientations (O or P x O, 3, 3) around
    each particle's centre (P, 3), shifts confined to ``|s| <= max_shift_px``."""
    rot = torch.as_tensor(rot_zyx, dtype=torch.float32, device=centres.device)
    total = centres[:, None, :] + window.offsets[None].to(centres.dtype)  # (P, Nw, 3)
    allowed = (total**2).sum(-1) <= max_shift_px**2 + 1e-6
    allowed[:, 0] |= ~allowed.any(dim=1)  # never leave a particle without a shift
    scores, where = score_orientations(
        recentre(parts, centres), ref, rot, window, allowed=allowed, chunk_bytes=chunk_bytes
    )
    return scores, centres[:, None, :] + window.offsets[where].to(centres.dtype)


def _align_half(
    particles: torch.Tensor,
    tilt_ranges: np.ndarray,
    references: RoundReferences,
    half: int,
    search: SearchParams,
    priors_xyz: np.ndarray | None,
    prior_shifts: np.ndarray | None,
    anchors_xyz: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dev, box = particles.device, box_side(particles)
    n = particles.shape[0]
    ref_mask = torch.as_tensor(np.asarray(references.mask, np.float32), device=dev)
    radius = min(mask_radius_px(references.mask) + search.max_shift_px + 1.0, box / 2.0 - 2.0)
    p_mask = torch.as_tensor(spherical_mask(box, max(radius, 1.0), 2.0), device=dev)
    parts = prepare_particles(
        particles, tilt_ranges, p_mask, references.resolution_px, search.highpass_px
    )
    sup = None
    if references.supports is not None:
        sup = torch.as_tensor(np.asarray(references.supports[half], np.float32), device=dev)
    vol = torch.as_tensor(np.asarray(references.maps[half], np.float32), device=dev)
    ref = prepare_reference(vol, ref_mask, sup)
    n_eff = parts.wedge.sum(dim=1).to(torch.float64) * float((p_mask**2).mean())
    anchors = priors_xyz if anchors_xyz is None else anchors_xyz
    max_s = float(search.max_shift_px)
    fine = shift_window(min(1.0, max_s), dev, step_px=0.5)
    centres = torch.zeros((n, 3), dtype=torch.float64, device=dev)
    if prior_shifts is not None:
        centres = torch.as_tensor(np.asarray(prior_shifts, float), device=dev)
    # 1. global grid (shared orientations, integer shifts) or the priors
    if priors_xyz is None:
        if search.global_step_deg is None:
            raise ConfigError("a local-only search (global_step_deg=None) needs prior orientations")
        grid = grid_for_step(search.global_step_deg)
        coarse = shift_window(max_s, dev, box=box)
        scores, shifts = _search(parts, ref, _zyx(grid), centres, coarse, max_s, search.chunk_bytes)
        k = min(int(search.top_k), grid.shape[0])
        top = torch.topk(scores, k, dim=1).indices
        cand = grid[top.cpu().numpy()]  # (n, k, 3, 3)
        best_s = scores.gather(1, top[:, :1])[:, 0]
        centres = shifts[torch.arange(n, device=dev), top[:, 0]]
    else:
        cand = priors_xyz[:, None]
        best_s = None
    # 2. local refinement around the current best, level by level, half-voxel shifts
    for j, (step, rad) in enumerate(search.local_levels):
        lg = local_grid(cand.reshape(-1, 3, 3), step, rad).reshape(n, -1, 3, 3)
        win = fine
        if j < len(search.local_shift_windows):
            w_rad, w_step = search.local_shift_windows[j]
            win = shift_window(min(w_rad, max_s), dev, step_px=w_step)
        scores, shifts = _search(parts, ref, _zyx(lg), centres, win, max_s, search.chunk_bytes)
        best = _choose(scores, lg, anchors, n_eff, search.prior_sigma_deg)
        rows = torch.arange(n, device=dev)
        cand = lg[np.arange(n), best.cpu().numpy()][:, None]
        best_s, centres = scores[rows, best], shifts[rows, best]
    final = cand[:, 0]
    if best_s is None:  # priors and no local levels: score the priors themselves
        scores, shifts = _search(
            parts, ref, _zyx(final)[:, None], centres, fine, max_s, search.chunk_bytes
        )
        best_s, centres = scores[:, 0], shifts[:, 0]
    # 3. sub-voxel shift: a parabola through the half-voxel neighbours of the best shift
    rot = torch.as_tensor(_zyx(final), dtype=torch.float32, device=dev)
    cube = shift_window(0.5 * np.sqrt(3.0) + 1e-6, dev, step_px=0.5)
    cc = window_maps(recentre(parts, centres), ref, rot, cube)
    shift = centres + _subvoxel(cc, 0.5)
    return final, shift.cpu().numpy(), best_s.cpu().numpy().astype(np.float64)


def align_batch(
    particles: np.ndarray,
    tilt_ranges: np.ndarray,
    references: RoundReferences,
    search: SearchParams,
    *,
    half_ids: np.ndarray | None = None,
    priors_euler_deg: np.ndarray | None = None,
    priors_shifts_zyx_px: np.ndarray | None = None,
    anchor_euler_deg: np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> AlignResult:
    """Align a batch of particles (see module docstring).

    Parameters
    ----------
    particles : ndarray of shape (n, B, B, B)
    tilt_ranges : ndarray of shape (n, 2)
        Each particle's tomogram tilt range ``(min, max)`` in degrees.
    references : RoundReferences
    search : SearchParams
    half_ids : ndarray of shape (n,), values 0 or 1, optional
        Which reference each particle is scored against (default: all against ``maps[0]``).
    priors_euler_deg : ndarray of shape (n, 3), optional
        Orientations to refine locally around (required when ``global_step_deg`` is None;
        when given, the global search is skipped).
    priors_shifts_zyx_px : ndarray of shape (n, 3), optional
        Shifts to start from (default 0); every shift stays within ``max_shift_px``.
    anchor_euler_deg : ndarray of shape (n, 3), optional
        Centres of the orientation prior (``search.prior_sigma_deg``; default the priors).
    """
    v = as_tensor(particles, device, torch.float32)
    box_side(v)
    n = v.shape[0]
    tr = np.asarray(tilt_ranges, dtype=float).reshape(-1, 2)
    if tr.shape[0] != n:
        raise GeometryError(f"need one tilt range per particle: {tr.shape[0]} for {n} particles")
    halves = np.zeros(n, dtype=int) if half_ids is None else np.asarray(half_ids, dtype=int)
    if halves.shape != (n,) or (
        halves.size and (halves.min() < 0 or halves.max() >= len(references.maps))
    ):
        raise GeometryError(
            f"half_ids must be (n,) integers indexing the {len(references.maps)} references"
        )
    priors = None if priors_euler_deg is None else matrix_xyz_from_euler(priors_euler_deg)
    anchors = None if anchor_euler_deg is None else matrix_xyz_from_euler(anchor_euler_deg)
    rots = np.zeros((n, 3, 3))
    shifts = np.zeros((n, 3))
    scores = np.zeros(n)
    for h in np.unique(halves):
        sel = np.nonzero(halves == h)[0]
        r, s, c = _align_half(
            v[torch.as_tensor(sel, device=v.device)],
            tr[sel],
            references,
            int(h),
            search,
            None if priors is None else priors.reshape(n, 3, 3)[sel],
            None if priors_shifts_zyx_px is None else np.asarray(priors_shifts_zyx_px)[sel],
            None if anchors is None else anchors.reshape(n, 3, 3)[sel],
        )
        rots[sel], shifts[sel], scores[sel] = r, s, c
    return AlignResult(euler_from_matrix_xyz(rots), shifts, scores)
