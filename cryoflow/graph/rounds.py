"""The lazy graph of one round of a dataset-level map-reduce (never computes).

``n_items`` items (particles, tilt images, ...) are cut into batches of ``batch_size``; one
task per batch runs ``map_batch(state, start, stop)`` and returns a partial result; the
partials are combined by ``combine(left, right)`` in a fixed binary tree (pairs in item order,
level by level), so the result never depends on which task finished first: the same state and
items give bit-identical results however the round is scheduled or resumed. ``state`` (the
round's broadcast input, e.g. two half-set references) is one task of the graph that every
batch task depends on, so each worker receives it once.

Memory: a batch task holds its own items and one partial; a combine task two partials. Dask
orders the tasks so that partials are combined as soon as both exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

__all__ = ["batches", "map_reduce_graph"]


def batches(n_items: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n_items)`` in order, ``batch_size`` each."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [(a, min(n_items, a + batch_size)) for a in range(0, int(n_items), int(batch_size))]


def map_reduce_graph(
    state: Any,
    n_items: int,
    batch_size: int,
    map_batch: Callable[[Any, int, int], Any],
    combine: Callable[[Any, Any], Any],
    *,
    name: str = "round",
) -> Delayed:
    """One round, lazily: ``combine`` over ``map_batch(state, a, b)`` for every batch.

    Parameters
    ----------
    state : any picklable value
        The round's input, shared by every batch task.
    n_items, batch_size : int
    map_batch : callable ``(state, start, stop) -> partial``
        Runs on a worker and reads its own items (from the store); must be deterministic.
    combine : callable ``(partial, partial) -> partial``
        Associative; applied in a fixed tree.
    name : str
        Task-name prefix (``<name>-map-<token>``, ``<name>-combine-<token>``).

    Returns
    -------
    dask.delayed.Delayed computing to the combined partial (``None`` when there are no items).
    """
    token = tokenize(state, n_items, batch_size, map_batch, combine)
    state_key = f"{name}-state-{token}"
    dsk: dict[Any, Any] = {state_key: state}
    level: list[Any] = []
    for i, (a, b) in enumerate(batches(n_items, batch_size)):
        dsk[(f"{name}-map-{token}", i)] = (map_batch, state_key, a, b)
        level.append((f"{name}-map-{token}", i))
    depth = 0
    while len(level) > 1:
        nxt: list[Any] = []
        for j in range(0, len(level) - 1, 2):
            node = (f"{name}-combine-{token}", depth, j // 2)
            dsk[node] = (combine, level[j], level[j + 1])
            nxt.append(node)
        if len(level) % 2:
            nxt.append(level[-1])  # the odd one out moves up unchanged (order kept)
        level, depth = nxt, depth + 1
    out = f"{name}-{token}"
    dsk[out] = level[0] if level else None
    return Delayed(out, HighLevelGraph.from_collections(out, dsk, dependencies=()))
