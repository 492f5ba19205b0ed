"""The poses ``cryoflow classify`` and ``cryoflow embed`` start from: the set's published
average, when current.

``cryoflow average`` (and the ``average`` step of ``cryoflow run``) publishes its final state
under ``results/average-<set>/`` of the store (``euler_deg``, ``shifts_zyx_px``, ``half``,
:mod:`cryoflow.pipelines.stages.average`). When that result exists, is complete, is not
stale, and its provenance names the set as it is now (the set's ``write_id``), classification
starts from those orientations, shifts and half sets: a pipeline ``average`` then ``classify``
needs no re-extraction. Otherwise the set's own table is used (``rot, tilt, psi`` and RELION
origins, :func:`cryoflow.pipelines.stages.particle_inputs.load_set`).

The shifts are the averaging kernels' (the particle centre's offset from the box centre, in
voxels); the half sets are the average's gold-standard halves.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cryoflow.errors import NodeNotFoundError, StaleResultError
from cryoflow.pipelines.stages.particle_inputs import SetInputs

KEYS = ("euler_deg", "shifts_zyx_px", "half")


def average_poses(store: object, set_name: str) -> dict[str, np.ndarray] | None:
    """``{euler_deg (n, 3), shifts_zyx_px (n, 3), half (n,) 1/2}`` of the set's current
    published average, or None (module docstring)."""
    from cryoflow.io.particleset import PARTICLES
    from cryoflow.io.results import open_dataset_result
    from cryoflow.pipelines.stages.average import step_name
    from cryoflow.pipelines.stages.inputs import node_identity

    path = f"{PARTICLES}/{set_name}"
    identity = node_identity(store, path, "particle set")
    out = {}
    for key in KEYS:
        try:
            arr = open_dataset_result(store, step_name(set_name), key)
        except (NodeNotFoundError, StaleResultError):
            return None
        made_from = (arr.attrs.get("provenance", {}) or {}).get("inputs", {}) or {}
        if made_from.get(path) != identity:
            return None  # an average of an earlier set of that name
        out[key] = np.asarray(arr.values)
    return out


def current_poses(
    store: object, set_name: str, n: int, halves: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(euler (n, 3), shifts_zyx_px (n, 3), halves (n,) 0/1)`` of the set's current
    average (a half it lacks from ``halves``), or None: no such average of ``n`` particles."""
    found = average_poses(store, set_name)
    if found is None:
        return None
    e = np.asarray(found["euler_deg"], float).reshape(-1, 3)
    s = np.asarray(found["shifts_zyx_px"], float).reshape(-1, 3)
    h = np.asarray(found["half"], int).reshape(-1)
    if not len(e) == len(s) == len(h) == int(n):
        return None
    return e, s, np.where(np.isin(h, (1, 2)), h - 1, halves).astype(int)


def with_average_poses(inputs: SetInputs) -> SetInputs:
    """``inputs`` with the poses and halves of the set's current average, if any."""
    found = current_poses(inputs.store, inputs.name, inputs.n, inputs.half_ids)
    if found is None:
        return inputs
    return replace(inputs, euler_deg=found[0], shifts_zyx_px=found[1], half_ids=found[2])
