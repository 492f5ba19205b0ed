"""The ``dewedge`` stage: missing-wedge filling learned from every selected tomogram.

``cryoflow dewedge STORE (--name NAME | --all) [--key tomogram]`` (``CONTRACT.md``):

1. **train** (dataset level, :mod:`.dewedge_training`): one self-supervised 3D U-Net on boxes
   from every selected tomogram's volume ``key``, each with its own recorded tilt range
   (missing wedge) and, when cryoflow reconstructed it from the stored tilt series, its
   even/odd-tilt halves; ``steps`` optimiser steps (the budget) in one task on one worker
   (``{"GPU": 1}`` with a CUDA ``device``). The checkpoint is saved to a model directory
   (default ``STORE/models/dewedge-<token16>``, the token hashing the parameters and every
   input's identity), its ``model.json`` recording the training set and settings;
2. **apply** (per tomogram, :func:`plan`): the network over the whole volume in blended
   overlapping tiles (:func:`cryoflow.graph.dewedge.dewedge_lazy`), loaded once per worker by
   a :class:`~cryoflow.models.loader.ModelPlugin`, streamed into the OME-Zarr volume
   ``volumes/dewedged`` (same shape and voxel size as the input; ``cryoflow export --key
   dewedged``). Its provenance records the parameters, the input's identity and the
   checkpoint (directory and weights SHA-256).

With ``model`` given, step 1 is skipped and that checkpoint is applied. ``cryoflow run``'s
``dewedge`` step is step 2 with a given ``model`` (results/dewedge/dewedged).
Nothing is overwritten unless asked: every check (tomograms, tilt ranges, sizes, existing
outputs) runs before any training.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from cryoflow.errors import ConfigError
from cryoflow.pipelines.cluster.connect import gpu_resources
from cryoflow.pipelines.stages.base import CheckContext, Output, Plan, Stage, StageParams
from cryoflow.pipelines.stages.eager import Target, prepare, run_stage
from cryoflow.pipelines.stages.fields import Device, VolumeKey

NAME = "dewedge"
OUT = "dewedged"  # the volume cryoflow dewedge writes
KEY = "dewedged"  # the result key under cryoflow run
MODELS = "models"  # the folder of the store where trained checkpoints go by default


class DewedgeParams(StageParams):
    """Learn missing-wedge filling from the selected tomograms and apply it to each."""

    key: VolumeKey = Field(default="tomogram", description="the volume to fill (volumes/KEY)")
    model: str | None = Field(
        default=None, description="apply this checkpoint directory instead of training one"
    )
    steps: int = Field(default=600, ge=1, description="training steps (the training budget)")
    box: int = Field(default=24, ge=8, description="training box edge in binned voxels")
    bin: int = Field(default=2, ge=1, description="train and apply at N-fold binning")
    boxes_per_tomogram: int = Field(default=64, ge=1, description="training boxes per tomogram")
    batch_size: int = Field(default=4, ge=1, description="boxes per training step")
    learning_rate: float = Field(default=3e-3, gt=0, description="Adam learning rate")
    wedge_weight: float = Field(default=2.0, ge=0, description="loss weight in the wedge")
    depth: int = Field(default=3, ge=1, le=4, description="U-Net poolings")
    channels: int = Field(default=8, ge=1, description="U-Net channels at full resolution")
    halves: bool = Field(
        default=True, description="even/odd-tilt halves as noise2noise targets when possible"
    )
    seed: int = Field(default=0, description="seed of box sampling, rotations and weights")
    device: Device = Field(default="cpu", description="cpu or cuda[:N] (tasks ask for GPU=1)")
    block: int = Field(default=128, ge=8, description="tile core edge of the application")
    margin: int = Field(default=32, ge=0, description="context read around each tile")
    blend: int = Field(default=8, ge=0, description="half-width of the blended seams")

    @model_validator(mode="after")
    def _tiles(self) -> DewedgeParams:
        if self.blend > self.margin or 2 * self.blend > self.block:
            raise ValueError(
                f"need blend <= margin and 2 * blend <= block, got block {self.block}, "
                f"margin {self.margin}, blend {self.blend}"
            )
        m = 2**self.depth
        if self.box < 2 * m or self.box % m:
            raise ValueError(f"--box must be a multiple of 2**depth = {m} and >= {2 * m}")
        return self

    def with_base(self, base: Path) -> DewedgeParams:
        if self.model is None or Path(self.model).is_absolute():
            return self
        return self.model_copy(update={"model": str(base / self.model)})

    def train_config(self) -> dict[str, Any]:
        """The :class:`~cryoflow.models.dewedge_train.DewedgeTrainConfig` fields."""
        return {
            "box": self.box,
            "bin_factor": self.bin,
            "boxes_per_tomogram": self.boxes_per_tomogram,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "wedge_weight": self.wedge_weight,
            "base_channels": self.channels,
            "depth": self.depth,
            "update_every": max(0, min(200, self.steps // 3)),
            "seed": self.seed,
        }


# ---------------------------------------------------------------------------- apply
def plan(store: object, tomogram: str, params: DewedgeParams) -> Plan:
    """The filled volume of ``tomogram`` with the checkpoint ``params.model`` (lazy)."""
    from cryoflow.graph.dewedge import dewedge_lazy, lazy_normalisation
    from cryoflow.io.layout import TOMOGRAMS, VOLUMES
    from cryoflow.io.store import open_volume
    from cryoflow.models.dewedge_checkpoint import read_dewedge
    from cryoflow.models.loader import ModelHandle
    from cryoflow.pipelines.stages.inputs import node_identity

    if params.model is None:
        raise ConfigError(
            "the dewedge step applies a trained checkpoint: give model: DIR (made by "
            "`cryoflow dewedge ... --model-out DIR`)"
        )
    settings = read_dewedge(params.model)
    handle = ModelHandle.from_directory(params.model, device=params.device)
    volume = open_volume(store, tomogram, params.key)
    path = f"{TOMOGRAMS}/{tomogram}/{VOLUMES}/{params.key}"
    inputs = {path: node_identity(store, path, "volume")}
    loc, scale = lazy_normalisation(volume.data)
    resources = gpu_resources(params.device)
    data = dewedge_lazy(
        volume.data,
        handle,
        loc=loc,
        scale=scale.clip(1e-6),
        settings=settings,
        block=params.block,
        margin=params.margin,
        blend=params.blend,
        resources=resources,
    )
    pixel = float(volume.attrs["pixel_size_angstrom"])
    attrs = {
        "source_key": params.key,
        "model": handle.directory,
        "model_sha256": handle.sha256,
        "trained_on": sorted(settings.tilt_ranges_deg),
        "pixel_size_angstrom": pixel,
    }

    def setup(client: Any) -> None:
        """Load the network once per worker; refuse a GPU run no worker can take."""
        from cryoflow.models.loader import ModelPlugin

        require_gpu(client, params.device)
        client.register_plugin(ModelPlugin(handle), name=handle.plugin_name)

    out = Output(KEY, data, ("z", "y", "x"), attrs, volume="image")
    return Plan(
        NAME,
        (out,),
        inputs,
        checkpoints={handle.directory: handle.sha256},
        resources=resources,
        setup=setup,
        pixel_size_angstrom=pixel,
    )


# ---------------------------------------------------------------------------- train + apply
def preflight(target: Target, params: DewedgeParams) -> dict[str, Any]:
    """Every check before any work: each tomogram's volume and tilt range (a
    :class:`~cryoflow.errors.MissingTiltRangeError` naming the first without one), that it is
    large enough for the training boxes, and that no output exists unless
    ``target.overwrite``. Returns ``{tomogram: TiltRange}``."""
    from cryoflow.errors import GeometryError
    from cryoflow.graph.dewedge import check_alignment
    from cryoflow.io.layout import VOLUMES
    from cryoflow.io.store import open_volume
    from cryoflow.io.tomograms import tilt_range
    from cryoflow.pipelines.stages.eager import _exists

    ranges = {}
    for name in target.names:
        shape = open_volume(target.store, name, params.key).shape  # names a missing volume
        ranges[name] = tilt_range(target.store, name, params.key)
        binned = tuple(int(n) // params.bin for n in shape)
        if params.model is None and min(binned) < params.box:
            raise GeometryError(
                f"{target.store}: tomogram {name!r} volume {params.key!r} is {tuple(shape)} "
                f"voxels, {binned} binned {params.bin}x: too small for {params.box}-voxel "
                "training boxes; use a smaller --box or --bin"
            )
    if params.model is not None:
        prepare(STAGE, _where(target), params)  # the whole plan, and existing outputs
        return ranges
    check_alignment(params.block, params.margin, params.bin * 2**params.depth)
    if not target.overwrite:
        for name in target.names:
            rel = f"{VOLUMES}/{_where(target).out}"
            if _exists(target.store, name, rel):
                raise _exists_error(target, name, rel)
    return ranges


def require_gpu(client: Any, device: str) -> None:
    """Refuse a CUDA ``device`` when no connected worker offers the resource ``GPU``."""
    if gpu_resources(device):
        workers = client.scheduler_info().get("workers", {}).values()
        if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers):
            raise ConfigError(
                f"dewedge device {device!r} needs workers started with the resource GPU=1 "
                "(dask worker --resources GPU=1); none is connected"
            )


def _exists_error(target: Target, name: str, rel: str) -> Exception:
    from cryoflow.errors import AlreadyExistsError

    return AlreadyExistsError(
        f"{target.store}: {name}/{rel} already exists; pass --overwrite to replace it"
    )


def _where(target: Target) -> Target:
    return replace(target, out=target.out or OUT)


def training_token(target: Target, params: DewedgeParams) -> str:
    """SHA-256 of the training parameters and every input volume's identity."""
    from cryoflow.io.layout import TOMOGRAMS, VOLUMES
    from cryoflow.pipelines.stages.inputs import node_identity

    ids = {}
    for name in target.names:
        path = f"{TOMOGRAMS}/{name}/{VOLUMES}/{params.key}"
        ids[path] = node_identity(target.store, path, "volume")
    body = {"config": params.train_config(), "halves": params.halves, "inputs": ids}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def default_model_dir(store: object, token: str) -> Path:
    """``STORE/models/dewedge-<token16>`` (a store on the local file system only)."""
    text = str(store)
    if "://" in text and not text.startswith("file://"):
        raise ConfigError(
            f"{store}: the trained model needs a local directory; give --model-out DIR"
        )
    return Path(text.removeprefix("file://")) / MODELS / f"{NAME}-{token[:16]}"


def train(
    client: Any, target: Target, params: DewedgeParams, *, model_out: str | Path | None = None
) -> tuple[Path, str, Any]:
    """Train one network on every tomogram of ``target``; returns (directory, SHA-256,
    :class:`~cryoflow.models.checkpoint.ModelConfig`)."""
    from cryoflow.pipelines.stages.dewedge_training import train_on_cluster, training_input

    require_gpu(client, params.device)
    token = training_token(target, params)
    out = Path(model_out) if model_out is not None else default_model_dir(target.store, token)
    inputs = [
        training_input(target.store, n, params.key, bin_factor=params.bin, use_halves=params.halves)
        for n in target.names
    ]
    provenance = {"store": str(target.store), "key": params.key, "token": token}
    digest, record = train_on_cluster(
        client,
        inputs,
        params.train_config(),
        device=params.device,
        out=out,
        provenance=provenance,
    )
    return out, digest, record


def run(
    client: Any, target: Target, params: DewedgeParams, *, model_out: str | Path | None = None
) -> dict[str, dict[str, Any]]:
    """Train (unless ``params.model``), then fill each tomogram into ``volumes/<out>``
    (default ``dewedged``); per tomogram its shape, voxel size, key and the model."""
    target = _where(target)
    ranges = preflight(target, params)
    trained: dict[str, Any] = {}
    if params.model is None:
        directory, digest, record = train(client, target, params, model_out=model_out)
        params = params.model_copy(update={"model": str(directory)})
        trained = {k: record.metrics.get(k) for k in ("loss_first", "loss_last", "seconds")}
    done = run_stage(client, STAGE, target, params)
    return {
        name: {
            "shape": tuple(int(s) for s in w.plan.outputs[0].data.shape),
            "pixel_size_angstrom": w.plan.pixel_size_angstrom,
            "key": target.out,
            "model": params.model,
            "model_sha256": w.plan.outputs[0].attrs["model_sha256"],
            "tilt_range_deg": ranges[name].as_tuple,
            **trained,
        }
        for name, w in done.items()
    }


def check(params: DewedgeParams, ctx: CheckContext) -> list[str]:
    """``cryoflow check``: the checkpoint to apply must be a missing-wedge one."""
    from cryoflow.models.checkpoint import checkpoint_hash
    from cryoflow.models.dewedge_checkpoint import read_dewedge

    if params.model is None:
        raise ConfigError(
            "the dewedge step of a pipeline applies a trained checkpoint: give model: DIR "
            "(train one with `cryoflow dewedge STORE --all --model-out DIR`)"
        )
    settings = read_dewedge(params.model)
    return [
        f"{params.model}: missing-wedge checkpoint (bin {settings.bin_factor}, trained on "
        f"{len(settings.tilt_ranges_deg)} tomograms), weights {checkpoint_hash(params.model)[:12]}"
    ]


STAGE = Stage(NAME, DewedgeParams, plan=plan, check=check)
