"""Annotate tilt images (or tomogram slices) with trained networks on the cluster.

For each tomogram and model: the images are read lazily from the store, the network runs as
one Dask task per batch (loaded once per worker by :class:`~cryoflow.models.loader.ModelPlugin`),
and the uint8 probability maps (0..255) are written chunk by chunk to
``results/annotate/<feature>`` ``(tilt, y, x)`` — or ``results/annotate/<feature>_slices``
``(z, y, x)`` for tomogram slices. With several models the combined label map (each pixel the
best feature above its threshold, else 0) goes to ``results/annotate/combined``.

GPU placement: with ``device="cuda"`` the inference tasks are built inside
``dask.annotate(resources={"GPU": 1})`` and persisted with ``optimize_graph=False`` so that
graph optimisation (blockwise fusion with the store reads) cannot drop the annotation; only
the inference tasks then need a GPU worker, reads and writes run anywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da

from cryoflow.errors import ConfigError
from cryoflow.graph.inference import combine_lazy, infer_images
from cryoflow.io import store as S
from cryoflow.models.checkpoint import ModelConfig, read_config
from cryoflow.models.loader import ModelHandle, ModelPlugin
from cryoflow.pipelines.selection import runner

STEP = "annotate"
COMBINED = "combined"


@dataclass(frozen=True)
class AnnotateConfig:
    """What ``cryoflow annotate`` does.

    models : model directories (one per feature); slices : annotate the reconstructed
    tomogram's z slices (``volumes/<volume_key>``) instead of the tilt images; batch_size :
    images per task; device : ``"cpu"`` or ``"cuda"`` (GPU tasks ask for ``{"GPU": 1}``).
    """

    models: tuple[Path, ...]
    slices: bool = False
    volume_key: str = "tomogram"
    batch_size: int = 8
    device: str = "cpu"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("give at least one --model DIR")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")


def gpu_resources(device: str) -> dict[str, float] | None:
    """The Dask resources an inference task on ``device`` needs."""
    return {"GPU": 1} if str(device).startswith("cuda") else None


def load_models(
    client: Any, models: Sequence[Path], device: str
) -> list[tuple[ModelHandle, ModelConfig]]:
    """Register one :class:`ModelPlugin` per model on every worker; return handles and configs."""
    out = []
    for directory in models:
        config = read_config(directory)
        handle = ModelHandle.from_directory(directory, device=device)
        client.register_plugin(ModelPlugin(handle), name=handle.plugin_name)
        out.append((handle, config))
    features = [c.feature for _, c in out]
    if len(set(features)) != len(features):
        raise ConfigError(f"each model must annotate a different feature, got {features}")
    return out


def infer_on_cluster(
    client: Any,
    images: da.Array,
    handle: ModelHandle,
    *,
    batch_size: int,
    label: str,
    resources: dict[str, float] | None,
) -> da.Array:
    """Persisted uint8 probability maps ``(N, Y, X)`` of ``images`` ``(N, Y, X)``.

    The inference tasks carry ``resources`` (if any) as an annotation that survives because
    the graph is persisted without optimisation.
    """
    ctx = dask.annotate(resources=resources) if resources else contextlib.nullcontext()
    with ctx:
        probs = infer_images(images, handle, batch_size=batch_size, label=label)
    return client.persist(probs, optimize_graph=False)


def annotate_tomogram(
    client: Any,
    store: Any,
    name: str,
    config: AnnotateConfig,
    *,
    models: list[tuple[ModelHandle, ModelConfig]] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Annotate one tomogram with every model; returns the written keys and thresholds."""
    loaded = models if models is not None else load_models(client, config.models, config.device)
    if config.slices:
        source = S.open_volume(store, name, config.volume_key)
        dims: tuple[str, ...] = ("z", "y", "x")
    else:
        source = S.open_tilt_series(store, name)
        dims = ("tilt", "y", "x")
    images = source.data
    resources = gpu_resources(config.device)
    suffix = "_slices" if config.slices else ""
    written: dict[str, str] = {}
    probs_all = []
    for handle, mconf in loaded:
        key = f"{mconf.feature}{suffix}"
        probs = infer_on_cluster(
            client,
            images,
            handle,
            batch_size=config.batch_size,
            label=f"{name}-{key}",
            resources=resources,
        )
        S.write_result(
            store,
            name,
            STEP,
            key,
            probs,
            dims=dims,
            overwrite=config.overwrite,
            compute=False,
            provenance={
                "step": STEP,
                "parameters": {
                    "batch_size": config.batch_size,
                    "device": config.device,
                    "slices": config.slices,
                },
                "inputs": {
                    "images": f"{name}/{'volumes/' + config.volume_key if config.slices else 'tilt_series'}",
                    "model": handle.directory,
                    "model_sha256": handle.sha256,
                },
            },
            attrs={
                "feature": mconf.feature,
                "threshold": mconf.threshold,
                "scale": 255,
                "model_sha256": handle.sha256,
            },
        ).run(runner(client, f"annotate {name} {key}", quiet))
        written[mconf.feature] = key
        probs_all.append(probs)
    if len(loaded) > 1:
        thresholds = [c.threshold for _, c in loaded]
        labels = combine_lazy(probs_all, thresholds)
        mapping = {str(i + 1): c.feature for i, (_, c) in enumerate(loaded)}
        S.write_result(
            store,
            name,
            STEP,
            f"{COMBINED}{suffix}",
            labels,
            dims=dims,
            overwrite=config.overwrite,
            compute=False,
            provenance={
                "step": STEP,
                "parameters": {"thresholds": thresholds},
                "inputs": {"maps": [f"{STEP}/{k}" for k in written.values()]},
            },
            attrs={"labels": mapping},
        ).run(runner(client, f"annotate {name} combine", quiet))
        written[COMBINED] = f"{COMBINED}{suffix}"
    return {"keys": written, "thresholds": {c.feature: c.threshold for _, c in loaded}}


def annotate_dataset(
    client: Any, store: Any, names: Sequence[str], config: AnnotateConfig, *, quiet: bool = False
) -> dict[str, dict[str, Any]]:
    """:func:`annotate_tomogram` over many tomograms, loading each model once per worker."""
    models = load_models(client, config.models, config.device)
    return {
        n: annotate_tomogram(client, store, n, config, models=models, quiet=quiet) for n in names
    }
