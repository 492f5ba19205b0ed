"""Crowded tomograms for picking: a target molecule among decoys of its size and mass.

:func:`simulate_crowded` builds one tomogram the way a microscope would see it:

1. a density volume ``(Z, Y, X)``: cytosol, the target molecule and decoys of the same size and
   mass but other shapes (:mod:`cryoflow.simulate.molecules`) in random orientations, and
   small "clutter" proteins, all placed at random where nothing else is (never overlapping,
   at least one voxel apart);
2. a single-axis tilt series of it in the contract geometry (:func:`~.tilts.project_sum`),
   blurred (CTF by default), in the chosen contrast, with white noise at a per-tilt SNR;
3. the tomogram reconstructed from those images by ramp-filtered back-projection
   (:func:`~.recon.fbp`), so its missing wedge is the real one of the tilt range.

The truth table lists every target and decoy: ``x, y, z`` (voxels, the molecule's centre of
mass), ``kind`` (``"target"``/``"decoy"``), ``shape``, ``rot, tilt, psi`` (the contract's ZYZ
convention, degrees). Pure and seeded: the same config gives the same tomogram.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from cryoflow.errors import ConfigError
from cryoflow.simulate.molecules import SHAPES, molecule
from cryoflow.simulate.particles import Blob, Template, random_rotation, render
from cryoflow.simulate.recon import fbp
from cryoflow.simulate.tilts import CONTRASTS, add_noise, apply_blur, apply_contrast, project_sum

TRUTH_COLUMNS = ["x", "y", "z", "kind", "shape", "rot", "tilt", "psi"]
DENSITY_CYTOSOL = 0.15
DENSITY_PROTEIN = 1.0


@dataclass(frozen=True)
class CrowdedConfig:
    """A crowded tomogram (frozen; checked on construction, ``ConfigError``).

    shape : (Z, Y, X) voxels; pixel_size_angstrom : voxel size.
    diameter_angstrom : size of the target and of every decoy.
    target : the target's shape; decoys : the decoys' shapes (same size and mass).
    n_targets : targets placed; n_decoys : decoys placed, shared evenly among ``decoys``.
    clutter_fraction : share of the volume filled by small proteins of
        ``clutter_diameter_angstrom`` (min, max), ellipsoids of random axes.
    tilt_min_deg, tilt_max_deg, tilt_step_deg : the tilt series (single axis about ``y``).
    snr : per-tilt variance ratio signal / noise (``None``: noise-free).
    blur : ``"ctf"``, ``"gaussian"`` or ``"none"``; defocus_um : CTF underfocus.
    contrast : ``"mass"`` (dense bright) or ``"em"`` (dense dark).
    seed : root seed.
    """

    shape: tuple[int, int, int] = (96, 192, 192)
    pixel_size_angstrom: float = 10.0
    diameter_angstrom: float = 200.0
    target: str = "dimer"
    decoys: tuple[str, ...] = ("trimer", "rod")
    n_targets: int = 30
    n_decoys: int = 30
    clutter_fraction: float = 0.04
    clutter_diameter_angstrom: tuple[float, float] = (40.0, 110.0)
    tilt_min_deg: float = -60.0
    tilt_max_deg: float = 60.0
    tilt_step_deg: float = 3.0
    snr: float | None = 0.1
    blur: str = "ctf"
    defocus_um: float = 3.0
    contrast: str = "mass"
    seed: int = 0

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 8:
            raise ConfigError(f"shape must be (Z, Y, X) with every size >= 8, got {self.shape}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "decoys", tuple(str(d) for d in self.decoys))
        for s in (self.target, *self.decoys):
            if s not in SHAPES:
                raise ConfigError(f"unknown molecule shape {s!r}; valid: {', '.join(SHAPES)}")
        if self.target in self.decoys:
            raise ConfigError(f"the target shape {self.target!r} cannot also be a decoy")
        if self.n_targets < 0 or self.n_decoys < 0 or (self.n_decoys and not self.decoys):
            raise ConfigError("n_targets and n_decoys must be >= 0 (decoys need decoy shapes)")
        if not 0 <= self.clutter_fraction < 0.5:
            raise ConfigError(f"clutter_fraction must be in [0, 0.5), got {self.clutter_fraction}")
        if not -90 < self.tilt_min_deg <= self.tilt_max_deg < 90 or not self.tilt_step_deg > 0:
            raise ConfigError("tilts must satisfy -90 < min <= max < 90 and step > 0 (degrees)")
        if self.snr is not None and not self.snr > 0:
            raise ConfigError(f"snr must be > 0 (or None), got {self.snr}")
        if self.contrast not in CONTRASTS:
            raise ConfigError(f"contrast must be one of {CONTRASTS}, got {self.contrast!r}")
        if not self.pixel_size_angstrom > 0 or not self.diameter_angstrom > 0:
            raise ConfigError("pixel_size_angstrom and diameter_angstrom must be > 0")

    @property
    def angles_deg(self) -> np.ndarray:
        """ndarray of shape (n_tilts,): the tilt angles, ascending."""
        n = int(np.floor((self.tilt_max_deg - self.tilt_min_deg) / self.tilt_step_deg + 1e-9))
        return np.round(self.tilt_min_deg + self.tilt_step_deg * np.arange(n + 1), 6)

    @property
    def diameter_px(self) -> float:
        return self.diameter_angstrom / self.pixel_size_angstrom

    def with_(self, **changes: Any) -> CrowdedConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["decoys"] = list(self.decoys)
        d["clutter_diameter_angstrom"] = list(self.clutter_diameter_angstrom)
        return d


@dataclass(frozen=True)
class CrowdedTomogram:
    """One crowded tomogram in memory.

    density : (Z, Y, X) float32 mass; tilt_series : (n_tilts, Y, X) float32 images;
    angles_deg : (n_tilts,); tomogram : (Z, Y, X) float32 reconstruction (the images'
    polarity); truth : the target and decoy table (:data:`TRUTH_COLUMNS`).
    """

    config: CrowdedConfig
    density: np.ndarray
    tilt_series: np.ndarray
    angles_deg: np.ndarray
    tomogram: np.ndarray
    truth: pd.DataFrame

    @property
    def targets(self) -> pd.DataFrame:
        return self.truth[self.truth["kind"] == "target"].reset_index(drop=True)


class _Placer:
    """Places molecules where nothing is, keeping a one-voxel gap."""

    def __init__(self, config: CrowdedConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng
        self.density = np.full(config.shape, DENSITY_CYTOSOL, dtype=np.float32)
        self.occupied = np.zeros(config.shape, dtype=bool)
        self.rows: list[dict[str, Any]] = []

    def place(self, tmpl: Template, kind: str | None, tries: int = 200) -> int:
        """Place ``tmpl`` at a random free spot; returns its voxel count (0: no room found)."""
        px = self.config.pixel_size_angstrom
        radius = tmpl.radius_angstrom / px
        shape = np.asarray(self.config.shape, dtype=float)
        lo = np.minimum(radius + 1, (shape - 1) / 2)
        hi = shape - 1 - lo
        for _ in range(tries):
            center = self.rng.uniform(lo, hi)
            if self.occupied[tuple(np.rint(center).astype(int))]:
                continue
            rot_zyx, euler = random_rotation(self.rng)
            sl, mask = render(tmpl, self.config.shape, center, px, rot_zyx)
            if not mask.any() or self.occupied[sl][mask].any():
                continue
            self.density[sl][mask] = DENSITY_PROTEIN
            self.occupied[sl] |= ndimage.binary_dilation(mask, iterations=1)
            if kind is not None:
                z, y, x = (float(c) for c in center)
                self.rows.append(
                    {
                        "x": x,
                        "y": y,
                        "z": z,
                        "kind": kind,
                        "shape": tmpl.name,
                        "rot": euler[0],
                        "tilt": euler[1],
                        "psi": euler[2],
                    }
                )
            return int(mask.sum())
        return 0


def _clutter(config: CrowdedConfig, rng: np.random.Generator) -> Template:
    lo, hi = config.clutter_diameter_angstrom
    radii = rng.uniform(lo / 2, hi / 2, size=3)
    return Template("clutter", 0, (Blob((0.0, 0.0, 0.0), tuple(float(r) for r in radii)),))  # type: ignore[arg-type]


def crowded_density(config: CrowdedConfig) -> tuple[np.ndarray, pd.DataFrame]:
    """The density volume ``(Z, Y, X)`` float32 and the truth table of a crowded tomogram."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0,)))
    placer = _Placer(config, rng)
    # 1. targets and decoys, interleaved in a random order so neither is favoured in space
    kinds = ["target"] * config.n_targets + [
        config.decoys[i % len(config.decoys)] for i in range(config.n_decoys)
    ]
    order = rng.permutation(len(kinds))
    for i in order:
        shape_name = config.target if kinds[i] == "target" else kinds[i]
        tmpl = molecule(shape_name, config.diameter_angstrom)
        placer.place(tmpl, "target" if kinds[i] == "target" else "decoy")
    # 2. small proteins until the clutter fraction is reached (or no room is found)
    goal = config.clutter_fraction * float(np.prod(config.shape))
    filled = 0.0
    misses = 0
    while filled < goal and misses < 50:
        n = placer.place(_clutter(config, rng), None, tries=20)
        filled += n
        misses += n == 0
    truth = pd.DataFrame(placer.rows, columns=TRUTH_COLUMNS)
    return placer.density, truth


def simulate_crowded(config: CrowdedConfig) -> CrowdedTomogram:
    """Density, tilt series and reconstruction of one crowded tomogram, with its truth."""
    density, truth = crowded_density(config)
    angles = config.angles_deg
    # 1. projection, blur, contrast, noise (one seed per tilt)
    images = project_sum(density, angles)
    images = apply_blur(
        images,
        kind=config.blur,
        pixel_size_angstrom=config.pixel_size_angstrom,
        defocus_um=config.defocus_um,
    )
    images = apply_contrast(images, config.contrast, config.shape[0])
    seeds = [np.random.SeedSequence(config.seed, spawn_key=(1, k)) for k in range(angles.size)]
    images = add_noise(images, config.snr, seeds)
    # 2. reconstruction: the missing wedge is that of the tilt range
    tomogram = fbp(images, angles, config.shape)
    return CrowdedTomogram(config, density, images, angles, tomogram, truth)
