"""The ``multibody`` stage: per-particle refinement of each body of a consensus (``cryoflow
multibody``), as resumable map-reduce rounds over a particle set.

Rounds (phases of :mod:`cryoflow.graph.heterogeneity`): 1. ``CONSENSUS``: the set's aligned
particles averaged at their poses (gold-standard halves, FSC); the first body references are
its FSC-weighted half maps times each body's mask (partitioned where masks overlap); 2. then
``rounds`` ``BODIES`` rounds: per particle and body, the other bodies' signal (their maps placed
in the particle's pose, inside its wedge, at the particle's own scale) is subtracted and the
body's rotation and shift refined locally (round 1 around the consensus pose, wider; later
rounds around the last body pose; every round under a Gaussian prior of ``sigma_deg`` on the
rotation away from the consensus), every body reconstructed from its own orientations; 3. on
the client, the body motions relative to the consensus and their principal motions.

Outputs in ``--out``: ``body_<k>.mrc`` (k = 1 .. nb, the order of ``--bodies``),
``consensus.mrc`` (the consensus average the bodies started from, for comparison),
``particles.star`` (every input column and coordinate, the consensus pose as the plain
``rlnAngleRot/Tilt/Psi``, ``rlnOriginX/Y/ZAngst``, each body's pose as the same labels with
``_body<k>`` appended, and each particle's principal-motion amplitudes ``cryoflow_motion<j>``),
``motions.csv`` (the 6 nb motion columns per particle), ``multibody.json`` (per-body
resolutions, the principal motions' explained variance and directions) and
``principal_motions.png``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from cryoflow.errors import ConfigError
from cryoflow.graph.heterogeneity import (
    BODIES,
    CONSENSUS,
    BatchSource,
    Partial,
    State,
    active_phase,
    map_batch,
    state_bodies,
)
from cryoflow.graph.heterogeneity import combine as combine_parts
from cryoflow.pipelines.stages.base import Stage, StageParams
from cryoflow.pipelines.stages.particle_inputs import (
    SetInputs,
    check_out,
    load_set,
    read_map,
    require_poses,
)

NAME = "multibody"
KEYS = (
    "phase", "cons_euler", "cons_shifts", "body_refs", "body_masks", "body_centres",
    "body_band", "body_highpass", "body_euler", "body_shifts", "body_scores", "body_maps",
    "body_res", "body_round", "resolution", "cons_map",
)  # fmt: skip


class MultibodyParams(StageParams):
    """Multi-body refinement of a particle set's aligned particles."""

    set: str = Field(description="particle set (particles/<set> of the store)")
    bodies: tuple[str, ...] = Field(default=(), description="soft body masks (MRC), >= 2")
    rounds: int = Field(default=3, ge=1, le=50, description="body refinement rounds")
    first_step_deg: float = Field(default=6.0, gt=0, description="round 1's coarsest step")
    first_radius_deg: float = Field(default=24.0, ge=0, description="round 1's search radius")
    max_shift_px: float = Field(default=3.0, ge=0, description="a body centre's largest move")
    sigma_deg: float = Field(
        default=10.0,
        ge=0,
        description="Gaussian prior on a body's rotation away from the consensus (deg; 0: none)",
    )
    highpass_mask_factor: float = Field(default=1.3, gt=0, description="high-pass / mask radius")
    batch_size: int = Field(default=16, ge=1, description="particles per task")
    seed: int = Field(default=0, description="random seed (half sets)")
    device: str = Field(default="cpu", description="torch device of the batch tasks")


def _settings(p: MultibodyParams, nb: int) -> dict[str, Any]:
    s, r = float(p.first_step_deg), float(p.first_radius_deg)
    first = ((s, r), (s / 3.0, s), (s / 6.0, s / 3.0))
    prior = float(p.sigma_deg) if p.sigma_deg > 0 else None
    return {
        "n_groups": nb,
        "device": p.device,
        "body_first": {
            "local_levels": first,
            "max_shift_px": p.max_shift_px,
            "local_shift_windows": ((3.0, 1.0),),
            "prior_sigma_deg": prior,
        },
        "body_later": {
            "local_levels": ((s / 3.0, s), (s / 6.0, s / 3.0)),
            "max_shift_px": p.max_shift_px,
            "prior_sigma_deg": prior,
        },
    }


def read_bodies(p: MultibodyParams, inputs: SetInputs) -> np.ndarray:
    """The body masks (nb, B, B, B) in ``[0, 1]``; at least two, none empty."""
    if len(p.bodies) < 2:
        raise ConfigError(f"--bodies: give at least two body masks, got {len(p.bodies)}")
    masks = [read_map(b, inputs.box, inputs.voxel_size_angstrom) for b in p.bodies]
    for path, m in zip(p.bodies, masks, strict=True):
        if not float(np.clip(m, 0, 1).sum()) > 0:
            raise ConfigError(f"--bodies {path}: the mask is empty (no voxel above 0)")
    return np.clip(np.stack(masks), 0.0, 1.0).astype(np.float32)


def build(inputs: SetInputs, p: MultibodyParams, masks: np.ndarray) -> Any:
    """The :class:`~cryoflow.pipelines.engine.rounds.Rounds` of a multi-body refinement."""
    from cryoflow.pipelines.cluster.connect import gpu_resources
    from cryoflow.pipelines.engine.rounds import Rounds

    require_poses(inputs, "cryoflow multibody", reference_option=False)
    assert inputs.euler_deg is not None
    n, nb = inputs.n, len(masks)
    src = BatchSource(inputs.store, inputs.name, inputs.tilt_ranges, inputs.half_ids, {})
    src.settings.update(_settings(p, nb))
    voxel = inputs.voxel_size_angstrom
    e0, s0 = np.asarray(inputs.euler_deg, float), np.asarray(inputs.shifts_zyx_px, float)

    def start() -> State:
        st: State = {key: np.zeros(1) for key in KEYS}
        st.update(phase=np.array([CONSENSUS]), cons_euler=e0, cons_shifts=s0, body_masks=masks)
        st["body_euler"] = np.repeat(e0[:, None], nb, axis=1)
        st["body_shifts"] = np.repeat(s0[:, None], nb, axis=1)
        return st

    return Rounds(
        f"multibody-{inputs.name}",
        KEYS,
        n_items=n,
        batch_size=int(p.batch_size),
        rounds=1 + int(p.rounds),
        inputs={**inputs.identity(), "bodies": _bodies_identity(masks)},
        start=start,
        map=partial(map_batch, src),
        combine=combine_parts,
        update=partial(_update, p, masks, voxel),
        resources=gpu_resources(p.device),
    )


def _update(
    p: MultibodyParams, masks: np.ndarray, voxel: float, state: State, part: Partial | None, k: int
) -> State:
    """The client side of round ``k``: the consensus' body references, or a body round's
    poses, maps and next references."""
    from cryoflow.kernels.finish import finish_round
    from cryoflow.kernels.heterogeneity.multibody import body_references, finish_bodies

    phase = active_phase(state, part)
    if phase is None or part is None:  # nothing to do: the state as it is
        return dict(state)
    st = dict(state)
    if phase == CONSENSUS:
        out = finish_round(part.sums, voxel_size_angstrom=voxel, mask=None)
        bodies = body_references(
            out.references.maps,
            masks,
            resolution_px=out.references.resolution_px,
            highpass_factor=p.highpass_mask_factor,
        )
        st["resolution"] = np.array([out.resolution_0143_px])
        st["cons_map"] = out.average
        st["phase"] = np.array([BODIES])
    else:
        rnd = finish_bodies(part.sums, state_bodies(st), voxel_size_angstrom=voxel)
        bodies = rnd.references
        st["body_euler"], st["body_shifts"] = part.rows["euler"], part.rows["shifts"]
        st["body_scores"], st["body_maps"] = part.rows["scores"], rnd.maps
        st["body_res"] = np.array([o.resolution_0143_px for o in rnd.outcomes])
        st["body_round"] = np.array([int(st["body_round"][0]) + 1])
    st["body_refs"], st["body_centres"] = bodies.maps, bodies.centres_zyx_px
    st["body_band"], st["body_highpass"] = bodies.resolution_px, bodies.highpass_px
    return st


def _bodies_identity(masks: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(masks).tobytes()).hexdigest()[:32]


def preflight(
    store: object, p: MultibodyParams, out: str | Path, overwrite: bool
) -> tuple[SetInputs, np.ndarray, Path]:
    """Every check that needs no cluster: the set (with poses), the masks, ``--out``."""
    inputs = load_set(store, p.set, seed=p.seed)
    require_poses(inputs, "cryoflow multibody", reference_option=False)
    masks = read_bodies(p, inputs)
    names = [
        *(f"body_{k}.mrc" for k in range(1, len(masks) + 1)),
        "consensus.mrc",
        "particles.star",
    ]
    return inputs, masks, check_out(out, names, overwrite)


def multibody(
    client: Any, store: object, p: MultibodyParams, out: str | Path, *, overwrite: bool = False
) -> dict[str, Any]:
    """Refine the bodies of ``p.set`` on ``client`` and write ``out`` (module docstring)."""
    from cryoflow.pipelines.engine.rounds import run_rounds
    from cryoflow.pipelines.stages.multibody_report import write_outputs

    inputs, masks, d = preflight(store, p, out, overwrite)
    plan = build(inputs, p, masks)
    done = run_rounds(client, store, plan, p.to_dict())
    st = done.state if not done.skipped else _published(store, plan.step)
    return write_outputs(d, inputs, st, len(masks))


def _published(store: object, step: str) -> State:
    from cryoflow.io.chunks import read_checked
    from cryoflow.io.layout import RESULTS, open_dataset
    from cryoflow.io.nodes import open_node

    root = open_dataset(store)
    return {k: read_checked(open_node(root, f"{RESULTS}/{step}/{k}", what="result")) for k in KEYS}


def plan(store: object, names: list[str], params: MultibodyParams) -> Any:
    """The rounds of ``cryoflow run`` (results/multibody-<set>/...)."""
    inputs = load_set(store, params.set, seed=params.seed)
    return build(inputs, params, read_bodies(params, inputs))


STAGE = Stage(NAME, MultibodyParams, dataset=plan)
