"""The ``annotate`` step of ``cryoflow run``: a trained network over every tilt image.

The graph of ``cryoflow annotate`` (:func:`cryoflow.graph.inference.infer_images`): one task
per batch of ``batch_size`` tilts, the network loaded once per worker by
:class:`cryoflow.models.loader.ModelPlugin` (registered by the plan's ``setup`` before the
chunks are submitted). The result ``results/annotate/<feature>`` ``(tilt, y, x)`` holds uint8
probabilities 0..255 with the model's ``threshold`` and ``scale`` in the attributes (what
``lift`` binarises at).

The checkpoint's weights hash (``model.json``'s ``weights_sha256``, checked against the file
when a worker loads it) is in the plan's ``checkpoints``: it enters the run token, so a
retrained model recomputes the annotation and everything lifted from it, and the provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryoflow.errors import CheckpointError, ConfigError
from cryoflow.io.layout import TILT_SERIES, TOMOGRAMS
from cryoflow.io.names import validate_name
from cryoflow.pipelines.steps import Plan, node_identity

STEP = "annotate"


def plan_annotate(store: object, tomogram: str, params: Any) -> Plan:
    """Probability maps of ``params.checkpoint``'s network on every tilt of ``tomogram``.

    Parameters
    ----------
    params : cryoflow.pipelines.config.AnnotateParams
    """
    from cryoflow.graph.inference import infer_images
    from cryoflow.io.store import open_tilt_series
    from cryoflow.models.checkpoint import read_config
    from cryoflow.models.loader import ModelHandle
    from cryoflow.pipelines.annotate import gpu_resources

    # 1. the checkpoint: its config (feature, threshold) and weights hash
    directory = Path(params.checkpoint)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory does not exist")
    model = read_config(directory)
    validate_name(model.feature, "feature of the checkpoint (result key)")
    handle = ModelHandle.from_directory(directory, device=params.device)
    # 2. the images: the tilt series (tilt, y, x)
    tilts = open_tilt_series(store, tomogram)
    path = f"{TOMOGRAMS}/{tomogram}/{TILT_SERIES}"
    inputs = {path: node_identity(store, path, "tilt series")}
    probs = infer_images(
        tilts.data, handle, batch_size=params.batch_size, label=f"{tomogram}-{model.feature}"
    )
    resources = gpu_resources(params.device)
    attrs = {
        "feature": model.feature,
        "threshold": float(model.threshold),
        "scale": 255,
        "model_sha256": handle.sha256,
    }

    def setup(client: Any) -> None:
        """Load the network once per worker; refuse a GPU run no worker can take."""
        from cryoflow.models.loader import ModelPlugin

        if resources:
            workers = client.scheduler_info().get("workers", {}).values()
            if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers):
                raise ConfigError(
                    "annotate device 'cuda' needs workers started with the resource GPU=1 "
                    "(dask worker --resources GPU=1); none is connected"
                )
        client.register_plugin(ModelPlugin(handle), name=handle.plugin_name)

    return Plan(
        STEP,
        model.feature,
        probs,
        ("tilt", "y", "x"),
        inputs,
        attrs=attrs,
        checkpoints={handle.directory: handle.sha256},
        resources=resources,
        setup=setup,
    )
