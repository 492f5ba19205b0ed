"""The training half of the ``dewedge`` stage: one network from every selected tomogram.

For each tomogram (:func:`training_input`, lazy):

1. its tilt range (:func:`cryoflow.io.tomograms.tilt_range`: the volume's record, else its
   tilt series; none is a :class:`~cryoflow.errors.MissingTiltRangeError` naming it);
2. its even/odd-tilt halves (:func:`halves`), when the volume was reconstructed by cryoflow
   from the stored tilt series (its provenance names the ``reconstruct`` step and its
   parameters): the tilts sorted by angle, every other one in each half, each half
   reconstructed with the volume's own parameters. Otherwise the volume is its own target;
3. the volume (or its first half) and the partner standardised by their own mean and standard
   deviation and binned, on the cluster (:func:`cryoflow.graph.dewedge.standardised_binned`).

Then :func:`train_on_cluster` computes those (they stay on the workers as futures), trains one
network in a single task on one worker (``resources={"GPU": 1}`` for CUDA), and saves the
checkpoint (``weights.pt`` + ``model.json`` with the training record) to a model directory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryoflow.errors import ConfigError, GeometryError

__all__ = ["TrainingInput", "halves", "train_on_cluster", "training_input"]


@dataclass(frozen=True)
class TrainingInput:
    """One tomogram's training data, lazy: ``volume`` (its first half when ``partner`` is
    set) and ``partner`` standardised and binned; ``stats`` the lazy ``(mean, std)`` of the
    unbinned first half; ``halves`` why halves are (not) used."""

    name: str
    tilt_range_deg: tuple[float, float]
    volume: Any
    partner: Any
    stats: Any
    halves: str


def halves(store: object, name: str, volume: Any) -> tuple[Any, Any] | str:
    """Lazy even- and odd-tilt reconstructions matching ``volume`` (the DataArray of the
    stored volume), or the reason there are none."""
    import numpy as np

    from cryoflow.io.store import open_tilt_series, read_geometry
    from cryoflow.pipelines.stages.reconstruct import ReconstructParams, reconstruction

    record = volume.attrs.get("provenance") or {}
    if record.get("step") != "reconstruct":
        return "the volume was not reconstructed by cryoflow"
    given = dict(record.get("parameters") or {})
    known = {k: v for k, v in given.items() if k in ReconstructParams.model_fields}
    if known.get("source", "tilt_series") != "tilt_series":
        return f"the volume was reconstructed from {known['source']!r}, not the tilt series"
    try:
        params = ReconstructParams(**known)
        images = open_tilt_series(store, name)
        geometry = read_geometry(store, name)
    except Exception as exc:  # noqa: BLE001 - any reason means: train without halves
        return f"its tilt series cannot be reconstructed again ({exc})"
    if len(set(geometry.axis_id)) > 1 or geometry.n_tilts < 4:
        return "its tilt series is dual-axis or has fewer than 4 tilts"
    order = np.argsort(np.asarray(geometry.angles_deg, dtype=float), kind="stable")
    parts = []
    for sel in (order[0::2], order[1::2]):
        sel = np.sort(sel)
        vol, _ = reconstruction(
            images.data[sel], geometry.select(sel), params, prefix=f"dewedge-half-{name}"
        )
        parts.append(vol)
    if tuple(parts[0].shape) != tuple(volume.shape):
        return f"halves reconstruct to {tuple(parts[0].shape)}, not {tuple(volume.shape)}"
    return parts[0], parts[1]


def training_input(
    store: object, name: str, key: str, *, bin_factor: int, use_halves: bool
) -> TrainingInput:
    """The lazy training data of tomogram ``name``'s volume ``key`` (module docstring)."""
    from cryoflow.graph.dewedge import lazy_normalisation, standardised_binned
    from cryoflow.io.store import open_volume
    from cryoflow.io.tomograms import tilt_range

    volume = open_volume(store, name, key)
    tr = tilt_range(store, name, key)
    pair = halves(store, name, volume) if use_halves else "not asked for (halves: false)"
    if isinstance(pair, str):
        first, second, why = volume.data, None, pair
    else:
        first, second = pair
        why = "even/odd tilts"
    loc, scale = lazy_normalisation(first)
    scale = scale.clip(1e-6)
    binned = standardised_binned(first, loc, scale, bin_factor)
    partner = None
    if second is not None:
        loc2, scale2 = lazy_normalisation(second)
        partner = standardised_binned(second, loc2, scale2.clip(1e-6), bin_factor)
    return TrainingInput(name, tr.as_tuple, binned, partner, (loc, scale), why)


def _train_task(
    names: list[str],
    ranges: list[tuple[float, float]],
    volumes: list[Any],
    partners: list[Any],
    stats: list[tuple[float, float]],
    config: dict[str, Any],
    device: str,
) -> tuple[dict[str, Any], Any, list[float]]:
    """On one worker: train on the computed inputs; the weights go back as CPU tensors."""
    from cryoflow.models.dewedge_sampling import WedgeTomogram
    from cryoflow.models.dewedge_train import DewedgeTrainConfig, train_prepared

    tomos = [
        WedgeTomogram(n, r, v, p)
        for n, r, v, p in zip(names, ranges, volumes, partners, strict=True)
    ]
    result = train_prepared(tomos, stats, DewedgeTrainConfig(**config), device=device)
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    return state, result.config, result.losses


def train_on_cluster(
    client: Any,
    inputs: list[TrainingInput],
    config: dict[str, Any],
    *,
    device: str,
    out: str | Path,
    provenance: dict[str, Any],
) -> tuple[str, Any]:
    """Train one network on every input (one task on one worker), save it to ``out``.

    ``config``: :class:`~cryoflow.models.dewedge_train.DewedgeTrainConfig` fields;
    ``provenance`` is added to the checkpoint's training record (store, inputs, halves).
    Returns (weights SHA-256, :class:`~cryoflow.models.checkpoint.ModelConfig`).
    """
    import numpy as np

    from cryoflow.models.arch import build_model
    from cryoflow.models.checkpoint import save_checkpoint
    from cryoflow.models.dewedge_rotate import extraction_size
    from cryoflow.pipelines.cluster.connect import gpu_resources

    side = extraction_size(int(config["box"]), str(config.get("rotations", "cube")))
    for t in inputs:
        if min(t.volume.shape) < side:
            raise GeometryError(
                f"tomogram {t.name!r} binned {config['bin_factor']}x is {tuple(t.volume.shape)} "
                f"voxels, too small for {side}-voxel training boxes: use a smaller --box or --bin"
            )
    stats = client.compute([t.stats for t in inputs], sync=True)
    stats = [(float(m), max(float(s), 1e-6)) for m, s in stats]
    volumes = client.compute([t.volume for t in inputs])
    partners = [None if t.partner is None else client.compute(t.partner) for t in inputs]
    future = client.submit(
        _train_task,
        [t.name for t in inputs],
        [t.tilt_range_deg for t in inputs],
        volumes,
        partners,
        stats,
        config,
        device,
        resources=gpu_resources(device),
        pure=False,
        key=f"dewedge-train-{provenance.get('token', 'x')[:16]}",
    )
    try:
        state, record, losses = future.result()
    finally:
        client.cancel([*volumes, *[p for p in partners if p is not None], future])
    if not np.all(np.isfinite(losses)):
        raise ConfigError("missing-wedge training ended with a non-finite loss")
    record = replace(
        record,
        training_set={
            **record.training_set,
            **provenance,
            "halves_used": {t.name: t.halves for t in inputs},
        },
    )
    model = build_model(record.spec)
    model.load_state_dict(state)
    return save_checkpoint(out, model, record), record
