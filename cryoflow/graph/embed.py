"""The lazy graph of ``cryoflow embed`` over a particle set's stored batches (never computes).

The stage (:mod:`cryoflow.pipelines.stages.embed`) builds its steps here and computes them on
its client:

- :func:`stack_blocks`: one lazy block per stored batch of the set's stack, so a worker reads
  its own particles from the store;
- :func:`consensus_graph` / :func:`class_sums_graph`: per-batch, per-half Fourier sums
  (:func:`class_sums`) added in a fixed tree (:func:`tree_sum`);
- :func:`prepare_graph`: the training sample's targets and wedges, batch by batch
  (:func:`prepare`); the training itself (:func:`train`) is one task the stage submits;
- :func:`embed_graph`: latent points of every batch (:func:`embed`), the network coming from
  the worker's :class:`~cryoflow.models.loader.ModelPlugin` (tasks carry only the handle).

Every task takes a batch ``(n, B, B, B)`` as read from the set's stack; results are NumPy (or
the averaging kernels' :class:`~cryoflow.kernels.class_average.ClassSums`), never torch state
tied to a device. ``inputs`` is the stage's per-set inputs (``n`` particles; ``batch(i)``:
batch ``i``'s ``(euler, shifts, tilt_ranges, halves)``; ``bounds[i]``: its rows
``(start, stop)``).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from dask import delayed

from cryoflow.kernels.class_average import ClassSums, accumulate_classes


def class_sums(
    particles: np.ndarray,
    euler: np.ndarray,
    shifts: np.ndarray,
    tilt_ranges: np.ndarray,
    halves: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    device: str,
) -> ClassSums:
    """Per-class, per-half Fourier sums of one batch (``labels`` 0..K-1; the consensus
    average is one class)."""
    return accumulate_classes(
        np.asarray(particles, dtype=np.float32),
        euler,
        shifts,
        tilt_ranges,
        labels,
        n_classes,
        half_ids=halves,
        device=device,
    )


def prepare(
    particles: np.ndarray,
    euler: np.ndarray,
    shifts: np.ndarray,
    tilt_ranges: np.ndarray,
    rows: np.ndarray,
    frame: Any,
    average_work: np.ndarray,
    device: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, wedges)`` of the batch's rows ``rows`` on the working grid (training
    inputs, :func:`cryoflow.kernels.conformation_input.prepare_batch`)."""
    from cryoflow.kernels.conformation_input import prepare_batch

    b = frame.work_box
    if len(rows) == 0:
        shape = (0, b, b, b // 2 + 1)
        return np.zeros(shape, np.complex64), np.zeros(shape, np.float32)
    prep = prepare_batch(
        np.asarray(particles, dtype=np.float32)[rows],
        euler[rows],
        shifts[rows],
        tilt_ranges[rows],
        frame,
        average_work,
        device=device,
    )
    return prep.targets.cpu().numpy(), prep.wedges.cpu().numpy()


def train(
    frame: Any, average_work: np.ndarray, params: Any, *prepared: tuple[np.ndarray, np.ndarray]
) -> tuple[dict[str, Any], dict[str, Any], list[float]]:
    """Train on the prepared batches (one worker; its GPU when ``params.device`` is CUDA).

    Returns the state_dict (CPU tensors), the checkpoint config as a dict and the loss per
    step.
    """
    import torch

    from cryoflow.models.embed_train import train_embedding

    targets = torch.as_tensor(np.concatenate([p[0] for p in prepared]))
    wedges = torch.as_tensor(np.concatenate([p[1] for p in prepared]))
    trained = train_embedding(targets, wedges, frame, average_work, params)
    state = {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
    return state, trained.config.to_dict(), list(trained.history)


def embed(
    handle: Any,
    particles: np.ndarray,
    euler: np.ndarray,
    shifts: np.ndarray,
    tilt_ranges: np.ndarray,
) -> np.ndarray:
    """Latent points ``(n, D)`` of one batch; the network comes from the worker's plugin."""
    from cryoflow.models.embed import embed_batch

    return embed_batch(handle, np.asarray(particles, dtype=np.float32), euler, shifts, tilt_ranges)


def tree_sum(parts: list[Any]) -> Any:
    """One delayed sum of delayed partials, added pairwise in item order (a fixed tree, so the
    result does not depend on scheduling)."""
    if not parts:
        raise ValueError("nothing to sum")
    level = list(parts)
    while len(level) > 1:
        nxt = [
            delayed(operator.add, pure=True)(level[i], level[i + 1])
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def stack_blocks(data: Any) -> list[Any]:
    """One delayed block per stored batch (first-axis chunk) of a particle stack's Dask array."""
    return list(data.to_delayed().ravel())


def class_sums_graph(
    blocks: list[Any], inputs: Any, labels: np.ndarray, n_classes: int, device: str
) -> Any:
    """One delayed :class:`ClassSums` of the whole set (``labels`` 0..K-1 in stack order)."""
    parts = [
        delayed(class_sums, pure=True)(
            blk, *inputs.batch(i), labels[slice(*inputs.bounds[i])], n_classes, device
        )
        for i, blk in enumerate(blocks)
    ]
    return tree_sum(parts)


def consensus_graph(blocks: list[Any], inputs: Any, device: str) -> Any:
    """One delayed :class:`ClassSums` with the whole set as one class (the consensus halves)."""
    return class_sums_graph(blocks, inputs, np.zeros(int(inputs.n), int), 1, device)


def prepare_graph(
    blocks: list[Any],
    inputs: Any,
    chosen: np.ndarray,
    frame: Any,
    average_work: np.ndarray,
    device: str,
) -> list[Any]:
    """Delayed ``(targets, wedges)`` of the sorted set rows ``chosen``, one per batch that
    holds any of them."""
    prepared = []
    for i, blk in enumerate(blocks):
        a, b = inputs.bounds[i]
        rows = chosen[(chosen >= a) & (chosen < b)] - a
        if len(rows):
            euler, shifts, tr, _ = inputs.batch(i)
            prepared.append(
                delayed(prepare, pure=True)(
                    blk, euler, shifts, tr, rows, frame, average_work, device
                )
            )
    return prepared


def embed_graph(handle: Any, blocks: list[Any], inputs: Any) -> list[Any]:
    """Delayed latent points ``(n, D)`` of every batch, in stack order."""
    return [
        delayed(embed, pure=True)(handle, blk, *inputs.batch(i)[:3]) for i, blk in enumerate(blocks)
    ]
