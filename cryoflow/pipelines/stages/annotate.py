"""The ``annotate`` stage: trained networks over every tilt image (or tomogram slice).

For each tomogram and checkpoint: the images are read lazily from the store, the network runs
as one Dask task per batch (:func:`cryoflow.graph.inference.infer_images`; loaded once per
worker by :class:`~cryoflow.models.loader.ModelPlugin`, registered by the plan's ``setup``),
and the uint8 probability maps (0..255, with the model's ``threshold`` and ``scale`` in the
attributes: what ``lift`` binarises at) go to ``results/annotate/<feature>`` ``(tilt, y, x)``,
or ``results/annotate/<feature>_slices`` ``(z, y, x)`` for the z slices of
``volumes/<volume_key>``. With several checkpoints the combined label map (each pixel the best
feature above its threshold, else 0) goes to ``results/annotate/combined``. Each checkpoint's
weights hash is part of the run token and the provenance, so a retrained model recomputes the
annotation and everything lifted from it.

GPU placement: with ``device: cuda`` every task of the unit asks for the Dask resource
``GPU=1``; ``setup`` refuses to start when no connected worker offers it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from cryoflow.errors import ConfigError
from cryoflow.io.names import validate_name
from cryoflow.pipelines.cluster.connect import gpu_resources
from cryoflow.pipelines.stages.base import CheckContext, Output, Plan, Stage, StageParams
from cryoflow.pipelines.stages.eager import Target, run_stage
from cryoflow.pipelines.stages.fields import Device, Texts, VolumeKey
from cryoflow.pipelines.stages.inputs import node_identity

NAME = "annotate"
COMBINED = "combined"


class AnnotateParams(StageParams):
    """Probability maps of trained networks (one checkpoint per feature) over every image."""

    checkpoint: Texts = Field(
        min_length=1,
        description="model directories from `cryoflow train`, one per feature (relative to "
        "the pipeline file)",
    )
    slices: bool = Field(default=False, description="annotate tomogram z slices, not tilts")
    volume_key: VolumeKey = Field(
        default="tomogram", description="with slices: the volume to slice"
    )
    batch_size: int = Field(default=8, ge=1, description="images per task")
    device: Device = Field(default="cpu", description="cpu or cuda[:N] (tasks ask for GPU=1)")

    def with_base(self, base: Path) -> AnnotateParams:
        paths = tuple(p if Path(p).is_absolute() else str(base / p) for p in self.checkpoint)
        return self.model_copy(update={"checkpoint": paths})


def load_models(client: Any, models: Sequence[Any], device: str) -> list[tuple[Any, Any]]:
    """Register one :class:`ModelPlugin` per model on every worker; return (handle, config)."""
    from cryoflow.models.checkpoint import read_config
    from cryoflow.models.loader import ModelHandle, ModelPlugin

    out = []
    for directory in models:
        config = read_config(directory)
        handle = ModelHandle.from_directory(directory, device=device)
        client.register_plugin(ModelPlugin(handle), name=handle.plugin_name)
        out.append((handle, config))
    _distinct([c.feature for _, c in out])
    return out


def _distinct(features: list[str]) -> None:
    if len(set(features)) != len(features):
        raise ConfigError(f"each model must annotate a different feature, got {features}")


def infer_on_cluster(
    client: Any,
    images: Any,
    handle: Any,
    *,
    batch_size: int,
    label: str,
    resources: dict[str, float] | None,
) -> Any:
    """Persisted uint8 probability maps ``(N, Y, X)`` of lazy ``images`` ``(N, Y, X)``.

    The inference tasks carry ``resources`` (if any) as an annotation that survives because
    the graph is persisted without optimisation; reads run anywhere.
    """
    import dask

    from cryoflow.graph.inference import infer_images

    ctx = dask.annotate(resources=resources) if resources else contextlib.nullcontext()
    with ctx:
        probs = infer_images(images, handle, batch_size=batch_size, label=label)
    return client.persist(probs, optimize_graph=False)


def plan(store: object, tomogram: str, params: AnnotateParams) -> Plan:
    """Probability maps of every checkpoint on ``tomogram`` (see the module docstring)."""
    from cryoflow.graph.inference import combine_lazy, infer_images
    from cryoflow.io.layout import TILT_SERIES, TOMOGRAMS, VOLUMES
    from cryoflow.io.store import open_tilt_series, open_volume
    from cryoflow.models.checkpoint import read_config
    from cryoflow.models.loader import ModelHandle

    # 1. the checkpoints: config (feature, threshold) and weights hash of each
    models = []
    for directory in params.checkpoint:
        config = read_config(directory)
        validate_name(config.feature, "feature of the checkpoint (result key)")
        models.append((ModelHandle.from_directory(directory, device=params.device), config))
    _distinct([c.feature for _, c in models])
    # 2. the images: the tilt series (tilt, y, x) or the volume's slices (z, y, x)
    if params.slices:
        path = f"{TOMOGRAMS}/{tomogram}/{VOLUMES}/{params.volume_key}"
        images = open_volume(store, tomogram, params.volume_key)
        dims: tuple[str, ...] = ("z", "y", "x")
    else:
        path = f"{TOMOGRAMS}/{tomogram}/{TILT_SERIES}"
        images = open_tilt_series(store, tomogram)
        dims = ("tilt", "y", "x")
    inputs = {path: node_identity(store, path, "images")}
    suffix = "_slices" if params.slices else ""
    # 3. one map per checkpoint, and the combined labels of several
    outputs = []
    for handle, config in models:
        key = f"{config.feature}{suffix}"
        probs = infer_images(
            images.data, handle, batch_size=params.batch_size, label=f"{tomogram}-{key}"
        )
        attrs = {
            "feature": config.feature,
            "threshold": float(config.threshold),
            "scale": 255,
            "model_sha256": handle.sha256,
        }
        outputs.append(Output(key, probs, dims, attrs))
    if len(models) > 1:
        combined = combine_lazy([o.data for o in outputs], [c.threshold for _, c in models])
        mapping = {str(i + 1): c.feature for i, (_, c) in enumerate(models)}
        outputs.append(Output(f"{COMBINED}{suffix}", combined, dims, {"labels": mapping}))
    resources = gpu_resources(params.device)
    handles = [h for h, _ in models]

    def setup(client: Any) -> None:
        """Load each network once per worker; refuse a GPU run no worker can take."""
        from cryoflow.models.loader import ModelPlugin

        if resources:
            workers = client.scheduler_info().get("workers", {}).values()
            if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers):
                raise ConfigError(
                    "annotate device 'cuda' needs workers started with the resource GPU=1 "
                    "(dask worker --resources GPU=1); none is connected"
                )
        for handle in handles:
            client.register_plugin(ModelPlugin(handle), name=handle.plugin_name)

    return Plan(
        NAME,
        tuple(outputs),
        inputs,
        checkpoints={h.directory: h.sha256 for h in handles},
        resources=resources,
        setup=setup,
    )


def check(params: AnnotateParams, ctx: CheckContext) -> list[str]:
    """Read each checkpoint's ``model.json`` (not its weights); one line per checkpoint."""
    from cryoflow.models.checkpoint import checkpoint_hash, read_config

    lines = []
    for directory in params.checkpoint:
        model = read_config(directory)
        lines.append(
            f"{directory}: checkpoint for {model.feature!r} ({model.spec.arch}), "
            f"weights {checkpoint_hash(directory)[:12]}"
        )
    return lines


def run(client: Any, target: Target, params: AnnotateParams) -> dict[str, dict[str, Any]]:
    """Annotate each tomogram with every checkpoint; per tomogram the written keys (feature ->
    result key, plus ``combined``) and each feature's threshold."""
    done = run_stage(client, STAGE, target, params)
    summary = {}
    for name, w in done.items():
        maps = [o for o in w.plan.outputs if "feature" in o.attrs]
        keys = {o.attrs["feature"]: o.key for o in maps}
        if len(w.plan.outputs) > len(maps):
            keys[COMBINED] = w.plan.outputs[-1].key
        thresholds = {o.attrs["feature"]: o.attrs["threshold"] for o in maps}
        summary[name] = {"keys": keys, "thresholds": thresholds}
    return summary


STAGE = Stage(NAME, AnnotateParams, plan=plan, check=check)
