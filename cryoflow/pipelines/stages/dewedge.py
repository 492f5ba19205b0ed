"""The ``dewedge`` stage: missing-wedge filling learned from every selected tomogram.

``cryoflow dewedge STORE (--name NAME | --all) [--key tomogram]`` (``CONTRACT.md``) and the
``dewedge`` step of ``cryoflow run`` run the same two parts:

1. **train** (dataset level, :func:`~.dewedge_training.training_rounds`, this stage's
   ``train``): one self-supervised 3D U-Net on boxes from every selected tomogram's volume
   ``key``, each with its own recorded tilt range (missing wedge) and, when cryoflow
   reconstructed it from the stored tilt series, its even/odd-tilt halves; ``steps``
   optimiser steps (the budget) in one task on one worker (``{"GPU": 1}`` with a CUDA
   ``device``). The network is published at the dataset's root (``results/dewedge``) under
   the run token of the training parameters and every input's identity, so a rerun does not
   train again, and written as a checkpoint directory (``STORE/models/dewedge-<token16>``);
2. **apply** (per tomogram, :func:`plan`): the network over the whole volume in blended
   overlapping tiles (:func:`cryoflow.graph.dewedge.dewedge_lazy`), loaded once per worker by
   a :class:`~cryoflow.models.loader.ModelPlugin`, streamed into the OME-Zarr volume
   ``volumes/dewedged`` (``cryoflow dewedge``; same shape and voxel size as the input;
   ``cryoflow export --key dewedged``) or ``results/dewedge/dewedged`` (``cryoflow run``). Its
   provenance records the parameters, the input's identity, the training's and the checkpoint
   (directory and weights SHA-256).

With ``model`` given, step 1 is skipped and that checkpoint is applied.
Nothing is overwritten unless asked: every check (tomograms, tilt ranges, sizes, existing
outputs) runs before any training.
"""

from __future__ import annotations

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
    round_steps: int = Field(
        default=100, ge=1, description="steps per recorded round (a killed run resumes there)"
    )
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
        same = ("box", "boxes_per_tomogram", "steps", "batch_size", "learning_rate")
        out = {k: getattr(self, k) for k in (*same, "wedge_weight", "depth", "seed")}
        out.update(bin_factor=self.bin, base_channels=self.channels)
        out["update_every"] = max(0, min(200, self.steps // 3))
        return out


# ---------------------------------------------------------------------------- apply
def plan(store: object, tomogram: str, params: DewedgeParams) -> Plan:
    """The filled volume of ``tomogram`` with the checkpoint ``params.model`` (lazy)."""
    from cryoflow.graph.dewedge import dewedge_lazy, lazy_normalisation
    from cryoflow.io.layout import TOMOGRAMS, VOLUMES
    from cryoflow.io.store import open_volume
    from cryoflow.models.dewedge_checkpoint import read_dewedge
    from cryoflow.models.loader import ModelHandle
    from cryoflow.pipelines.stages.inputs import node_identity

    volume = open_volume(store, tomogram, params.key)
    path = f"{TOMOGRAMS}/{tomogram}/{VOLUMES}/{params.key}"
    inputs = {path: node_identity(store, path, "volume")}
    model = params.model
    if model is None:  # the network this stage's training published (results/dewedge)
        from cryoflow.io.layout import RESULTS
        from cryoflow.pipelines.stages.dewedge_training import trained_checkpoint

        directory, token = trained_checkpoint(store)
        model = str(directory)
        inputs[f"{RESULTS}/{NAME}/weights"] = token
    settings = read_dewedge(model)
    handle = ModelHandle.from_directory(model, device=params.device)
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


def default_model_dir(store: object, token: str) -> Path:
    """``STORE/models/dewedge-<token16>`` (a store on the local file system only)."""
    text = str(store)
    if "://" in text and not text.startswith("file://"):
        raise ConfigError(
            f"{store}: the trained model needs a local directory; give --model-out DIR"
        )
    return Path(text.removeprefix("file://")) / MODELS / f"{NAME}-{token[:16]}"


def run(
    client: Any, target: Target, params: DewedgeParams, *, model_out: str | Path | None = None
) -> dict[str, dict[str, Any]]:
    """Train (unless ``params.model``; the training ``cryoflow run`` runs, reused when its
    published result is current), then fill each tomogram into ``volumes/<out>`` (default
    ``dewedged``) with the plans ``cryoflow run`` writes. ``model_out``: a copy of the trained
    checkpoint goes there too. Per tomogram: its shape, voxel size, key, the model applied
    and, after training, ``trained`` (False: reused) and the losses."""
    from cryoflow.models.checkpoint import read_config
    from cryoflow.pipelines.engine.rounds import run_rounds
    from cryoflow.pipelines.stages.dewedge_training import trained_checkpoint, training_rounds

    target = _where(target)
    ranges = preflight(target, params)
    trained: dict[str, Any] = {}
    if params.model is None:  # the same training as cryoflow run's (reused when current)
        rounds = training_rounds(target.store, list(target.names), params)
        done = run_rounds(client, target.store, rounds, params.to_dict())
        directory, _ = trained_checkpoint(target.store, model_out)
        metrics = read_config(directory).metrics
        keys = ("loss_first", "loss_last", "seconds")
        trained = {"trained": not done.skipped, **{k: metrics.get(k) for k in keys}}
    done_apply = run_stage(client, STAGE, target, params)
    return {
        name: {
            "shape": tuple(int(s) for s in w.plan.outputs[0].data.shape),
            "pixel_size_angstrom": w.plan.pixel_size_angstrom,
            "key": target.out,
            "model": w.plan.outputs[0].attrs["model"],
            "model_sha256": w.plan.outputs[0].attrs["model_sha256"],
            "tilt_range_deg": ranges[name].as_tuple,
            **trained,
        }
        for name, w in done_apply.items()
    }


def check(params: DewedgeParams, ctx: CheckContext) -> list[str]:
    """``cryoflow check``: what is trained, or that the checkpoint to apply is a
    missing-wedge one."""
    from cryoflow.models.checkpoint import checkpoint_hash
    from cryoflow.models.dewedge_checkpoint import read_dewedge

    if params.model is None:
        return [
            f"trains one network on every selected tomogram's volumes/{params.key} "
            f"({params.steps} steps, {params.box}-voxel boxes at bin {params.bin}, "
            f"{'even/odd halves where possible' if params.halves else 'no halves'}) as a "
            f"dataset-level step in rounds of {params.round_steps} steps (a killed run resumes "
            "after the last), reused while its settings and volumes are unchanged"
        ]
    settings = read_dewedge(params.model)
    return [
        f"{params.model}: missing-wedge checkpoint (bin {settings.bin_factor}, trained on "
        f"{len(settings.tilt_ranges_deg)} tomograms), weights {checkpoint_hash(params.model)[:12]}"
    ]


def _train(store: object, names: list[str], params: DewedgeParams) -> Any:
    from cryoflow.pipelines.stages.dewedge_training import training_rounds

    return training_rounds(store, names, params)


STAGE = Stage(NAME, DewedgeParams, plan=plan, check=check, train=_train)
