"""The ``average`` stage: subtomogram alignment and averaging of a particle set, in rounds.

A dataset-level stage (:mod:`cryoflow.pipelines.engine.rounds`): the items are the particles
of ``particles/<set>`` in stack order; each round broadcasts the state (two half-set
references, the mask, the band limit, every particle's last orientation) once, maps batches
of particles on the workers (:class:`cryoflow.graph.average.AverageBatch`: align each
particle to its own half's reference, then add it to its half's Fourier sums with its
missing wedge), reduces the partial sums in a fixed tree and finishes the round on the
client: half maps, gold-standard FSC, next references low-passed at the FSC-0.143
resolution (:func:`cryoflow.kernels.finish.finish_round`). It is the refinement of
:func:`cryoflow.kernels.refine.refine`, distributed: the same kernels, the same order of
sums, so both give the same maps.

Rounds: with ``reference`` the ``iterations`` gold-standard rounds (the first with a global
search); without one, ``1 + initial_rounds`` template-free rounds first (the particles in
random orientations, then ``initial_rounds`` global alignments of all of them to one model),
then the gold-standard rounds from that model. Every round is recorded in the store; a killed
run resumes after its last recorded round with an identical result. The final state is
published under ``results/average-<set>/`` at the dataset's root (``euler_deg``,
``shifts_zyx_px``, ``scores``, ``half``, maps and FSC), naming the set in its provenance.

``cryoflow average`` (:func:`run`) then writes the contract's files
(:mod:`cryoflow.pipelines.stages.average_files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, Field

from cryoflow.pipelines.stages.base import Stage, StageParams
from cryoflow.pipelines.stages.eager import Target

NAME = "average"
OUTPUTS = (
    "round",
    "references",
    "mask",
    "resolution_px",
    "supports",
    "average",
    "half_maps",
    "fsc",
    "euler_deg",
    "shifts_zyx_px",
    "scores",
    "half",
    "history",
)
HISTORY = ("round", "band_px", "fsc0143_px", "fsc05_px", "mean_score")


def _symmetry(value: str) -> str:
    from cryoflow.geometry.symmetry import parse_symmetry

    return parse_symmetry(value).name


def _set_name(value: str) -> str:
    from cryoflow.io.names import NAME_RULE, is_valid_name

    if not is_valid_name(value):
        raise ValueError(f"invalid particle set name: {NAME_RULE}")
    return value


class AverageParams(StageParams):
    """Alignment and averaging of a particle set with gold-standard half sets."""

    set: Annotated[str, AfterValidator(_set_name)] = Field(description="particle set to average")
    reference: str | None = Field(
        default=None, description="start map REF.mrc (the average lies in its frame)"
    )
    mask: str | None = Field(default=None, description="soft mask MASK.mrc (default automatic)")
    iterations: int = Field(default=5, ge=1, le=100, description="gold-standard rounds")
    symmetry: Annotated[str, AfterValidator(_symmetry)] = Field(
        default="C1", description="point group C1, Cn or Dn"
    )
    initial_rounds: int = Field(
        default=3, ge=1, le=50, description="template-free rounds before the gold standard"
    )
    initial_resolution: float | None = Field(
        default=None, gt=0, description="low-pass of the start, Å (default 4 voxels)"
    )
    max_shift: float = Field(default=3.0, ge=0, description="largest shift searched, voxels")
    global_step: float = Field(
        default=20.0, gt=0, le=180, description="global orientation grid step, degrees"
    )
    top_k: int = Field(default=5, ge=1, description="global candidates refined per particle")
    batch_size: int = Field(default=32, ge=1, description="particles per task")
    seed: int = Field(default=0, ge=0, description="seed of the half sets and random starts")
    device: str = Field(default="cpu", description="torch device of the tasks (cpu, cuda)")

    def with_base(self, base: Path) -> AverageParams:
        """Relative ``reference`` / ``mask`` paths made relative to ``base``."""
        changes = {
            k: str(base / v)
            for k, v in (("reference", self.reference), ("mask", self.mask))
            if v is not None and not Path(v).is_absolute()
        }
        return self.model_copy(update=changes) if changes else self


@dataclass(frozen=True)
class ParticleSetInfo:
    """What the stage reads of a set: its table (stack order), box side, tilt ranges (n, 2),
    voxel size (Å), half ids (n,) 0/1 and identity (``write_id``)."""

    name: str
    table: Any
    box: int
    tilt_ranges: np.ndarray
    voxel_size_angstrom: float
    half_ids: np.ndarray
    identity: str


def load_set(store: object, name: str, seed: int) -> ParticleSetInfo:
    """The set ``name``'s :class:`ParticleSetInfo`.

    Tilt ranges and voxel sizes come from the table's ``tilt_min_deg, tilt_max_deg`` and
    ``pixel_size_angstrom`` columns (extraction records them), else from each tomogram in the
    store. Half sets: the table's ``half`` (1/2, e.g. ``rlnRandomSubset`` of the input) when
    every particle has one and both occur, else a seeded random balanced split.

    Raises
    ------
    NodeNotFoundError, GeometryError, MissingTiltRangeError
    """
    from cryoflow.errors import GeometryError
    from cryoflow.io.particleset import PARTICLES, open_particles
    from cryoflow.io.tomograms import tilt_range, tomogram_info
    from cryoflow.kernels.refine import split_halves
    from cryoflow.pipelines.stages.inputs import node_identity

    arr = open_particles(store, name)
    table = arr.coords.to_dataset().to_dataframe().reset_index(drop=True)
    n, box = int(arr.shape[0]), int(arr.shape[1])
    where = f"{store}: particle set {name!r}"
    if n < 2:
        raise GeometryError(f"{where} has {n} particle(s); averaging needs at least 2")
    tomos = table["tomogram"].astype(str).to_numpy()
    if {"tilt_min_deg", "tilt_max_deg"} <= set(table.columns):
        tr = table[["tilt_min_deg", "tilt_max_deg"]].to_numpy(np.float64)
    else:
        ranges = {t: tilt_range(store, t).as_tuple for t in dict.fromkeys(tomos)}
        tr = np.array([ranges[t] for t in tomos], dtype=np.float64)
    if "pixel_size_angstrom" in table.columns:
        sizes = table["pixel_size_angstrom"].to_numpy(np.float64)
    else:
        info = {t: tomogram_info(store, t).pixel_size_angstrom for t in dict.fromkeys(tomos)}
        sizes = np.array([info[t] for t in tomos], dtype=np.float64)
    if not (np.isfinite(sizes).all() and sizes.min() > 0):
        raise GeometryError(f"{where}: voxel sizes must be > 0 Å")
    if sizes.max() - sizes.min() > 1e-3 * sizes.max():
        raise GeometryError(
            f"{where} mixes voxel sizes {sorted(set(np.round(sizes, 4).tolist()))} Å; "
            "one average needs particles of one voxel size"
        )
    halves = split_halves(n, seed)
    if "half" in table.columns:
        given = np.asarray(table["half"].to_numpy(), dtype=np.float64)
        if np.isin(given, (1, 2)).all() and len(set(given.tolist())) == 2:
            halves = given.astype(int) - 1
    identity = node_identity(store, f"{PARTICLES}/{name}", "particle set")
    return ParticleSetInfo(name, table, box, tr, float(sizes[0]), halves, identity)


def step_name(set_name: str) -> str:
    """The results step of set ``set_name``'s average: ``average-<set>``."""
    return f"average-{set_name}"[:128]


def plan(store: object, names: list[str], params: AverageParams, *, log: Any = None) -> Any:
    """The rounds of averaging ``params.set`` (``names``, the tomograms, are not used: the
    set says which particles); ``log(line)`` receives one progress line per round."""
    from cryoflow.graph.average import AverageBatch, combine
    from cryoflow.io.maps import read_map
    from cryoflow.io.particleset import PARTICLES
    from cryoflow.kernels.refine import RefineParams
    from cryoflow.pipelines.cluster.connect import gpu_resources
    from cryoflow.pipelines.engine.provenance import file_sha256
    from cryoflow.pipelines.engine.rounds import Rounds
    from cryoflow.pipelines.stages.average_rounds import RoundLogic

    info = load_set(store, params.set, params.seed)
    px = info.voxel_size_angstrom
    init_res = params.initial_resolution / px if params.initial_resolution else 4.0
    refine = RefineParams(
        rounds=params.iterations,
        global_rounds=1,
        global_step_deg=params.global_step,
        max_shift_px=params.max_shift,
        initial_resolution_px=init_res,
        symmetry=params.symmetry,
        top_k=params.top_k,
        batch_size=params.batch_size,
        initial_rounds=params.initial_rounds,
        seed=params.seed,
    )
    inputs = {f"{PARTICLES}/{params.set}": info.identity}
    reference = mask = None
    if params.reference is not None:
        reference = read_map(
            params.reference, box=info.box, what="--reference", voxel_size_angstrom=px
        )
        inputs[str(params.reference)] = file_sha256(params.reference)
    if params.mask is not None:
        mask = read_map(params.mask, box=info.box, what="--mask", voxel_size_angstrom=px)
        inputs[str(params.mask)] = file_sha256(params.mask)
    logic = RoundLogic(info, refine, reference, mask, log)
    batch = AverageBatch(
        store, params.set, info.tilt_ranges, info.half_ids, logic.n_initial, refine, params.device
    )
    return Rounds(
        step_name(params.set),
        OUTPUTS,
        n_items=len(info.table),
        batch_size=params.batch_size,
        rounds=logic.n_initial + params.iterations,
        inputs=inputs,
        start=logic.start,
        map=batch,
        combine=combine,
        update=logic.update,
        dims=logic.dims(),
        attrs={
            "set": params.set,
            "voxel_size_angstrom": px,
            "history_columns": list(HISTORY),
            "box": info.box,
        },
        resources=gpu_resources(params.device),
        setup=_gpu_check if gpu_resources(params.device) else None,
    )


def _gpu_check(client: Any) -> None:
    """Refuse a GPU run that no connected worker can take (its tasks would wait forever)."""
    from cryoflow.errors import ConfigError

    workers = client.scheduler_info().get("workers", {}).values()
    if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers):
        raise ConfigError(
            "average --device cuda needs workers started with the resource GPU=1 "
            "(dask worker --resources GPU=1); none is connected"
        )


def run(client: Any, target: Target, params: AverageParams, *, prepared: Any = None) -> Any:
    """``cryoflow average``: the rounds (resumed from the store) on ``client``, then the
    contract's files in ``target.out`` (:func:`cryoflow.pipelines.stages.average_files.
    write_outputs`); returns their paths. ``prepared``: the plan made (and the outputs
    checked) before the cluster started (:func:`prepare`)."""
    from cryoflow.pipelines.engine.rounds import run_rounds
    from cryoflow.pipelines.stages.average_files import published_state, write_outputs

    rounds = prepared if prepared is not None else prepare(target, params)
    log = None if target.quiet else print
    done = run_rounds(client, target.store, rounds, params.to_dict(), log=log)
    state = done.state if not done.skipped else published_state(target.store, rounds)
    info = load_set(target.store, params.set, params.seed)
    return write_outputs(Path(str(target.out)), state, info, overwrite=target.overwrite)


def prepare(target: Target, params: AverageParams) -> Any:
    """The plan, and every output of ``target.out`` refused if it exists (unless
    ``target.overwrite``): all checks that need no cluster."""
    from cryoflow.pipelines.stages.average_files import check_outputs

    check_outputs(Path(str(target.out)), overwrite=target.overwrite)
    return plan(target.store, list(target.names), params, log=None if target.quiet else print)


STAGE = Stage(NAME, AverageParams, dataset=plan)
