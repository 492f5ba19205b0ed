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

Then :func:`training_rounds` plans the training as a dataset-level step
(:mod:`cryoflow.pipelines.engine.rounds`, what ``cryoflow run`` and ``cryoflow dewedge`` both
run) of ``ceil(steps / round_steps)`` rounds of one task on one worker (``resources={"GPU":
1}`` for CUDA). The first round computes those inputs on the cluster (a client of its own, so
the reads and halves run on every worker) and starts the training; every round trains
``round_steps`` steps and returns the state, which the engine records in the store after each
round, so a killed run resumes after the last recorded round (bit for bit the same network):
the network so far, its ``model.json``, the losses and the rest of the training
(``resume``: optimiser, random state, box pool; empty once done). After the last round the
engine publishes it at the dataset's root as ``results/dewedge/{weights,config,losses,resume}``
under the run token of the training parameters and the input volumes' identities (not
``round_steps``: it does not change the network), so a rerun finds it current and does not
train again. :func:`trained_checkpoint`
turns the published state into a checkpoint directory (default
``STORE/models/dewedge-<token16>``), which the per-tomogram plans apply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cryoflow.errors import CheckpointError, ConfigError

__all__ = ["TrainingInput", "halves", "trained_checkpoint", "training_input", "training_rounds"]


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


OUTPUTS = ("weights", "config", "losses", "resume")


@dataclass(frozen=True)
class _Job:
    """What the training task needs: where the tomograms are and how to train."""

    store: Any
    names: tuple[str, ...]
    key: str
    halves: bool
    config: dict[str, Any]
    device: str
    provenance: dict[str, Any]
    round_steps: int


def _only_one_batch(a: Any, b: Any) -> Any:
    raise RuntimeError("the dewedge training runs as one batch of every tomogram")


def _bytes(a: np.ndarray) -> bytes:
    return np.asarray(a, dtype=np.uint8).tobytes()


def _as_array(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=np.uint8).copy()


def _start_training(job: _Job, start: int, stop: int) -> Any:
    """Compute the inputs of tomograms ``start:stop`` on the cluster (a client of the task's
    own) and start a training on them."""
    import dask
    from distributed import worker_client

    from cryoflow.models.dewedge_sampling import WedgeTomogram
    from cryoflow.models.dewedge_train import DewedgeTrainConfig, check_fits
    from cryoflow.models.dewedge_trainer import DewedgeTrainer

    cfg = DewedgeTrainConfig(**job.config)
    inputs = [
        training_input(job.store, n, job.key, bin_factor=cfg.bin_factor, use_halves=job.halves)
        for n in job.names[start:stop]
    ]
    for t in inputs:  # before any input is computed
        check_fits(t.name, t.volume.shape, cfg)
    with worker_client() as client:  # the reads, reductions and halves on every worker
        stats, volumes, partners = dask.compute(
            [t.stats for t in inputs],
            [t.volume for t in inputs],
            [t.partner for t in inputs],
            scheduler=client,
        )
    tomos = [
        WedgeTomogram(t.name, t.tilt_range_deg, v, p)
        for t, v, p in zip(inputs, volumes, partners, strict=True)
    ]
    floors = [(float(m), max(float(s), 1e-6)) for m, s in stats]
    halves_used = {t.name: t.halves for t in inputs}
    return DewedgeTrainer.start(
        tomos, floors, cfg, device=job.device, extra={"halves_used": halves_used}
    )


def _train_round(job: _Job, state: dict[str, np.ndarray], start: int, stop: int) -> dict:
    """On one worker: one round of the training of tomograms ``start:stop``.

    The first round (no ``resume`` record yet) computes the inputs and starts the training;
    a later one restores it from the state (``weights`` and ``resume``, no input read again).
    Each trains ``round_steps`` more steps and returns the state: the network so far
    (``weights.pt`` bytes), its ``model.json``, the losses and, until the last step, the
    ``resume`` record (:meth:`~cryoflow.models.dewedge_trainer.DewedgeTrainer.resume_bytes`;
    empty once the training is done)."""
    from cryoflow.models.dewedge_train import finished
    from cryoflow.models.dewedge_trainer import DewedgeTrainer

    if state["losses"].size and not state["resume"].size:
        return dict(state)  # trained already (a rerun with fewer steps per round)
    if state["resume"].size:
        trainer = DewedgeTrainer.restore(
            _bytes(state["weights"]), _bytes(state["resume"]), device=job.device
        )
    else:
        trainer = _start_training(job, start, stop)
    trainer.run_until(trainer.step + job.round_steps)
    result = finished(trainer)
    if not np.all(np.isfinite(result.losses)):
        raise ConfigError("missing-wedge training ended with a non-finite loss")
    training_set = {**result.config.training_set, **job.provenance, **trainer.extra}
    record = replace(result.config, training_set=training_set)
    text = json.dumps(record.to_dict(), sort_keys=True).encode()
    done = trainer.step >= trainer.config.steps
    return {
        "weights": _as_array(trainer.weights_bytes()),
        "config": np.frombuffer(text, dtype=np.uint8).copy(),
        "losses": np.asarray(result.losses, dtype=np.float64),
        "resume": np.zeros(0, np.uint8) if done else _as_array(trainer.resume_bytes()),
    }


def training_parameters(params: Any) -> dict[str, Any]:
    """What the training depends on (its run token): the settings, halves and the volume key
    (not how the network is applied)."""
    return {"config": params.train_config(), "halves": bool(params.halves), "key": params.key}


def training_rounds(store: object, names: list[str], params: Any) -> Any:
    """The training of one network on every tomogram of ``names`` as a dataset-level step
    (:class:`~cryoflow.pipelines.engine.rounds.Rounds`: ``ceil(steps / round_steps)`` rounds
    of one batch); None when ``params.model`` gives the network to apply."""
    from cryoflow.io.layout import TOMOGRAMS, VOLUMES
    from cryoflow.pipelines.cluster.connect import gpu_resources
    from cryoflow.pipelines.engine.provenance import run_token
    from cryoflow.pipelines.engine.rounds import Rounds
    from cryoflow.pipelines.stages.dewedge import NAME, require_gpu
    from cryoflow.pipelines.stages.inputs import node_identity

    if params.model is not None:
        return None
    if not names:
        raise ConfigError(f"{store}: no tomograms to learn missing-wedge filling from")
    inputs = {}
    for name in names:
        path = f"{TOMOGRAMS}/{name}/{VOLUMES}/{params.key}"
        inputs[path] = node_identity(store, path, "volume")
    parameters = training_parameters(params)
    token = run_token(NAME, parameters, inputs)
    job = _Job(
        store,
        tuple(names),
        params.key,
        bool(params.halves),
        params.train_config(),
        params.device,
        {"store": str(store), "key": params.key, "token": token},
        int(params.round_steps),
    )

    def start() -> dict[str, np.ndarray]:
        return {k: np.zeros(0, dtype=np.uint8) for k in OUTPUTS}

    def map_batch(state: dict[str, np.ndarray], a: int, b: int) -> dict[str, np.ndarray]:
        return _train_round(job, state, a, b)

    return Rounds(
        NAME,
        OUTPUTS,
        n_items=len(names),
        batch_size=len(names),
        rounds=-(-int(params.steps) // int(params.round_steps)),
        inputs=inputs,
        start=start,
        map=map_batch,
        combine=_only_one_batch,
        update=lambda state, partial, k: partial,
        dims={"weights": ("byte",), "config": ("byte",), "losses": ("step",), "resume": ("byte",)},
        attrs={
            "tomograms": list(names),
            "weights": "weights.pt bytes",
            "config": "model.json",
            "resume": "the training's state between rounds (empty once trained)",
        },
        resources=gpu_resources(params.device),
        setup=lambda client: require_gpu(client, params.device),
        parameters=parameters,
    )


def trained_checkpoint(store: object, directory: str | Path | None = None) -> tuple[Path, str]:
    """The checkpoint directory of the network published in ``results/dewedge`` (written from
    the published state when it is missing or another one's) and the training's run token.

    ``directory``: where it goes (default ``STORE/models/dewedge-<token16>``).
    """
    import io
    import shutil
    import uuid

    import torch

    from cryoflow.io.results import open_dataset_result
    from cryoflow.models.arch import build_model
    from cryoflow.models.checkpoint import ModelConfig, read_config, save_checkpoint
    from cryoflow.pipelines.stages.dewedge import NAME, default_model_dir

    try:
        weights = open_dataset_result(store, NAME, "weights")
    except (FileNotFoundError, KeyError) as exc:
        raise ConfigError(
            f"{store}: no trained missing-wedge network (results/{NAME}/weights): run "
            "`cryoflow dewedge` or a pipeline's dewedge step without model, or give model: DIR"
        ) from exc
    token = str(weights.attrs["provenance"].get("run_token", ""))
    out = Path(directory) if directory is not None else default_model_dir(store, token)
    try:
        if read_config(out).training_set.get("token") == token:
            return out, token
    except CheckpointError:
        pass  # missing or partial: written again below
    record = json.loads(bytes(open_dataset_result(store, NAME, "config").values).decode())
    record.pop("weights_sha256", None)
    config = ModelConfig.from_dict(record)
    model = build_model(config.spec)
    blob = io.BytesIO(bytes(np.asarray(weights.values, dtype=np.uint8)))
    model.load_state_dict(torch.load(blob, map_location="cpu", weights_only=True))
    tmp = out.parent / f".tmp-{out.name}-{uuid.uuid4().hex[:8]}"
    try:
        save_checkpoint(tmp, model, config)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, token
