"""The ``embed`` stage: a missing-wedge-aware autoencoder maps every particle of a set to a
point of a small latent space; classes are found there (``cryoflow embed``, ``CONTRACT.md``).

Steps, on a Dask cluster (the set's stored batches are the tasks' unit; each task reads its own
particles from the store):

1. **Consensus average**: per-batch, per-half Fourier sums through the averaging kernels
   (wedge-compensated), added in a fixed tree; the two half maps give an FSC.
2. **Band**: ``--resolution`` (Å) or the FSC-0.143 resolution of those halves, but never finer
   than ``B / 6`` voxels nor coarser than ``B / 3`` (conformational changes are low-resolution
   differences, and the working grid stays small: ``docs/design/autoencoder.md``).
3. **Training** on one worker (``{"GPU": 1}`` when ``--device cuda``) on the particles
   prepared by per-batch tasks (a random sample of at most ``--train-particles``); the
   checkpoint (``weights.pt`` + ``model.json``, loaded with ``weights_only=True``) goes to
   ``DIR`` and its SHA-256 into ``embed.json``.
4. **Embedding** of every particle, one task per batch, the network loaded once per worker
   (:class:`cryoflow.models.loader.ModelPlugin`); the points are stored in the set's table
   as columns ``z0 .. z{D-1}`` with the checkpoint's hash (:mod:`cryoflow.io.particle_latent`:
   ``cryoflow.open_particles(store, set)`` shows them; a rerun replaces every ``z<j>``).
5. **Classes** in latent space (Gaussian mixture with ``--classes K`` or K by BIC, or
   k-means), class averages through the averaging kernels (per-batch sums again), the
   pictures and the files of :mod:`.embed_outputs`.

The orientations, shifts and halves come from the set's current published average
(``results/average-<set>``, :mod:`.average_poses`) when there is one, else from the set's
table (:mod:`.embed_inputs`), the wedges from the table; a set without orientations is
embedded as already aligned, and ``embed.json`` says so.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import Field

from cryoflow.pipelines.stages.base import StageParams
from cryoflow.pipelines.stages.fields import ClassCount, choice

if TYPE_CHECKING:  # the command line imports this module: no heavy imports at the top
    import pandas as pd

NAME = "embed"
METHODS = ("gmm", "kmeans")


class EmbedParams(StageParams):
    """What ``cryoflow embed`` does (module docstring)."""

    latent: int = Field(default=4, ge=2, le=16, description="latent dimension D (2-16)")
    classes: ClassCount = Field(
        default=None,
        description="classes K in latent space, or auto (the default): the K of 1 .. "
        "--max-classes with the lowest BIC of Gaussian mixtures on the latent points, among the "
        "K whose every class holds at least 1 + D + D(D+1)/2 particles (the parameters of one "
        "full Gaussian in D dimensions; so a small set is not over-split)",
    )
    max_classes: int = Field(default=8, ge=1, le=64, description="largest K tried for auto")
    method: Annotated[str, choice(lambda: METHODS)] = Field(
        default="gmm", description="clustering in latent space: gmm or kmeans"
    )
    steps: int = Field(default=400, ge=1, description="training steps")
    batch_size: int = Field(default=16, ge=2, description="particles per training step")
    train_particles: int = Field(
        default=3000, ge=2, description="particles sampled for training (all when fewer)"
    )
    resolution: float | None = Field(
        default=None, gt=0, description="band limit in Å (default: the average's FSC-0.143)"
    )
    mask_radius: float | None = Field(
        default=None, gt=0, description="soft mask radius in voxels (default B/2 - 3)"
    )
    seed: int = Field(default=0, description="seed of training and classes")
    device: str = Field(default="cpu", description="cpu or cuda")

    def latent_classes(self, latent: np.ndarray) -> Any:
        """The classes of latent points ``(n, D)`` by these parameters
        (:func:`cryoflow.kernels.latent_classes.classify_latent`)."""
        from cryoflow.kernels.latent_classes import classify_latent as cluster

        k, top = self.classes, self.max_classes
        return cluster(latent, classes=k, method=self.method, max_classes=top, seed=self.seed)


@dataclass(frozen=True)
class EmbedResult:
    """table : the set's table (stack order) with ``z0..`` and ``class`` (1..K) columns;
    latent (n, D); out : the written directory (None when not kept); record : ``embed.json``."""

    table: pd.DataFrame
    latent: np.ndarray
    out: Path | None
    record: dict[str, Any]


def _resources(device: str) -> dict[str, float] | None:
    from cryoflow.pipelines.cluster.connect import gpu_resources

    return gpu_resources(device)


def band_px(
    params: EmbedParams, box: int, pixel: float, half_maps: np.ndarray
) -> tuple[float, str]:
    """The band limit (voxels) and where it came from (module docstring, step 2)."""
    from cryoflow.kernels.fsc import fsc
    from cryoflow.kernels.masks import spherical_mask

    if params.resolution is not None:
        return max(float(params.resolution) / pixel, 2.0), "--resolution"
    radius = box / 2.0 - 3.0 if params.mask_radius is None else float(params.mask_radius)
    mask = spherical_mask(box, radius, 3.0)
    measured = fsc(half_maps[0], half_maps[1], mask).resolution_px(0.143)
    chosen = float(np.clip(measured, max(box / 6.0, 2.0), max(box / 3.0, 2.0)))
    return chosen, f"FSC-0.143 of the consensus halves {measured:.2f} px, clipped to [B/6, B/3]"


def _consensus(
    client: Any, blocks: list[Any], inputs: Any, device: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(average (B,B,B), half maps (2,B,B,B))`` of the whole set."""
    from cryoflow.graph.embed import consensus_graph
    from cryoflow.kernels.average import reconstruct

    graph = consensus_graph(blocks, inputs, device)
    sums = client.compute(graph, resources=_resources(device)).result().sums[0]
    halves = np.stack(
        [reconstruct(sums.data[h], sums.weight[h], int(max(sums.count[h], 1))) for h in (0, 1)]
    )
    average = reconstruct(sums.data.sum(0), sums.weight.sum(0), int(sums.count.sum()))
    return average, halves


def _train(
    client: Any,
    blocks: list[Any],
    inputs: Any,
    frame: Any,
    avg_work: np.ndarray,
    params: EmbedParams,
    directory: Path,
) -> tuple[str, dict[str, Any]]:
    """Prepare the training sample by batch, train on one worker, save the checkpoint."""
    from cryoflow.graph import embed as G
    from cryoflow.models.arch import build_model
    from cryoflow.models.checkpoint import ModelConfig, save_checkpoint
    from cryoflow.models.embed_train import EmbedTrainParams

    rng = np.random.default_rng(params.seed)
    n = inputs.n
    chosen = np.sort(rng.choice(n, size=min(n, params.train_particles), replace=False))
    prepared = G.prepare_graph(blocks, inputs, chosen, frame, avg_work, params.device)
    futures = client.compute(prepared, resources=_resources(params.device))
    tparams = EmbedTrainParams(
        latent_dim=params.latent,
        steps=params.steps,
        batch_size=params.batch_size,
        seed=params.seed,
        device=params.device,
    )
    job = client.submit(
        G.train, frame, avg_work, tparams, *futures, resources=_resources(params.device), pure=False
    )
    state, config, history = job.result()
    cfg = ModelConfig.from_dict(config)
    model = build_model(cfg.spec)
    model.load_state_dict(state)
    digest = save_checkpoint(directory, model, cfg)
    return digest, {
        "n_trained": len(chosen),
        "steps_run": len(history),
        "loss_first_10": float(np.mean(history[:10])),
        "loss_last_20": float(np.mean(history[-20:])),
        "selection": cfg.params.get("selection"),
    }


def _embed_all(
    client: Any, blocks: list[Any], inputs: Any, directory: Path, device: str
) -> np.ndarray:
    """Latent points of every particle, one task per batch, the model loaded once per worker."""
    from cryoflow.graph.embed import embed_graph
    from cryoflow.models.loader import ModelHandle, ModelPlugin

    handle = ModelHandle.from_directory(directory, device=device)
    client.register_plugin(ModelPlugin(handle), name=handle.plugin_name)
    try:
        parts = embed_graph(handle, blocks, inputs)
        out = client.compute(parts, resources=_resources(device))
        return np.concatenate(client.gather(out)).astype(np.float32)
    finally:
        client.unregister_worker_plugin(handle.plugin_name)


def _class_maps(
    client: Any, blocks: list[Any], inputs: Any, labels: np.ndarray, k: int, device: str
) -> np.ndarray:
    from cryoflow.graph.embed import class_sums_graph
    from cryoflow.kernels.class_average import finish_classes

    graph = class_sums_graph(blocks, inputs, labels, k, device)
    return finish_classes(client.compute(graph, resources=_resources(device)).result())


def embed(
    client: Any,
    store: Any,
    set_name: str,
    params: EmbedParams,
    out: str | Path | None,
    *,
    overwrite: bool = False,
) -> EmbedResult:
    """Run the stage on particle set ``set_name`` of ``store``; write ``out`` (None: keep only
    what is returned; the model goes to a temporary directory the workers must see)."""
    from cryoflow.graph.embed import stack_blocks
    from cryoflow.io.particleset import open_particles, read_particle_table
    from cryoflow.kernels.conformation_input import work_average
    from cryoflow.kernels.latent_classes import min_class_size
    from cryoflow.models.embed_fit import default_frame
    from cryoflow.models.trajectory import latent_trajectory
    from cryoflow.pipelines.stages import embed_outputs as O
    from cryoflow.pipelines.stages.embed_inputs import describe, latest_alignment, set_inputs

    t0 = time.perf_counter()
    final = O.check_out(out, overwrite) if out is not None else None
    stack = open_particles(store, set_name)
    table = read_particle_table(store, set_name)
    box = int(stack.shape[1])
    inputs = set_inputs(store, set_name, table, tuple(int(c) for c in stack.data.chunks[0]), box)
    inputs, poses_from = latest_alignment(store, set_name, inputs)
    blocks = stack_blocks(stack.data)
    tmp_root = None
    if final is not None:
        work = O.staging_dir(final)
    else:
        tmp_root = tempfile.TemporaryDirectory(prefix="cryoflow-embed-")
        work = Path(tmp_root.name)
    try:
        average, half_maps = _consensus(client, blocks, inputs, params.device)
        res_px, res_source = band_px(params, box, inputs.pixel_size_angstrom, half_maps)
        frame = default_frame(box, res_px, params.mask_radius)
        avg_work = work_average(average, frame)
        t1 = time.perf_counter()
        digest, training = _train(client, blocks, inputs, frame, avg_work, params, work)
        t2 = time.perf_counter()
        latent = _embed_all(client, blocks, inputs, work, params.device)
        t3 = time.perf_counter()
        found = params.latent_classes(latent)
        labels = found.labels.astype(int)
        maps = _class_maps(client, blocks, inputs, labels, found.n_classes, params.device)
        classes = labels + 1
        result = table.copy()
        for d in range(latent.shape[1]):
            result[f"z{d}"] = latent[:, d]
        result["class"] = classes
        seconds = {"average": t1 - t0, "train": t2 - t1, "embed": t3 - t2}
        record: dict[str, Any] = {
            "step": NAME,
            "store": str(store),
            "set": set_name,
            "parameters": params.to_dict(),
            "inputs": {**describe(inputs), **({"orientations": poses_from} if poses_from else {})},
            "frame": frame.to_dict(),
            "band": {
                "resolution_px": res_px,
                "resolution_angstrom": res_px * inputs.pixel_size_angstrom,
                "source": res_source,
            },
            "checkpoint_sha256": digest,
            "training": training,
            "classes": {
                "k": found.n_classes,
                "method": found.method,
                "chosen_by": "--classes" if params.classes else "BIC",
                "min_class_size_bic": min_class_size(latent.shape[1]),
                "bic": [None if not np.isfinite(b) else float(b) for b in found.bic],
                "sizes": np.bincount(labels, minlength=found.n_classes).tolist(),
            },
            "seconds": seconds,
        }
        record["stored"] = O.store_latent(store, set_name, latent, record, final)
        if final is not None:
            _write(work, table, latent, classes, maps, inputs, found.n_classes, set_name, record)
            traj = latent_trajectory(
                _handle(work, params.device), latent, n_axes=min(2, latent.shape[1])
            )
            O.trajectory_outputs(work, traj, inputs.pixel_size_angstrom)
            seconds["total"] = time.perf_counter() - t0
            O.write_record(work, record)
            O.publish(work, final)
    except BaseException:
        if final is not None:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if tmp_root is not None:
            tmp_root.cleanup()
    return EmbedResult(result, latent, final, record)


def _handle(directory: Path, device: str) -> Any:
    from cryoflow.models.loader import ModelHandle

    return ModelHandle.from_directory(directory, device=device)


def _write(
    work: Path,
    table: pd.DataFrame,
    latent: np.ndarray,
    classes: np.ndarray,
    maps: np.ndarray,
    inputs: Any,
    k: int,
    set_name: str,
    record: dict[str, Any],
) -> None:
    from cryoflow.pipelines.stages import embed_outputs as O

    O.write_tables(work, table, latent, classes)
    for c in range(k):
        O.write_map(work / f"class_{c + 1}.mrc", maps[c], inputs.pixel_size_angstrom)
    title = f"{set_name}: {len(table)} particles, {k} classes" + (
        "" if inputs.aligned else " (unaligned)"
    )
    O.latent_picture(work / "latent.png", latent, classes, title)


def classify_latent(
    store: Any, set_name: str, k: int | None, *, client: Any = None, **params: Any
) -> pd.DataFrame:
    """The set's table (stack order) with a ``class`` column ``1..k`` from the latent space
    (what ``cryoflow classify --method autoencoder`` calls); ``k`` None: chosen by BIC.

    ``params``: :class:`EmbedParams` fields (``classes`` is ``k``), and optionally ``out``
    (a directory to write the full ``cryoflow embed`` output to) and ``overwrite``. Without
    ``client`` a local cluster is started for the call.
    """
    out = params.pop("out", None)
    overwrite = bool(params.pop("overwrite", False))
    config = EmbedParams(**{**params, "classes": None if k is None else int(k)})
    if client is None:
        from cryoflow.pipelines.cluster.connect import ClusterConfig, connect

        resources = _resources(config.device)
        with connect(ClusterConfig.from_env(resources=resources), quiet=True) as own:
            res = embed(own, store, set_name, config, out, overwrite=overwrite)
    else:
        res = embed(client, store, set_name, config, out, overwrite=overwrite)
    return res.table.drop(
        columns=[c for c in res.table.columns if c.startswith("z") and c[1:].isdigit()]
    )


def prepare(store: Any, set_name: str, out: str | Path, overwrite: bool) -> None:
    """What the command checks before any cluster starts: the output directory may be
    written, and the set exists (``NodeNotFoundError`` naming it otherwise)."""
    from cryoflow.io.particleset import read_particle_table
    from cryoflow.pipelines.stages.embed_outputs import check_out

    check_out(out, overwrite)
    read_particle_table(store, set_name)


def run(
    client: Any,
    store: Any,
    set_name: str,
    params: EmbedParams,
    out: str | Path,
    *,
    overwrite: bool = False,
) -> EmbedResult:
    """The thin eager entry point (``cryoflow embed``)."""
    return embed(client, store, set_name, params, out, overwrite=overwrite)
