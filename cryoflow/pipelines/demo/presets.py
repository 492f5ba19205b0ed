"""The demo's presets (``cryoflow demo --preset demo|paper``): what is simulated and how long
each network trains.

- ``demo`` (the default): two 64 x 128 x 128 tomograms (one to train on, one to test on),
  the trainings on a wall-clock budget so the demo ends in a few minutes. Unchanged from the
  demo before presets existed.
- ``paper``: the 2D-to-3D paper's experiments (Zeng et al. 2023) at the paper's scale:
  several 128 x 512 x 512 tomograms, tilts -60..+60 degrees every 3 degrees, the realistic
  preset's dose (SNR 0.2) and CTF blur; the networks train on the first tomogram's annotated
  tilts (2D-to-3D) or reconstruction slices (conventional, the same number of boxes and
  steps) and every figure is measured on each of the other tomograms, reported as the mean,
  with ``<figure>_std`` (spread over test tomograms) and ``<figure>_n`` (tomograms behind it).
  Training length is a number of steps, never a clock, so a seed gives the same figures on an
  idle or a busy machine.

``--quick`` keeps a preset's protocol at the smallest sizes (for smoke tests).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cryoflow.errors import ConfigError

__all__ = [
    "PRESETS",
    "DemoPreset",
    "ParticleSizes",
    "TrainingSizes",
    "over_tomograms",
    "resolve_preset",
]


@dataclass(frozen=True)
class TrainingSizes:
    """The few-shot comparison's training (the fields of
    :class:`~cryoflow.pipelines.demo.compare.CompareConfig` of the same names): wall-clock
    budget ``time_budget_s`` or ``None`` (steps only), U-Net ``steps``, ``detector_steps``,
    positive and negative boxes ``n_boxes``/``n_negative`` of side ``box_size``, ``batch_size``,
    the Faster R-CNN's ``detector_image_size``, and early stopping (``eval_every`` steps
    between validation looks, ``patience`` looks; ``None``: fixed steps)."""

    time_budget_s: float | None = None
    steps: int = 200
    detector_steps: int = 300
    n_boxes: int = 12
    n_negative: int = 8
    box_size: int = 64
    batch_size: int = 8
    detector_image_size: int = 128
    eval_every: int | None = None
    patience: int = 3


#: the crowded tomograms (CrowdedConfig's defaults otherwise: 10 Å voxels, a 200 Å dimer
#: target among trimer and rod decoys, tilts -60..+60 every 3 degrees, per-tilt SNR 0.1, CTF)
_CROWDED = {"shape": (48, 128, 128), "n_targets": 18, "n_decoys": 18}
#: the picker's training (fewer descriptor shells and degrees than the stage's 6/6: the score
#: map's cost grows with both)
_PICK = {"steps": 600, "n_random_negatives": 4000, "shells": 4, "degree": 4}
#: the averaging rounds (initial resolution in Å)
_AVERAGE = {"iterations": 3, "initial_rounds": 2, "initial_resolution": 60.0, "batch_size": 16}


@dataclass(frozen=True)
class ParticleSizes:
    """The structure half (:mod:`cryoflow.pipelines.demo.particles`).

    crowded : keyword arguments of :class:`~cryoflow.simulate.crowded.CrowdedConfig` (seed
    aside), for each of ``n_tomograms`` tomograms; n_examples : targets marked as examples;
    pick : :class:`~cryoflow.pipelines.stages.pick.PickSettings` fields (the diameter is the
    simulator's); tolerance_px : a pick matches a target this close; box : extraction box
    side; start : ``"reference"`` (the truth low-passed to the average's
    ``initial_resolution``) or ``"none"`` (template-free); average :
    :class:`~cryoflow.pipelines.stages.average.AverageParams` fields.
    """

    crowded: dict[str, Any] = field(default_factory=lambda: dict(_CROWDED))
    n_tomograms: int = 3
    n_examples: int = 8
    tolerance_px: float = 6.0
    pick: dict[str, Any] = field(default_factory=lambda: dict(_PICK))
    box: int = 32
    start: str = "reference"
    average: dict[str, Any] = field(default_factory=lambda: dict(_AVERAGE))


@dataclass(frozen=True)
class DemoPreset:
    """Resolved sizes of one demo run.

    simulate : keyword arguments of
        :class:`~cryoflow.pipelines.stages.simulate.SimulateParams` (``n_tomograms`` and
        ``seed`` aside); n_tomograms : tomograms simulated; n_train : the first ``n_train``
        train the networks, the others are scored (the demo preset trains and tests on its two
        tomograms' first and last); sphere_size : side of Algorithm 2's hollow-sphere volume;
        training : the comparison's training (:class:`TrainingSizes`); particles : the
        structure half (:class:`ParticleSizes`).
    """

    name: str
    simulate: dict[str, Any] = field(default_factory=dict)
    n_tomograms: int = 2
    n_train: int = 1
    sphere_size: int = 100
    training: TrainingSizes = field(default_factory=TrainingSizes)
    particles: ParticleSizes = field(default_factory=ParticleSizes)

    def __post_init__(self) -> None:
        if not 1 <= self.n_train < self.n_tomograms:
            raise ConfigError(
                f"demo preset {self.name!r}: n_train must be in 1..n_tomograms-1 "
                f"({self.n_tomograms} tomograms), got {self.n_train}"
            )

    @property
    def per_tomogram(self) -> bool:
        """Whether figures are measured on every test tomogram (mean, spread, count) rather
        than on the last tomogram alone (the small demo)."""
        return self.n_tomograms - self.n_train > 1

    def simulate_params(self, seed: int) -> Any:
        """The :class:`~cryoflow.pipelines.stages.simulate.SimulateParams` of this preset."""
        from cryoflow.pipelines.stages.simulate import SimulateParams

        return SimulateParams(**self.simulate, n_tomograms=self.n_tomograms, seed=seed)

    def sizes(self, seed: int = 0) -> dict[str, Any]:
        """What this preset runs, as plain values (printed by ``cryoflow demo --dry-run``)."""
        sim = self.simulate_params(seed).simulation()
        angles = sim.angles_deg
        return {
            "preset": self.name,
            "shape_zyx": list(sim.shape),
            "n_tilts": int(angles.size),
            "tilt_range_deg": [float(angles[0]), float(angles[-1])],
            "tilt_step_deg": float(sim.tilt_step_deg),
            "snr": sim.snr,
            "blur": sim.blur,
            "pixel_size_angstrom": float(sim.pixel_size_angstrom),
            "n_tomograms": self.n_tomograms,
            "train_tomograms": [sim.tomogram_name(i) for i in range(self.n_train)],
            "test_tomograms": [sim.tomogram_name(i) for i in range(self.n_train, self.n_tomograms)],
            "sphere_size": self.sphere_size,
            "unet_steps": self.training.steps,
            "detector_steps": self.training.detector_steps,
            "time_budget_s": self.training.time_budget_s,
            "early_stop_every": self.training.eval_every,
            "early_stop_patience": self.training.patience,
            "cell": sim.cell,
            "n_boxes": self.training.n_boxes,
            "particles": asdict(self.particles),
        }


#: the simulator's ``paper`` preset: 128 x 512 x 512 at 20 A, tilts -60..+60 every 3 degrees,
#: SNR 0.2, CTF, the neuron cell model (:mod:`cryoflow.simulate.cell`)
_PAPER_SIM = {"preset": "paper", "tilt_range_deg": (-60.0, 60.0)}
#: the paper preset's training: at most 600 steps, a validation look every 50, stopped after
#: 4 looks without gain; the Faster R-CNN sees the 512-pixel tilts at full size
_PAPER_TRAINING = TrainingSizes(
    None,
    600,
    600,
    n_boxes=24,
    n_negative=16,
    box_size=96,
    detector_image_size=512,
    eval_every=50,
    patience=4,
)

#: the structure half at the smallest sizes (``--quick``)
_QUICK_PARTICLES = ParticleSizes(
    {"shape": (40, 96, 96), "n_targets": 10, "n_decoys": 10},
    n_tomograms=2,
    pick={**_PICK, "steps": 300, "n_random_negatives": 2000, "degree": 3},
    box=24,
    average={**_AVERAGE, "iterations": 2, "initial_rounds": 1},
)

#: (preset, quick) -> resolved sizes; the paper preset keeps the demo's structure half
PRESETS: dict[tuple[str, bool], DemoPreset] = {
    ("demo", False): DemoPreset("demo", {"preset": "demo"}),
    ("demo", True): DemoPreset(
        "demo",
        {"preset": "tiny"},
        sphere_size=48,
        training=TrainingSizes(),
        particles=_QUICK_PARTICLES,
    ),
    ("paper", False): DemoPreset(
        "paper",
        _PAPER_SIM,
        n_tomograms=4,
        sphere_size=128,
        training=_PAPER_TRAINING,
    ),
    ("paper", True): DemoPreset(
        "paper",
        {"preset": "tiny"},  # the small demo's data (granules at 64 px), the paper's protocol
        n_tomograms=3,
        sphere_size=48,
        training=TrainingSizes(
            None, 30, 20, n_boxes=6, n_negative=4, box_size=32, batch_size=4, eval_every=10
        ),
        particles=_QUICK_PARTICLES,
    ),
}

NAMES: tuple[str, ...] = tuple(dict.fromkeys(name for name, _ in PRESETS))


def resolve_preset(name: str, quick: bool = False) -> DemoPreset:
    """The sizes of preset ``name`` (``--quick``: its smallest form); ``ConfigError`` naming
    the option for an unknown name."""
    try:
        return PRESETS[(name, bool(quick))]
    except KeyError:
        raise ConfigError(f"--preset must be one of {', '.join(NAMES)} (got {name!r})") from None


def over_tomograms(per: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Figures measured on several test tomograms (one mapping each) as one: every finite
    scalar ``k`` as its mean ``k``, its population standard deviation ``k_std`` and the number
    of tomograms with a finite value ``k_n``; NaN when none has one. Non-scalar values are
    left out."""
    keys = dict.fromkeys(
        k
        for m in per
        for k, v in m.items()
        if isinstance(v, numbers.Real) and not isinstance(v, bool)
    )
    out: dict[str, float] = {}
    for k in keys:
        values = [float(m[k]) for m in per if k in m and _finite(m[k])]
        n = len(values)
        mean = sum(values) / n if n else math.nan
        out[k] = mean
        out[f"{k}_std"] = math.sqrt(sum((v - mean) ** 2 for v in values) / n) if n else math.nan
        out[f"{k}_n"] = float(n)
    return out


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
