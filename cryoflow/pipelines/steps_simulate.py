"""The ``simulate`` step of ``cryoflow run``: synthetic tomograms, made before the stream.

Like ``ingest``, ``simulate`` makes tomograms rather than results of one, so the engine runs
it first, on the whole dataset, with :func:`cryoflow.pipelines.simulate.simulate_dataset`
(which writes every node under a temporary name and publishes it last).

Skipping: a tomogram is current when its tilt series is complete, not stale, and was simulated
with the same settings (its provenance ``parameters``, ``n_tomograms`` aside), and its truth
(``results/truth/masks2d_<class>`` for every class, ``volumes/tomogram``) is complete. When
every tomogram is current the step is skipped. Otherwise every tomogram is simulated again with
``overwrite``: the simulator makes a whole dataset at once, so even one missing tomogram
replaces all of them (each gets a new ``write_id``, and every later step recomputes).
"""

from __future__ import annotations

from typing import Any

from cryoflow.errors import NodeNotFoundError
from cryoflow.io.layout import TILT_SERIES, TOMOGRAMS, open_dataset
from cryoflow.io.nodes import ATTR, STALE, read_raw_metadata

STEP = "simulate"


def _settings(parameters: Any) -> dict[str, Any]:
    """Simulation settings as stored, without ``n_tomograms`` (a tomogram does not depend on it)."""
    return {k: v for k, v in dict(parameters or {}).items() if k != "n_tomograms"}


def is_current(store: object, name: str, simulation: Any) -> bool:
    """Whether tomogram ``name`` holds a complete simulation with the settings ``simulation``.

    Parameters
    ----------
    simulation : cryoflow.simulate.dataset.SimulationConfig
    """
    from cryoflow.io.store import open_result, open_volume

    try:
        root: Any = open_dataset(store)
    except NodeNotFoundError:
        return False
    meta = read_raw_metadata(root, f"{TOMOGRAMS}/{name}/{TILT_SERIES}")
    info = ((meta or {}).get("attributes", {}) or {}).get(ATTR, {}) or {}
    if not info.get("complete") or info.get(STALE):
        return False
    prov = info.get("provenance", {}) or {}
    if prov.get("step") != STEP or _settings(prov.get("parameters")) != _settings(
        simulation.to_dict()
    ):
        return False
    try:
        for c in simulation.classes:
            open_result(store, name, "truth", f"masks2d_{c}")
        open_volume(store, name, "tomogram")
    except NodeNotFoundError:
        return False
    return True


def simulate_step(client: Any, store: object, params: Any, *, quiet: bool = True) -> list[str]:
    """Simulate the dataset of ``params`` into ``store`` unless it is current.

    Parameters
    ----------
    client : distributed.Client
    params : cryoflow.pipelines.config.SimulateParams

    Returns
    -------
    list of str
        The tomograms simulated now (empty when every one was current).
    """
    from cryoflow.io.layout import create_dataset
    from cryoflow.pipelines.simulate import simulate_dataset

    simulation = params.simulation()
    names = [simulation.tomogram_name(i) for i in range(simulation.n_tomograms)]
    create_dataset(store)
    if all(is_current(store, n, simulation) for n in names):
        return []
    return simulate_dataset(client, store, simulation, overwrite=True, quiet=quiet)
