"""Simulation settings (:class:`SimulationConfig`, with presets) and whole simulated tomograms.

Randomness: tomogram ``i`` of a dataset with seed ``s`` draws its phantom from
``SeedSequence(s, spawn_key=(i, 0))`` and the noise of tilt ``k`` from
``SeedSequence(s, spawn_key=(i, 1, k))``. A tomogram therefore depends only on ``(s, i)`` and
the settings, not on how many tomograms are made or how the tilts are split into tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from cryoflow.errors import ConfigError
from cryoflow.geometry import TiltGeometry
from cryoflow.simulate.cell import CELLS, cell_model
from cryoflow.simulate.classes import CLASS_IDS, FOREGROUND_CLASSES, parse_classes
from cryoflow.simulate.phantom import Phantom, make_phantom
from cryoflow.simulate.recon import fbp
from cryoflow.simulate.tilts import (
    CONTRASTS,
    add_noise,
    apply_blur,
    apply_contrast,
    class_masks2d,
    project_sum,
)

BLURS = ("none", "gaussian", "ctf")

PRESETS: dict[str, dict[str, Any]] = {
    # unit tests: < 1 s per tomogram
    "tiny": {
        "shape": (32, 64, 64),
        "tilt_step_deg": 6.0,
        "pixel_size_angstrom": 20.0,
        "snr": 1.0,
        "blur": "none",
    },
    # the demo and examples
    "demo": {
        "shape": (64, 128, 128),
        "tilt_step_deg": 3.0,
        "pixel_size_angstrom": 14.0,
        "snr": 0.5,
        "blur": "gaussian",
    },
    # benchmarks: 61 tilts of 512 x 512, 200 x 512 x 512 volumes
    "realistic": {
        "shape": (200, 512, 512),
        "tilt_step_deg": 2.0,
        "pixel_size_angstrom": 10.0,
        "snr": 0.2,
        "blur": "ctf",
    },
    # the 2D-to-3D paper's experiments (``cryoflow demo --preset paper``): 41 tilts of
    # 512 x 512 at 20 A (a 1 um field), 128 x 512 x 512 volumes (256 nm thick), neuron-like
    # mitochondria full of calcium-phosphate granules at their physical contrast
    "paper": {
        "shape": (128, 512, 512),
        "tilt_step_deg": 3.0,
        "pixel_size_angstrom": 20.0,
        "snr": 0.2,
        "blur": "ctf",
        "cell": "neuron",
        # a neuron's classes: no rubisco (a plant enzyme)
        "classes": ("membrane", "mito_membrane", "granule", "filament", "ribosome"),
    },
}


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Frozen; validated on construction (``ConfigError``).

    Attributes
    ----------
    n_tomograms : int
        Tomograms in the dataset, named ``sim_000``, ``sim_001``, ...
    shape : (Z, Y, X)
        Volume shape in voxels; tilt images are ``(Y, X)``.
    tilt_min_deg, tilt_max_deg, tilt_step_deg : float
        Tilt angles ``min, min+step, ... <= max`` (the missing wedge lies outside).
    tilt_axis_deg : float
        In-plane rotation of the tilt axis on the detector (degrees, counter-clockwise from
        the detector ``y`` axis; see ``TiltGeometry.single_axis``). ``0`` is the contract's
        single-axis tilt about ``y``; other values are projected with the general projector
        and stored in the tilt series' geometry.
    snr : float or None
        Per-tilt variance ratio signal/noise; ``None`` for noise-free images.
    blur : {"none", "gaussian", "ctf"}
        Blur applied to the projections before noise.
    contrast : {"mass", "em"}
        Image polarity: ``"em"`` dense matter dark on a bright background, as microscopes
        record it (``1 - k * projected mass``, see :mod:`cryoflow.simulate.tilts`); ``"mass"``
        the projected mass itself (dense = bright). The truth density is mass either way.
        The default (every preset) stays ``"mass"`` until the consumers handle ``"em"``
        (see ``docs/design/simulator.md``).
    defocus_um : float
        Underfocus of the ``"ctf"`` blur, micrometres.
    blur_sigma_px : float
        Standard deviation of the ``"gaussian"`` blur, pixels.
    seed : int
        Root seed of the dataset.
    classes : tuple of str
        Foreground classes present (see :mod:`cryoflow.simulate.classes`).
    pixel_size_angstrom : float
    cell : str
        The cell model (:mod:`cryoflow.simulate.cell`): ``"default"`` (every preset but
        ``paper``) or ``"neuron"`` (more, neuron-sized mitochondria full of calcium-phosphate
        granules at their physical density).
    """

    n_tomograms: int = 1
    shape: tuple[int, int, int] = (32, 64, 64)
    tilt_min_deg: float = -60.0
    tilt_max_deg: float = 60.0
    tilt_step_deg: float = 6.0
    tilt_axis_deg: float = 0.0
    snr: float | None = 1.0
    blur: str = "none"
    contrast: str = "mass"
    defocus_um: float = 3.0
    blur_sigma_px: float = 1.0
    seed: int = 0
    classes: tuple[str, ...] = field(default=FOREGROUND_CLASSES)
    pixel_size_angstrom: float = 20.0
    cell: str = "default"

    def __post_init__(self) -> None:
        if int(self.n_tomograms) < 1:
            raise ConfigError(f"n_tomograms must be >= 1, got {self.n_tomograms}")
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 8:
            raise ConfigError(f"shape must be (Z, Y, X) with every size >= 8, got {self.shape}")
        object.__setattr__(self, "shape", shape)
        if not self.tilt_step_deg > 0:
            raise ConfigError(f"tilt step must be > 0 degrees, got {self.tilt_step_deg}")
        if not -90 < self.tilt_min_deg <= self.tilt_max_deg < 90:
            raise ConfigError(
                "tilt range must satisfy -90 < min <= max < 90 degrees, "
                f"got {self.tilt_min_deg} to {self.tilt_max_deg}"
            )
        if not (np.isfinite(self.tilt_axis_deg) and -180 <= self.tilt_axis_deg <= 180):
            raise ConfigError(f"tilt_axis_deg must be in [-180, 180], got {self.tilt_axis_deg}")
        object.__setattr__(self, "tilt_axis_deg", float(self.tilt_axis_deg))
        if self.snr is not None and not (self.snr > 0 and np.isfinite(self.snr)):
            raise ConfigError(f"snr must be a finite number > 0 (or None), got {self.snr}")
        if self.blur not in BLURS:
            raise ConfigError(f"blur must be one of {', '.join(BLURS)}, got {self.blur!r}")
        if self.contrast not in CONTRASTS:
            raise ConfigError(
                f"contrast must be one of {', '.join(CONTRASTS)}, got {self.contrast!r}"
            )
        if not self.pixel_size_angstrom > 0:
            raise ConfigError(f"pixel_size_angstrom must be > 0, got {self.pixel_size_angstrom}")
        if not self.blur_sigma_px > 0 or not self.defocus_um > 0:
            raise ConfigError("blur_sigma_px and defocus_um must be > 0")
        if int(self.seed) < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        object.__setattr__(self, "classes", parse_classes(self.classes))
        object.__setattr__(self, "n_tomograms", int(self.n_tomograms))
        object.__setattr__(self, "seed", int(self.seed))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SimulationConfig:
        """A preset (``tiny``, ``demo``, ``realistic``, ``paper``) with ``overrides`` applied."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def with_(self, **changes: Any) -> SimulationConfig:
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)

    @property
    def angles_deg(self) -> np.ndarray:
        """ndarray of shape (n_tilts,): tilt angles in degrees, ascending."""
        n = int(np.floor((self.tilt_max_deg - self.tilt_min_deg) / self.tilt_step_deg + 1e-9)) + 1
        return np.round(self.tilt_min_deg + self.tilt_step_deg * np.arange(n), 6)

    @property
    def geometry(self) -> TiltGeometry:
        """The simulated (and stored) geometry: single-axis tilt, rotated by ``tilt_axis_deg``."""
        return TiltGeometry.single_axis(self.angles_deg, tilt_axis_deg=self.tilt_axis_deg)

    @property
    def class_ids(self) -> dict[str, int]:
        """Present foreground classes -> label ids."""
        return {c: CLASS_IDS[c] for c in self.classes}

    def tomogram_name(self, index: int) -> str:
        return f"sim_{int(index):03d}"

    def phantom_seed(self, index: int) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.seed, spawn_key=(int(index), 0))

    def noise_seeds(
        self, index: int, tilts: Sequence[int] | np.ndarray
    ) -> list[np.random.SeedSequence]:
        return [np.random.SeedSequence(self.seed, spawn_key=(int(index), 1, int(k))) for k in tilts]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings (for provenance)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["classes"] = list(self.classes)
        return d


@dataclass(frozen=True)
class SimulatedTomogram:
    """One simulated tomogram in memory.

    Attributes
    ----------
    name : str
    phantom : Phantom
        ``density``/``labels`` of shape (Z, Y, X), particle table, mitochondria boxes.
    angles_deg : ndarray of shape (n_tilts,)
    tilt_series : ndarray of float32, shape (n_tilts, Y, X)
        Blurred, noisy projections in ``config.contrast`` polarity.
    masks2d : dict of class name -> ndarray of bool, shape (n_tilts, Y, X)
    tomogram : ndarray of float32, shape (Z, Y, X)
        Ramp-filtered back-projection of ``tilt_series`` (same polarity as the images).
    """

    name: str
    phantom: Phantom
    angles_deg: np.ndarray
    tilt_series: np.ndarray
    masks2d: dict[str, np.ndarray]
    tomogram: np.ndarray


def simulate_phantom(config: SimulationConfig, index: int) -> Phantom:
    """The phantom of tomogram ``index`` (``(Z, Y, X)`` density and labels, tables)."""
    rng = np.random.default_rng(config.phantom_seed(index))
    return make_phantom(
        config.shape, config.pixel_size_angstrom, config.classes, rng, cell_model(config.cell)
    )


def simulate_tilts(
    config: SimulationConfig, index: int, phantom: Phantom, tilts: Sequence[int] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Images and per-class 2D masks of some tilts of tomogram ``index``.

    Parameters
    ----------
    tilts : sequence of int, optional
        Indices into ``config.angles_deg`` (default: all).

    Returns
    -------
    images : ndarray of float32, shape (n, Y, X)
        Projection, blur, contrast (``config.contrast``), then noise at ``config.snr``.
    masks2d : dict of class name -> ndarray of bool, shape (n, Y, X)
    """
    idx = np.arange(config.angles_deg.size) if tilts is None else np.asarray(tilts, dtype=int)
    geometry = config.geometry.select(idx)
    clean = project_sum(phantom.density, geometry)
    blurred = apply_blur(
        clean,
        kind=config.blur,
        pixel_size_angstrom=config.pixel_size_angstrom,
        defocus_um=config.defocus_um,
        sigma_px=config.blur_sigma_px,
    )
    signal = apply_contrast(blurred, config.contrast, config.shape[0])
    images = add_noise(signal, config.snr, config.noise_seeds(index, idx))
    masks = class_masks2d(phantom.labels, geometry, config.class_ids)
    return images, masks


def simulate_tomogram(config: SimulationConfig, index: int) -> SimulatedTomogram:
    """Everything about tomogram ``index``, in memory (for tests and notebooks)."""
    if not 0 <= int(index) < config.n_tomograms:
        raise ConfigError(f"tomogram index must be in 0..{config.n_tomograms - 1}, got {index}")
    phantom = simulate_phantom(config, index)
    images, masks = simulate_tilts(config, index, phantom)
    tomogram = fbp(images, config.geometry, config.shape)
    return SimulatedTomogram(
        config.tomogram_name(index), phantom, config.angles_deg, images, masks, tomogram
    )
