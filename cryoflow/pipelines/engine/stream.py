"""The per-tomogram stream of ``cryoflow run``: resumable, fault tolerant, bounded.

How a stream proceeds
---------------------
1. Tomograms stream through the cluster: at most ``max_in_flight`` are active at once; each
   runs its steps in order, and the chunks of its current step are explicit futures (one
   small graph per (tomogram, step), so the scheduler never holds one huge graph).
2. A step's results are written chunk by chunk into staging nodes whose names are derived
   from the step's *run token* (parameters + input identities), so a rerun finds and reuses
   them. Each chunk write is a pure function of inputs and parameters (writing twice changes
   nothing; Zarr writes each chunk atomically).
3. When a chunk's future finishes, its completion is recorded in the store
   (``runs/progress/<tomogram>/<step>.<key>.<token>``, one byte per chunk) and the future is
   released. Once every chunk is recorded, the plan's ``finish`` adds its tables and
   attributes, the nodes get their provenance, are marked complete and are published under
   their final names: the step is complete last.
4. On a rerun, published results with the same run token are skipped; a staging node is
   resumed from its recorded chunks; everything else is recomputed.
5. A tomogram whose task fails (after ``retries``) is recorded as failed with the reason;
   the others go on. So is one whose step finishes no chunk within its time limit
   (:mod:`cryoflow.pipelines.engine.watch`: a hung task).
6. When the client loses the scheduler, the run stops with
   :class:`~cryoflow.errors.SchedulerLostError` ("scheduler lost; rerun to resume"): no
   tomogram is blamed, and what was recorded is kept for the rerun.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from cryoflow.errors import CryoflowError, SchedulerLostError, StalledTaskError, StoreError
from cryoflow.io import nodes
from cryoflow.io.layout import COMPRESSOR, RESULTS, TOMOGRAMS, check_dtype, open_dataset
from cryoflow.io.nodes import ATTR
from cryoflow.io.results import chunked_array
from cryoflow.io.writer import store_blocks
from cryoflow.pipelines.engine.config import PipelineConfig, StepConfig
from cryoflow.pipelines.engine.memory import explain_killed
from cryoflow.pipelines.engine.provenance import make_record, run_token
from cryoflow.pipelines.engine.summary import PROGRESS, RUNS, RunSummary
from cryoflow.pipelines.engine.watch import StallWatch, hung_tasks, restart_workers
from cryoflow.pipelines.stages import get_stage
from cryoflow.pipelines.stages.base import Finished, Output, Plan

__all__ = ["TomogramStream"]

POLL_S = 1.0  # how often (seconds) the stream looks for stalled tomograms


@dataclass
class _Target:
    """One result of a unit: its staging array and where its chunks start in the progress array."""

    output: Output
    staging_leaf: str
    array: zarr.Array
    first_chunk: int


@dataclass
class _Unit:
    """One (tomogram, step) in progress: every result of the step, one progress array."""

    tomogram: str
    step: StepConfig
    plan: Plan
    token: str
    parent: zarr.Group
    targets: list[_Target]
    progress: zarr.Array
    pending: dict[Any, int] = field(default_factory=dict)  # future key -> chunk number
    started: float = field(default_factory=time.perf_counter)
    last_progress: float = field(default_factory=time.perf_counter)  # submit or last chunk


def _n_chunks(data: Any) -> int:
    return int(np.prod([len(c) for c in data.chunks]))


class TomogramStream:
    """Streams tomograms through a run of per-tomogram steps (see the module docstring).

    Updates ``summary`` (counts, failures) in place; :meth:`run` returns when every tomogram
    has finished or failed.
    """

    def __init__(
        self,
        config: PipelineConfig,
        steps: list[StepConfig],
        client: Any,
        summary: RunSummary,
        *,
        quiet: bool,
        log: Any,
        on_chunk: Any = None,
    ) -> None:
        self.config = config
        self.steps = steps
        self.client = client
        self.summary = summary
        self.run_id = summary.run_id
        self.on_chunk = on_chunk
        self.recorded = 0
        self.store = config.dataset.store
        self.quiet = quiet
        self.log = log
        self.root: Any = open_dataset(self.store, mode="r+")
        self.futures: dict[Any, tuple[_Unit, Any]] = {}
        self.active: dict[str, _Unit] = {}
        self.next_step: dict[str, int] = {}
        self.watch = StallWatch(config.cluster.stall_timeout_s)

    # -- planning ----------------------------------------------------------------------
    def _stage(self, tomogram: str, step: StepConfig) -> _Unit | None:
        """Plan ``step`` for ``tomogram``; None when its published results are all current."""
        planner = get_stage(step.name).plan
        assert planner is not None  # a stream holds per-tomogram steps only
        plan = planner(self.store, tomogram, step.params)
        params = step.param_dict()
        token = run_token(step.name, params, plan.inputs, plan.checkpoints)
        base = f"{TOMOGRAMS}/{tomogram}/{RESULTS}/{plan.step}"
        if all(self._current(f"{base}/{out.key}", token) for out in plan.outputs) and all(
            self._current(f"{base}/{key}", token, table=True) for key in plan.tables
        ):
            return None
        parent = self.root.require_group(base)
        targets: list[_Target] = []
        all_reused = True
        first = 0
        for out in plan.outputs:
            leaf = f"{nodes.TMP_PREFIX}{out.key}-{token[:16]}"
            arr, reused = self._open_or_create(parent, leaf, out, plan, token, params, tomogram)
            all_reused &= reused
            targets.append(_Target(out, leaf, arr, first))
            first += _n_chunks(out.data)
        # recorded progress only counts for the staging nodes it was recorded against
        progress = self._progress(tomogram, plan, token, first, fresh=not all_reused)
        return _Unit(tomogram, step, plan, token, parent, targets, progress)

    def _current(self, path: str, token: str, *, table: bool = False) -> bool:
        """Whether the node at ``path`` is published, complete, not stale and of run ``token``
        (a table records the token in its provenance)."""
        meta = nodes.read_raw_metadata(self.root, path)
        if meta is None:
            return False
        attrs = (meta.get("attributes", {}) or {}).get(ATTR, {}) or {}
        written = (
            (attrs.get("provenance") or {}).get("run_token") if table else attrs.get("write_id")
        )
        return bool(attrs.get("complete")) and written == token and not attrs.get(nodes.STALE)

    def _open_or_create(
        self,
        parent: zarr.Group,
        leaf: str,
        out: Output,
        plan: Plan,
        token: str,
        params: dict[str, Any],
        tomogram: str,
    ) -> tuple[zarr.Array, bool]:
        """The staging array (reused when a run with this token left it) and whether reused."""
        dtype = check_dtype(out.data.dtype, f"{plan.step} result {out.key!r} of {tomogram!r}")
        shape = tuple(int(s) for s in out.data.shape)
        chunk_shape = tuple(int(c[0]) if c else 1 for c in out.data.chunks)
        if leaf in parent:
            arr: Any = parent[leaf]
            if (
                isinstance(arr, zarr.Array)
                and arr.shape == shape
                and arr.dtype == dtype
                and arr.chunks == chunk_shape
            ):
                return arr, True  # resume: same token, same layout
        nodes.delete_node(parent, leaf)  # a half-created node (no metadata) or a stale one
        record = make_record(
            plan.step, params, plan.inputs, checkpoints=plan.checkpoints, token=token
        )
        meta: Any = {
            "kind": "result",
            "complete": False,
            "write_id": token,
            "provenance": record,
            "attrs": dict(out.attrs),
        }
        arr = chunked_array(parent, leaf, shape, dtype, chunk_shape, out.dims, {ATTR: meta})
        return arr, False

    def _progress(
        self, tomogram: str, plan: Plan, token: str, n_chunks: int, *, fresh: bool
    ) -> zarr.Array:
        group: Any = self.root.require_group(f"{RUNS}/{PROGRESS}/{tomogram}")
        name = f"{plan.step}.{plan.key}.{token[:16]}"
        if not fresh and name in group and group[name].shape == (n_chunks,):
            return group[name]
        return group.create_array(
            name,
            shape=(n_chunks,),
            dtype="uint8",
            chunks=(1,),
            fill_value=0,
            compressors=COMPRESSOR,
            overwrite=True,
        )

    # -- submitting ----------------------------------------------------------------------
    def _submit(self, unit: _Unit) -> None:
        done = np.asarray(unit.progress[...]) > 0
        # one idempotent write task per chunk, numbered in C order per result, results in plan
        # order, like the progress array; "<step>:<tomogram>" is one word for Dask's key_split,
        # so the dashboard groups per tomogram
        writes = [
            w
            for t in unit.targets
            for w in store_blocks(t.output.data, t.array, name=f"{unit.plan.step}:{unit.tomogram}")
        ]
        numbers = [n for n in range(len(writes)) if not done[n]]
        tasks = [writes[n] for n in numbers]
        skipped = len(done) - len(tasks)
        if skipped and not self.quiet:
            self.log(
                f"cryoflow: {unit.step.name} {unit.tomogram}: resuming, {skipped}/{len(done)} "
                "chunks already written"
            )
        if unit.plan.setup is not None and tasks:
            unit.plan.setup(self.client)
        futures = self.client.compute(
            tasks, retries=self.config.cluster.retries, resources=unit.plan.resources
        )
        unit.last_progress = time.perf_counter()
        for fut, number in zip(futures, numbers, strict=True):
            unit.pending[fut.key] = number
            self.futures[fut.key] = (unit, fut)
            self.ac.add(fut)
        self.summary.steps[unit.step.name].chunks += len(tasks)

    def _advance(self, tomogram: str) -> None:
        """Move ``tomogram`` to its next step that has work, or finish it."""
        steps = self.steps
        while self.next_step[tomogram] < len(steps):
            step = steps[self.next_step[tomogram]]
            self.next_step[tomogram] += 1
            t0 = time.perf_counter()
            try:
                unit = self._stage(tomogram, step)
            except Exception as exc:  # any planning failure fails this tomogram only
                self._fail(tomogram, step.name, exc)
                return
            if unit is None:
                self.summary.steps[step.name].skipped += 1
                continue
            unit.started = t0
            self.active[tomogram] = unit
            try:
                self._submit(unit)
            except Exception as exc:  # a failing setup (e.g. a model that will not load)
                self._fail(tomogram, step.name, exc)
                return
            if not unit.pending:
                try:
                    self._complete(unit)
                except CryoflowError as exc:
                    self._fail(tomogram, step.name, exc)
            return
        self.active.pop(tomogram, None)

    def _fill(self) -> None:
        while self.queue and len(self.active) < self.config.cluster.max_in_flight:
            tomogram = self.queue.popleft()
            self.next_step[tomogram] = 0
            self._advance(tomogram)

    # -- results -------------------------------------------------------------------------
    def _complete(self, unit: _Unit) -> None:
        """Every chunk recorded: mark complete, publish every result, drop progress, go on."""
        from cryoflow.io.lineage import mark_dependents_stale

        done = self._finish(unit)
        for target in unit.targets:
            meta: dict[str, Any] = dict(target.array.attrs[ATTR])  # type: ignore[arg-type]
            meta["attrs"] = {**meta.get("attrs", {}), **done.attrs.get(target.output.key, {})}
            meta["complete"] = True
            meta["provenance"] = {**meta["provenance"], "run_id": self.run_id}
            target.array.attrs[ATTR] = meta
        for target in unit.targets:
            key = target.output.key
            if nodes.exists(unit.parent, key):
                # results derived from the node being replaced are refused by readers from now on
                mark_dependents_stale(
                    self.store, unit.tomogram, f"{RESULTS}/{unit.plan.step}/{key}"
                )
            nodes.publish(unit.parent, target.staging_leaf, key, overwrite=True)
        progress_group = self.root[f"{RUNS}/{PROGRESS}/{unit.tomogram}"]
        nodes.delete_node(progress_group, unit.progress.basename)
        stats = self.summary.steps[unit.step.name]
        stats.computed += 1
        stats.seconds += time.perf_counter() - unit.started
        self.active.pop(unit.tomogram, None)
        self._advance(unit.tomogram)

    def _finish(self, unit: _Unit) -> Finished:
        """The plan's end-of-step tables (stored now, before publishing) and attributes, from
        the staged arrays."""
        from cryoflow.io.results import write_table

        if unit.plan.finish is None:
            return Finished()
        staged = {t.output.key: t.array for t in unit.targets}
        try:
            done = unit.plan.finish(self.client, staged)
        except CryoflowError:
            raise
        except Exception as exc:  # a failing reduction fails this tomogram only
            raise StoreError(f"{unit.tomogram}: {unit.plan.step} tables: {exc}") from exc
        record = make_record(
            unit.plan.step,
            unit.step.param_dict(),
            unit.plan.inputs,
            checkpoints=unit.plan.checkpoints,
            token=unit.token,
        )
        for key in unit.plan.tables:
            write_table(
                self.store,
                unit.tomogram,
                unit.plan.step,
                key,
                done.tables[key],
                provenance={**record, "run_id": self.run_id},
                overwrite=True,
            )
        return done

    def _fail(self, tomogram: str, step: str, exc: BaseException) -> None:
        reason = f"{step}: {type(exc).__name__}: {exc}".strip()
        unit = self.active.get(tomogram)
        if unit is not None and type(exc).__name__ == "KilledWorker":  # memory, most likely
            reason = f"{step}: {explain_killed(unit.plan, self.config.cluster.memory_limit, exc)}"
        self.summary.failures[tomogram] = reason
        self.summary.steps[step].failed += 1
        self.log(f"cryoflow: FAILED {tomogram} ({reason})")
        unit = self.active.pop(tomogram, None)
        if unit is not None:
            keys = list(unit.pending)
            futs = [self.futures.pop(k)[1] for k in keys if k in self.futures]
            unit.pending.clear()
            if futs:
                self.client.cancel(futs)

    def _on_done(self, fut: Any) -> None:
        entry = self.futures.get(fut.key)
        if entry is None:
            return  # a cancelled future of a failed tomogram
        unit, _ = entry
        if fut.status in ("lost", "pending"):
            # it finished on a worker that has died since: the scheduler recomputes it (the
            # write is idempotent); it comes back through ``as_completed`` when done again
            self.ac.add(fut)
            return
        del self.futures[fut.key]
        if fut.status == "cancelled" and self._scheduler_lost(fut):
            raise SchedulerLostError(
                f"scheduler lost ({self.config.cluster.scheduler or 'local cluster'}); "
                f"rerun to resume: the chunks written so far are recorded in {self.store}"
            )
        if fut.status != "finished":
            try:
                exc = fut.exception()
            except Exception as err:  # CancelledError and friends
                exc = err
            if exc is None:
                exc = RuntimeError(f"the chunk task ended with status {fut.status!r}")
            self._fail(unit.tomogram, unit.step.name, exc)
            self._fill()
            return
        number = unit.pending.pop(fut.key)
        unit.progress[number] = 1  # recorded in the store...
        now = time.perf_counter()
        self.watch.progressed(unit.step.name, now - unit.last_progress)
        unit.last_progress = now
        fut.release()  # ...then the future (and its result) is let go
        self.recorded += 1
        if self.on_chunk is not None:
            self.on_chunk(unit.tomogram, unit.step.name, self.recorded)
        if not unit.pending:
            try:
                self._complete(unit)
            except CryoflowError as exc:
                self._fail(unit.tomogram, unit.step.name, exc)
            self._fill()

    def _scheduler_lost(self, fut: Any) -> bool:
        """Whether a future we did not cancel was cancelled because the client lost the
        scheduler (Distributed cancels every future then, with this reason)."""
        cause = getattr(getattr(fut, "_state", None), "exception", None)
        reason = getattr(cause, "reason", None)
        return reason == "scheduler-connection-lost" or self.client.status != "running"

    # -- driver --------------------------------------------------------------------------
    def run(self, names: list[str]) -> None:
        """Stream ``names`` through the steps."""
        from distributed import as_completed

        self.queue: deque[str] = deque(names)
        self.ac = as_completed(loop=self.client.loop)
        self._fill()
        checked = time.perf_counter()
        while not self.ac.is_empty():
            ready = self.ac.next_batch(block=False)
            for fut in ready:
                self._on_done(fut)
            del ready
            if time.perf_counter() - checked > POLL_S:
                self._stalls()
                checked = time.perf_counter()
            time.sleep(0.02)

    def _stalls(self) -> None:
        """Fail every tomogram with a task executing longer than its step's limit; restart
        the workers running them (:mod:`cryoflow.pipelines.engine.watch`)."""
        now = time.perf_counter()
        for unit in [u for u in self.active.values() if u.pending]:
            step = unit.step.name
            limit = self.watch.limit(step)
            if now - unit.last_progress <= limit:
                continue
            hung = hung_tasks(self.client, set(unit.pending), limit)
            if not hung:
                continue  # queued behind other work, or the scheduler is going away
            _, task, ran = max(hung, key=lambda h: h[2])
            self._fail(unit.tomogram, step, StalledTaskError(self.watch.stalled(step, task, ran)))
            restart_workers(self.client, sorted({w for w, _, _ in hung}), self.log)
            self._fill()
