"""``align_batch``: orientations and shifts of a batch of particles against the round's references.

Per batch (pure: arrays in, arrays out; no I/O, no Dask):

1. Each particle is scored against its own half's reference (gold standard: ``half_ids``).
2. Without priors, every orientation of a uniform SO(3) grid (:mod:`cryoflow.geometry.so3_grid`,
   ``global_step_deg``) is scored, the reference rotated once per orientation for the whole batch;
   the ``top_k`` best orientations of each particle go on.
3. Local refinement: for each ``(step, radius)`` of ``local_levels``, a cubic lattice of small
   rotations around the current best (finer and finer), each particle its own orientations.
4. Translations: an FFT cross-correlation at every shift within ``max_shift_px`` for every
   orientation (:mod:`cryoflow.kernels.score`), then a sub-voxel peak by a 3-point parabola per
   axis at the winning orientation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.geometry.rotation import (
    XYZ_TO_ZYX,
    euler_from_matrix_xyz,
    matrix_xyz_from_euler,
)
from cryoflow.geometry.so3_grid import grid_for_step, local_grid
from cryoflow.kernels.fourier_rotate import as_tensor, box_side
from cryoflow.kernels.masks import mask_radius_px, spherical_mask
from cryoflow.kernels.score import (
    DEFAULT_CHUNK_BYTES,
    prepare_particles,
    prepare_reference,
    score_orientations,
    shift_window,
    window_maps,
)


@dataclass(frozen=True)
class SearchParams:
    """How one round searches orientations and shifts.

    ``global_step_deg``: the global grid's step (None: local search around priors only);
    ``local_levels``: ``(step_deg, radius_deg)`` pairs, coarse to fine; ``max_shift_px``: the
    largest shift searched (a ball); ``top_k``: global candidates refined per particle.
    """

    global_step_deg: float | None = 20.0
    local_levels: tuple[tuple[float, float], ...] = ((8.0, 16.0), (3.0, 6.0))
    max_shift_px: float = 3.0
    top_k: int = 1
    highpass_px: float | None = None
    chunk_bytes: int = DEFAULT_CHUNK_BYTES

    def __post_init__(self) -> None:
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


def _subvoxel(cc: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """(P, 3) float: integer peak plus a 3-point parabola offset per axis (clipped to 1/2).

    ``cc`` (P, n, n, n) holds shifts ``-n//2 .. n//2`` per axis; ``peak`` (P, 3) long.
    """
    box = cc.shape[-1]
    n = torch.arange(cc.shape[0], device=cc.device)
    p = peak + box // 2
    c0 = cc[n, p[:, 0], p[:, 1], p[:, 2]]
    out = peak.to(torch.float64).clone()
    for ax in range(3):
        lo, hi = p.clone(), p.clone()
        lo[:, ax] = (lo[:, ax] - 1) % box
        hi[:, ax] = (hi[:, ax] + 1) % box
        cm = cc[n, lo[:, 0], lo[:, 1], lo[:, 2]]
        cp = cc[n, hi[:, 0], hi[:, 1], hi[:, 2]]
        den = cm - 2 * c0 + cp
        d = torch.where(den < 0, 0.5 * (cm - cp) / torch.where(den < 0, den, -1.0), 0.0)
        out[:, ax] += d.clamp(-0.5, 0.5).to(torch.float64)
    return out


def _align_half(
    particles: torch.Tensor,
    tilt_ranges: np.ndarray,
    references: RoundReferences,
    half: int,
    search: SearchParams,
    priors_xyz: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dev, box = particles.device, box_side(particles)
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
    window = shift_window(box, search.max_shift_px, dev)
    n = particles.shape[0]
    # 1. global grid (shared orientations) or the priors
    if priors_xyz is None:
        if search.global_step_deg is None:
            raise ConfigError("a local-only search (global_step_deg=None) needs prior orientations")
        grid = grid_for_step(search.global_step_deg)
        rot = torch.as_tensor(_zyx(grid), dtype=torch.float32, device=dev)
        scores, where = score_orientations(parts, ref, rot, window, chunk_bytes=search.chunk_bytes)
        k = min(int(search.top_k), grid.shape[0])
        top = torch.topk(scores, k, dim=1).indices.cpu().numpy()
        centres = grid[top]  # (n, k, 3, 3)
        best_s = scores.gather(1, torch.as_tensor(top[:, :1], device=dev))[:, 0]
        best_w = where.gather(1, torch.as_tensor(top[:, :1], device=dev))[:, 0]
    else:
        centres = priors_xyz[:, None]
        best_s = best_w = None
    # 2. local refinement around the current best, level by level
    for step, rad in search.local_levels:
        cand = local_grid(centres.reshape(-1, 3, 3), step, rad)  # (n*k, L, 3, 3)
        cand = cand.reshape(n, -1, 3, 3)
        rot = torch.as_tensor(_zyx(cand), dtype=torch.float32, device=dev)
        scores, where = score_orientations(parts, ref, rot, window, chunk_bytes=search.chunk_bytes)
        best = scores.argmax(dim=1)
        idx = best.cpu().numpy()
        centres = cand[np.arange(n), idx][:, None]
        best_s = scores[torch.arange(n, device=dev), best]
        best_w = where[torch.arange(n, device=dev), best]
    final = centres[:, 0]
    if best_s is None:  # priors and no local levels: score the priors themselves
        rot = torch.as_tensor(_zyx(final), dtype=torch.float32, device=dev)[:, None]
        scores, where = score_orientations(parts, ref, rot, window, chunk_bytes=search.chunk_bytes)
        best_s, best_w = scores[:, 0], where[:, 0]
    assert best_w is not None
    # 3. sub-voxel shift at the winning orientation
    rot = torch.as_tensor(_zyx(final), dtype=torch.float32, device=dev)
    cc = window_maps(parts, ref, rot, window.half + 1)
    shift = _subvoxel(cc, window.shifts[best_w])
    return final, shift.cpu().numpy(), best_s.cpu().numpy().astype(np.float64)


def align_batch(
    particles: np.ndarray,
    tilt_ranges: np.ndarray,
    references: RoundReferences,
    search: SearchParams,
    *,
    half_ids: np.ndarray | None = None,
    priors_euler_deg: np.ndarray | None = None,
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
        )
        rots[sel], shifts[sel], scores[sel] = r, s, c
    return AlignResult(euler_from_matrix_xyz(rots), shifts, scores)
