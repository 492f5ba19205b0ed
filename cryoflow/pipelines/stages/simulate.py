"""The ``simulate`` stage: synthetic cellular tomograms with ground truth, into a store.

Per tomogram ``sim_NNN`` (same layout as ingest, see ``docs/design/store.md``):
``tilt_series`` with its geometry, ``volumes/truth_density`` and ``labels/truth_labels``,
``results/truth/masks2d_<class>``, the tables ``results/truth/particles`` and
``results/truth/mito_boxes``, and ``volumes/tomogram`` (the weighted back-projection of
``cryoflow reconstruct``). :mod:`cryoflow.pipelines.stages.simulation` writes them, each
tomogram published whole. A source stage: in ``cryoflow run`` it makes the tomograms before
any other step and is skipped when every tomogram is current.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from cryoflow.errors import ConfigError, NodeNotFoundError
from cryoflow.pipelines.stages.base import CheckContext, SourceReport, Stage, StageParams
from cryoflow.pipelines.stages.eager import Target

if TYPE_CHECKING:
    from cryoflow.simulate.dataset import SimulationConfig

__all__ = ["SimulateParams", "is_current", "run", "simulate_step"]

NAME = "simulate"


class SimulateParams(StageParams):
    """Synthetic cellular tomograms ``sim_000``, ``sim_001``, ... with ground truth.

    A preset of :mod:`cryoflow.simulate.dataset` with optional overrides (``None`` keeps the
    preset's value). In ``cryoflow run``, rerunning with the same settings skips; other
    settings replace every simulated tomogram (so everything computed from them recomputes).
    """

    preset: str = Field(default="tiny", description="tiny, demo or realistic")
    n_tomograms: int = Field(default=1, ge=1, le=10_000, description="tomograms to simulate")
    seed: int = Field(default=0, ge=0, description="root seed")
    shape: tuple[int, int, int] | None = Field(
        default=None, description="volume shape Z Y X in voxels"
    )
    tilt_range_deg: tuple[float, float] | None = Field(
        default=None, description="lowest and highest tilt angle, degrees"
    )
    tilt_step_deg: float | None = Field(default=None, gt=0, description="tilt increment, degrees")
    snr: float | None = Field(
        default=None, gt=0, description="per-tilt signal/noise variance ratio"
    )
    blur: str | None = Field(default=None, description="none, gaussian or ctf")
    classes: tuple[str, ...] | None = Field(
        default=None, description="foreground classes; default: all of them"
    )
    contrast: str | None = Field(
        default=None,
        description="em (dense matter dark on a bright background, as microscopes record it) "
        "or mass (projected mass, dense = bright; the presets' default)",
    )
    tilt_axis_deg: float | None = Field(
        default=None, ge=-180, le=180, description="in-plane rotation of the tilt axis, degrees"
    )

    @model_validator(mode="after")
    def _valid(self) -> SimulateParams:
        self.simulation()  # the simulator's own checks, as a ValueError naming the value
        return self

    def simulation(self) -> SimulationConfig:
        """The :class:`cryoflow.simulate.dataset.SimulationConfig` these settings describe."""
        from cryoflow.simulate.dataset import SimulationConfig

        overrides: dict[str, Any] = {
            "n_tomograms": self.n_tomograms,
            "seed": self.seed,
            "shape": self.shape,
            "tilt_step_deg": self.tilt_step_deg,
            "snr": self.snr,
            "blur": self.blur,
            "classes": self.classes,
            "contrast": self.contrast,
            "tilt_axis_deg": self.tilt_axis_deg,
        }
        if self.tilt_range_deg is not None:
            overrides["tilt_min_deg"], overrides["tilt_max_deg"] = self.tilt_range_deg
        try:
            return SimulationConfig.preset(
                self.preset, **{k: v for k, v in overrides.items() if v is not None}
            )
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


# ---------------------------------------------------------------------------- cryoflow run
def _settings(parameters: Any) -> dict[str, Any]:
    """Simulation settings as stored, without ``n_tomograms`` (a tomogram does not depend on it)."""
    return {k: v for k, v in dict(parameters or {}).items() if k != "n_tomograms"}


def is_current(store: object, name: str, simulation: SimulationConfig) -> bool:
    """Whether tomogram ``name`` holds a complete simulation with the settings ``simulation``:
    its tilt series complete, not stale and simulated with the same settings (its provenance
    ``parameters``, ``n_tomograms`` aside), and its truth complete."""
    from cryoflow.io import store as S
    from cryoflow.io.layout import TILT_SERIES, TOMOGRAMS, open_dataset
    from cryoflow.io.nodes import ATTR, STALE, read_raw_metadata
    from cryoflow.pipelines.stages.simulation import TRUTH_STEP

    try:
        root: Any = open_dataset(store)
    except NodeNotFoundError:
        return False
    meta = read_raw_metadata(root, f"{TOMOGRAMS}/{name}/{TILT_SERIES}")
    info = ((meta or {}).get("attributes", {}) or {}).get(ATTR, {}) or {}
    if not info.get("complete") or info.get(STALE):
        return False
    prov = info.get("provenance", {}) or {}
    if prov.get("step") != NAME or _settings(prov.get("parameters")) != _settings(
        simulation.to_dict()
    ):
        return False
    try:
        for c in simulation.classes:
            S.open_result(store, name, TRUTH_STEP, f"masks2d_{c}")
        S.open_volume(store, name, "tomogram")
    except NodeNotFoundError:
        return False
    return True


def simulate_step(
    client: Any,
    store: object,
    params: SimulateParams,
    *,
    tomograms: Sequence[str] | None = None,
    log: Any = None,
) -> SourceReport:
    """``cryoflow run``'s simulate: the dataset of ``params`` unless every tomogram is current.

    All or nothing: the simulator makes a whole dataset at once, so even one missing tomogram
    replaces all of them with ``overwrite`` (each gets a new ``write_id``, and every later step
    recomputes). A simulation error is not one tomogram's failure: it stops the run.
    """
    import time

    from cryoflow.io.layout import create_dataset
    from cryoflow.pipelines.stages.simulation import simulate_dataset

    t0 = time.perf_counter()
    simulation = params.simulation()
    names = [simulation.tomogram_name(i) for i in range(simulation.n_tomograms)]
    create_dataset(store)
    if all(is_current(store, n, simulation) for n in names):
        return SourceReport(skipped=len(names))
    made = simulate_dataset(client, store, simulation, overwrite=True, quiet=True)
    if log is not None:
        log(f"cryoflow: simulated {len(made)} tomogram(s): {', '.join(made)}")
    return SourceReport(made=made, seconds=time.perf_counter() - t0)


def check(params: SimulateParams, ctx: CheckContext) -> list[str]:
    """One line saying what will be simulated."""
    sim = params.simulation()
    z, y, x = sim.shape
    return [
        f"simulate: {sim.n_tomograms} tomogram(s), {sim.angles_deg.size} tilts of {y} x {x}, "
        f"volumes {z} x {y} x {x}"
    ]


def run(client: Any, target: Target, params: SimulateParams) -> list[str]:
    """``cryoflow simulate``: the tomograms of ``params`` into ``target.store`` (refused when
    they exist, unless ``target.overwrite``); returns their names."""
    from cryoflow.pipelines.stages.simulation import check_free, simulate_dataset

    simulation = params.simulation()
    check_free(target.store, simulation, target.overwrite)
    return simulate_dataset(
        client, target.store, simulation, overwrite=target.overwrite, quiet=target.quiet
    )


STAGE = Stage(NAME, SimulateParams, source=simulate_step, check=check)
