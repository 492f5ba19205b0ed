"""Dataset-level steps: iterative map-reduce rounds over a whole dataset, resumable per round.

A stage whose unit is the dataset (``Stage(dataset=...)``) plans :class:`Rounds`: ``n_items``
items (tilt images, particles of a set, ...) in batches of ``batch_size``, ``rounds`` rounds,
and four functions:

- ``start()`` -> the round-0 state (client side; e.g. two half-set references);
- ``map(state, start, stop)`` -> a partial result of items ``start:stop`` (a worker task that
  reads its own items from the store; e.g. partial Fourier sums and weights of a batch of
  particles aligned to the state's references, plus their orientations);
- ``combine(a, b)`` -> one partial of two (associative; e.g. add sums, concatenate rows);
- ``update(state, partial, round)`` -> the next state (client side; e.g. new references from
  the sums, low-passed at the half sets' FSC).

A state is a ``{name: ndarray}`` mapping (per-item results, such as orientations, are arrays
of length ``n_items``). How a round runs (:func:`run_rounds`):

1. the state is put in the round's graph once (:func:`cryoflow.graph.rounds.map_reduce_graph`):
   every batch task depends on it, so each worker receives it once; the partials are combined
   in a fixed tree, so a round's result does not depend on scheduling;
2. the combined partial comes back to the client, ``update`` makes the next state, and the
   state is recorded in the store as ``round-<k>`` (written whole, then renamed: a round is
   recorded completely or not at all) under the staging node
   ``results/<step>/.tmp-rounds-<token16>`` at the dataset's root, where ``token`` is the run
   token of the step, its parameters and the identities of everything it reads;
3. a killed run resumes from its last recorded round: the next round starts from exactly the
   recorded state, so the result equals an uninterrupted run's; a run with other parameters or
   inputs has another token and starts afresh;
4. after the last round every state array is published as ``results/<step>/<name>`` (with the
   run token as its ``write_id``; a rerun with the same token skips the step) and the records
   are deleted.

Memory is bounded by the batch size (one batch and one partial per task) and the state, not by
the number of items, which only adds tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cryoflow.errors import CryoflowError, SchedulerLostError, StoreError
from cryoflow.pipelines.engine.config import PipelineConfig, StepConfig
from cryoflow.pipelines.engine.provenance import make_record, run_token
from cryoflow.pipelines.engine.summary import RunSummary

__all__ = ["Rounds", "RoundsDone", "run_dataset_step", "run_rounds"]

State = dict[str, np.ndarray]
RECORD = "round"


@dataclass(frozen=True)
class Rounds:
    """The plan of a dataset-level step (see the module docstring).

    Attributes
    ----------
    step : str
        Results land at ``results/<step>/<name>`` of the dataset.
    outputs : tuple of str
        The names of the state arrays (each published as ``results/<step>/<name>``).
    n_items, batch_size, rounds : int
    inputs : dict
        Store path (or file) -> identity of everything the step reads (run token).
    start, map, combine, update : callables
    dims : dict
        Dimension names of each state array (default ``d0, d1, ...``).
    attrs : dict
        JSON attributes stored with every published array.
    resources : dict or None
        Dask resources each batch task needs (``{"GPU": 1}``).
    setup : callable or None
        ``setup(client)`` before the first round (e.g. registering a worker plugin).
    parameters : dict or None
        What the run token hashes and provenance records instead of the step's whole
        parameters (e.g. only those a training depends on, so that changing how its result
        is applied does not train again).
    """

    step: str
    outputs: tuple[str, ...]
    n_items: int
    batch_size: int
    rounds: int
    inputs: dict[str, str]
    start: Callable[[], State]
    map: Callable[[State, int, int], Any]
    combine: Callable[[Any, Any], Any]
    update: Callable[[State, Any, int], State]
    dims: dict[str, tuple[str, ...]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, float] | None = None
    setup: Callable[[Any], None] | None = None
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class RoundsDone:
    """What :func:`run_rounds` did: the final state, the rounds computed now, the round it
    resumed after (0: from the start), whether the published result was current (skipped)."""

    state: State
    computed: int
    resumed_after: int
    skipped: bool


# ---------------------------------------------------------------------------- records
def _group(root: Any, path: str) -> Any:
    return root.require_group(path)


def _as_state(values: dict[str, Any], outputs: tuple[str, ...]) -> State:
    """A state as stored: every array at least 1-D, exactly the plan's outputs."""
    missing = sorted(set(outputs) - set(values))
    if missing:
        raise StoreError(f"a round's state lacks {', '.join(missing)}")
    return {key: np.atleast_1d(np.asarray(values[key])) for key in outputs}


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(1, int(s)) for s in shape)


def _write_state(parent: Any, leaf: str, state: State, attrs: dict[str, Any]) -> None:
    """``state`` as a new group ``leaf`` of ``parent``, written whole, then renamed into place."""
    from cryoflow.io import nodes
    from cryoflow.io.nodes import ATTR
    from cryoflow.io.results import chunked_array

    tmp = nodes.temp_leaf(leaf)
    with nodes.removed_on_error(parent, tmp):
        group = parent.create_group(tmp, attributes={ATTR: {**attrs, "complete": False}})
        for key, value in state.items():
            arr = np.asarray(value)
            dims = tuple(f"d{i}" for i in range(arr.ndim))
            chunked_array(group, key, arr.shape, arr.dtype, _chunks(arr.shape), dims, {})[...] = arr
        group.attrs[ATTR] = {**attrs, "complete": True}
    nodes.publish(parent, tmp, leaf, overwrite=True)


def _read_state(group: Any) -> State:
    from cryoflow.io.chunks import read_checked

    return {key: read_checked(arr) for key, arr in group.arrays()}


def _last_round(staging: Any) -> tuple[int, State | None]:
    """The last complete round recorded under ``staging`` and its state (0, None: none)."""
    from cryoflow.io.nodes import ATTR

    best, state = 0, None
    for name, group in staging.groups():
        if not name.startswith(f"{RECORD}-"):
            continue
        info = group.attrs.get(ATTR, {}) or {}
        k = int(info.get(RECORD, 0))
        if info.get("complete") and k > best:
            best, state = k, _read_state(group)
    return best, state


def _current(root: Any, base: str, keys: list[str], token: str) -> bool:
    from cryoflow.io import nodes
    from cryoflow.io.nodes import ATTR

    for key in keys:
        meta = nodes.read_raw_metadata(root, f"{base}/{key}")
        info = ((meta or {}).get("attributes", {}) or {}).get(ATTR, {}) or {}
        if not (info.get("complete") and info.get("write_id") == token):
            return False
    return bool(keys)


def _publish(root: Any, base: str, plan: Rounds, state: State, record: dict[str, Any]) -> None:
    """Every state array as ``results/<step>/<key>`` (one node each, published by rename)."""
    from cryoflow.io import nodes
    from cryoflow.io.nodes import ATTR
    from cryoflow.io.results import chunked_array

    parent = _group(root, base)
    for key, value in state.items():
        arr = np.asarray(value)
        dims = plan.dims.get(key) or tuple(f"d{i}" for i in range(arr.ndim))
        meta = {
            "kind": "result",
            "complete": True,
            "write_id": record["run_token"],
            "provenance": record,
            "attrs": dict(plan.attrs),
        }
        tmp = nodes.temp_leaf(key)
        with nodes.removed_on_error(parent, tmp):
            out = chunked_array(parent, tmp, arr.shape, arr.dtype, _chunks(arr.shape), dims, {})
            out[...] = arr
            out.attrs[ATTR] = meta
        nodes.publish(parent, tmp, key, overwrite=True)


# ---------------------------------------------------------------------------- driver
def _run_from(
    client: Any,
    plan: Rounds,
    staging: Any,
    done: int,
    state: State | None,
    retries: int | None,
    log: Callable[[str], None] | None,
    on_round: Callable[[int], None] | None,
) -> tuple[int, State]:
    """Rounds ``done + 1 ..`` of ``plan`` from ``state`` (None: ``plan.start()``), each
    recorded in ``staging``; the number computed and the last state."""
    from cryoflow.graph.rounds import map_reduce_graph

    if state is None:
        state = _as_state(plan.start(), plan.outputs)
    elif log is not None:
        log(f"cryoflow: {plan.step}: resuming after round {done} of {plan.rounds}")
    if plan.setup is not None and done < plan.rounds:
        plan.setup(client)
    computed = 0
    for k in range(done + 1, plan.rounds + 1):
        graph = map_reduce_graph(
            state, plan.n_items, plan.batch_size, plan.map, plan.combine, name=f"{plan.step}-{k}"
        )
        try:
            partial = client.compute(graph, resources=plan.resources, retries=retries).result()
        except BaseException as exc:  # Distributed's cancellation is no Exception
            if getattr(exc, "reason", None) == "scheduler-connection-lost":
                raise SchedulerLostError(
                    f"scheduler lost during round {k} of {plan.step}; rerun to resume after "
                    f"round {k - 1}"
                ) from None
            raise
        state = _as_state(plan.update(state, partial, k), plan.outputs)
        _write_state(staging, f"{RECORD}-{k:04d}", state, {"kind": RECORD, RECORD: k})
        computed += 1
        if log is not None:
            log(f"cryoflow: {plan.step}: round {k} of {plan.rounds} recorded")
        if on_round is not None:
            on_round(k)
    return computed, state


def run_rounds(
    client: Any,
    store: object,
    plan: Rounds,
    parameters: dict[str, Any],
    *,
    log: Callable[[str], None] | None = None,
    on_round: Callable[[int], None] | None = None,
    run_id: str | None = None,
    retries: int | None = None,
) -> RoundsDone:
    """Run ``plan``'s rounds on ``client``, resuming from the store; publish the final state.

    ``on_round(k)`` is called after round ``k`` is recorded (progress displays, tests);
    ``retries``: extra attempts of a failing task (None: the client's default,
    :mod:`cryoflow.pipelines.cluster.retry`). A lost scheduler raises
    :class:`~cryoflow.errors.SchedulerLostError` (a rerun resumes after the last round).
    """
    from cryoflow.io import nodes
    from cryoflow.io.layout import RESULTS, open_dataset

    if plan.parameters is not None:
        parameters = plan.parameters
    token = run_token(plan.step, parameters, plan.inputs)
    root: Any = open_dataset(store, mode="r+")
    base = f"{RESULTS}/{plan.step}"
    if _current(root, base, list(plan.outputs), token):
        return RoundsDone({}, 0, plan.rounds, skipped=True)
    staging_leaf = f"{nodes.TMP_PREFIX}rounds-{token[:16]}"
    staging = _group(root, f"{base}/{staging_leaf}")
    done, state = _last_round(staging)
    try:
        computed, state = _run_from(client, plan, staging, done, state, retries, log, on_round)
    except BaseException:
        if _last_round(staging)[1] is None:  # nothing recorded: leave no staging behind
            nodes.delete_node(_group(root, base), staging_leaf)
        raise
    record = make_record(plan.step, parameters, plan.inputs, token=token)
    record["run_id"] = run_id
    _publish(root, base, plan, state, record)
    nodes.delete_node(_group(root, base), staging_leaf)
    return RoundsDone(state, computed, done, skipped=False)


def run_dataset_step(
    config: PipelineConfig,
    step: StepConfig,
    client: Any,
    summary: RunSummary,
    names: list[str],
    *,
    quiet: bool,
    log: Any,
    on_chunk: Any = None,
    train: bool = False,
) -> None:
    """A dataset-level step of ``cryoflow run`` over ``names`` (the tomograms that have not
    failed); its failure is recorded under ``(dataset) <step>`` and the run goes on.

    ``train``: the step is the dataset-level training of a per-tomogram step
    (``Stage.train``), run before its plans. When it fails every tomogram of ``names`` fails
    that step too: its plans would have no trained network to apply.
    """
    from cryoflow.pipelines.stages import get_stage

    stage = get_stage(step.name)
    planner = stage.train if train else stage.dataset
    assert planner is not None
    stats = summary.steps[step.name]
    t0 = time.perf_counter()
    try:
        plan = planner(config.dataset.store, names, step.params)
        done = None
        if plan is not None:  # None: nothing to train (e.g. a given checkpoint)
            done = run_rounds(
                client,
                config.dataset.store,
                plan,
                step.param_dict(),
                log=None if quiet else log,
                on_round=(lambda k: on_chunk("", step.name, k)) if on_chunk is not None else None,
                run_id=summary.run_id,
                retries=config.cluster.retries,
            )
    except SchedulerLostError:
        raise  # the run stops: nothing of the dataset failed
    except (CryoflowError, StoreError, OSError, ValueError, RuntimeError) as exc:
        reason = f"{step.name}: {type(exc).__name__}: {exc}"
        summary.failures[f"(dataset) {step.name}"] = reason
        stats.failed += 1
        log(f"cryoflow: FAILED {step.name} ({reason})")
        for name in names if train else ():
            summary.failures[name] = (
                f"{step.name}: not applied, its training over the dataset failed "
                f"(see '(dataset) {step.name}')"
            )
        return
    if done is None:
        return
    if done.skipped:
        stats.skipped += 1
        return
    stats.computed += 1
    stats.chunks += done.computed
    stats.seconds += time.perf_counter() - t0
