"""Training boxes for missing-wedge filling, drawn from every tomogram of a selection.

1. Each tomogram (or each of its even/odd-tilt halves) is standardised by its own mean and
   standard deviation (:func:`normalisation`); the same is done at inference.
2. Candidate box centres lie on a grid (step ``box // 4``) where the box fits. Each candidate is
   scored by the standard deviation, over the box, of the tomogram smoothed by a Gaussian of
   ``sigma_px`` (noise averaged out, structure kept): :func:`structure_scores`.
3. The quietest ``quiet_fraction`` of candidates (empty ice, vacuum, flat background) is never
   drawn; the rest are drawn with probability proportional to how far their score exceeds that
   cut, without replacement while candidates last, each centre jittered by up to half a step.
4. Every tomogram gives the same number of boxes, so features are compiled from all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cryoflow.errors import ConfigError, GeometryError
from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.wedge import parse_tilt_range


@dataclass(frozen=True)
class WedgeTomogram:
    """One tomogram of the training selection.

    name : str
    tilt_range_deg : (tilt_min, tilt_max), degrees: where its tilt series measured.
    volume : ndarray of shape (Z, Y, X)
        The tomogram, or its even-tilt half when ``partner`` is given.
    partner : ndarray of shape (Z, Y, X) or None
        The odd-tilt half (independent noise): the noise2noise target of ``volume`` and back.
    """

    name: str
    tilt_range_deg: tuple[float, float]
    volume: np.ndarray
    partner: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tilt_range_deg", parse_tilt_range(self.tilt_range_deg))
        refuse_lazy(self.volume, "WedgeTomogram")
        vol = np.asarray(self.volume, dtype=np.float32)
        if vol.ndim != 3:
            raise GeometryError(f"tomogram {self.name!r}: expected (Z, Y, X), got {vol.shape}")
        object.__setattr__(self, "volume", vol)
        if self.partner is not None:
            refuse_lazy(self.partner, "WedgeTomogram")
            other = np.asarray(self.partner, dtype=np.float32)
            if other.shape != vol.shape:
                raise GeometryError(
                    f"tomogram {self.name!r}: halves differ in shape, {vol.shape} vs {other.shape}"
                )
            object.__setattr__(self, "partner", other)

    @property
    def halves(self) -> tuple[np.ndarray, np.ndarray]:
        """``(input source, target source)``: the two halves, or the tomogram twice."""
        return (self.volume, self.volume if self.partner is None else self.partner)


def normalisation(volume: np.ndarray) -> tuple[float, float]:
    """``(mean, std)`` of a ``(Z, Y, X)`` volume (std floored at 1e-6)."""
    refuse_lazy(volume, "normalisation")
    v = np.asarray(volume)
    return float(v.mean(dtype=np.float64)), max(float(v.std(dtype=np.float64)), 1e-6)


def standardise_and_bin(
    volume: np.ndarray, loc: float, scale: float, bin_factor: int
) -> np.ndarray:
    """ndarray of float32: ``(volume - loc) / scale`` binned by ``bin_factor`` (means of
    ``bin**3`` voxels; a remainder at the far end of an axis is dropped)."""
    refuse_lazy(volume, "standardise_and_bin")
    v = (np.asarray(volume, dtype=np.float32) - np.float32(loc)) / np.float32(scale)
    b = int(bin_factor)
    if b == 1:
        return v
    z, y, x = (n // b for n in v.shape)
    if min(z, y, x) < 1:
        raise GeometryError(f"a volume of {v.shape} is smaller than one {b}-fold bin")
    v = v[: z * b, : y * b, : x * b]
    return v.reshape(z, b, y, b, x, b).mean(axis=(1, 3, 5), dtype=np.float32)


def _grid(shape: Sequence[int], side: int, step: int) -> np.ndarray:
    axes = []
    for n in shape:
        if n < side:
            raise GeometryError(
                f"a {side}-voxel training box does not fit a volume of {tuple(shape)}"
            )
        lo, hi = side // 2, n - (side - side // 2)
        axes.append(np.unique(np.r_[np.arange(lo, hi + 1, step), hi]))
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def structure_scores(
    volume: np.ndarray, side: int, centres: np.ndarray, *, sigma_px: float = 2.0
) -> np.ndarray:
    """ndarray of shape (n,): std of the ``sigma_px``-smoothed volume over each ``side`` box."""
    g = ndimage.gaussian_filter(np.asarray(volume, dtype=np.float32), sigma_px)
    m1 = ndimage.uniform_filter(g, side, mode="nearest")
    m2 = ndimage.uniform_filter(g * g, side, mode="nearest")
    var = np.maximum(m2 - m1 * m1, 0.0)
    # uniform_filter centres an even window at n // 2, as the box slices below do
    return np.sqrt(var[centres[:, 0], centres[:, 1], centres[:, 2]])


def sample_centres(
    volume: np.ndarray,
    side: int,
    n: int,
    rng: np.random.Generator,
    *,
    sigma_px: float = 2.0,
    quiet_fraction: float = 0.25,
) -> np.ndarray:
    """ndarray of int, shape (n, 3): box centres ``(z, y, x)``, weighted towards structure.

    A box of ``side`` centred at ``c`` is ``volume[c - side//2 : c - side//2 + side]``.
    """
    if not 0.0 <= quiet_fraction < 1.0:
        raise ConfigError(f"quiet_fraction must lie in [0, 1), got {quiet_fraction}")
    step = max(1, side // 4)
    centres = _grid(volume.shape, side, step)
    scores = structure_scores(volume, side, centres, sigma_px=sigma_px)
    cut = float(np.quantile(scores, quiet_fraction)) if quiet_fraction > 0 else 0.0
    weights = np.maximum(scores - cut, 0.0)
    if not np.isfinite(weights).all() or weights.sum() <= 0:  # a flat volume: draw uniformly
        weights = np.ones_like(scores)
    p = weights / weights.sum()
    n_avail = int(np.count_nonzero(p))
    idx = rng.choice(len(centres), size=n, replace=n > n_avail, p=p)
    picked = centres[idx] + rng.integers(-(step // 2), step // 2 + 1, size=(n, 3))
    lo = side // 2
    hi = np.asarray(volume.shape) - (side - side // 2)
    return np.clip(picked, lo, hi).astype(int)


def cut_boxes(volume: np.ndarray, centres: np.ndarray, side: int) -> np.ndarray:
    """ndarray of float32, shape (n, side, side, side): the boxes at ``centres``."""
    out = np.empty((len(centres), side, side, side), dtype=np.float32)
    for i, c in enumerate(centres):
        a = np.asarray(c) - side // 2
        out[i] = volume[a[0] : a[0] + side, a[1] : a[1] + side, a[2] : a[2] + side]
    return out


@dataclass(frozen=True)
class BoxPool:
    """Paired training boxes from all tomograms.

    first, second : ndarray of float32, shape (N, L, L, L)
        Boxes from the two halves (the same boxes twice without halves), standardised.
    tomogram : ndarray of int, shape (N,)
        Index of each box's tomogram in :attr:`tilt_ranges_deg`.
    tilt_ranges_deg : tuple of (min, max)
    centres : ndarray of int, shape (N, 3)
    """

    first: np.ndarray
    second: np.ndarray
    tomogram: np.ndarray
    tilt_ranges_deg: tuple[tuple[float, float], ...]
    centres: np.ndarray


def build_pool(
    tomograms: Sequence[WedgeTomogram],
    side: int,
    n_per_tomogram: int,
    rng: np.random.Generator,
    *,
    sigma_px: float = 2.0,
    quiet_fraction: float = 0.25,
    standardise: bool = True,
) -> BoxPool:
    """Boxes of ``side`` voxels, ``n_per_tomogram`` from each tomogram (see the module doc).

    ``standardise=False``: the volumes are standardised already (boxes cut as they are).
    """
    if not tomograms:
        raise ConfigError("missing-wedge training needs at least one tomogram")
    if n_per_tomogram < 1:
        raise ConfigError(f"n_per_tomogram must be >= 1, got {n_per_tomogram}")
    first, second, which, centres = [], [], [], []
    for i, tomo in enumerate(tomograms):
        a, b = tomo.halves
        (la, sa), (lb, sb) = (
            (normalisation(a), normalisation(b)) if standardise else ((0.0, 1.0), (0.0, 1.0))
        )
        guide = a if tomo.partner is None else 0.5 * (a + b)
        c = sample_centres(
            guide, side, n_per_tomogram, rng, sigma_px=sigma_px, quiet_fraction=quiet_fraction
        )
        first.append((cut_boxes(a, c, side) - la) / sa)
        second.append((cut_boxes(b, c, side) - lb) / sb)
        which.append(np.full(len(c), i))
        centres.append(c)
    return BoxPool(
        first=np.concatenate(first).astype(np.float32),
        second=np.concatenate(second).astype(np.float32),
        tomogram=np.concatenate(which),
        tilt_ranges_deg=tuple(t.tilt_range_deg for t in tomograms),
        centres=np.concatenate(centres),
    )
