"""``cryoflow run``: every step of a pipeline over every tomogram, resumable and fault tolerant.

How a run proceeds
------------------
1. Tomograms stream through the cluster: at most ``max_in_flight`` are active at once; each
   runs its steps in order, and the chunks of its current step are explicit futures (one
   small graph per (tomogram, step), so the scheduler never holds one huge graph).
2. A step's result is written chunk by chunk into a staging node whose name is derived from
   the step's *run token* (parameters + input identities), so a rerun finds and reuses it.
   Each chunk write is a pure function of inputs and parameters (writing twice changes
   nothing; Zarr writes each chunk atomically).
3. When a chunk's future finishes, its completion is recorded in the store
   (``runs/progress/<tomogram>/<step>.<key>.<token>``, one byte per chunk) and the future is
   released. Once every chunk is recorded, the node gets its provenance, is marked complete
   and is published under its final name: the step is complete last.
4. On a rerun, a published result with the same run token is skipped; a staging node is
   resumed from its recorded chunks; everything else is recomputed.
5. A tomogram whose task fails (after ``retries``) is recorded as failed with the reason;
   the others go on. The summary (per step: tomograms, time, failures) is printed and stored
   under ``runs/<run-id>`` in the store.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import zarr

from cryoflow.errors import ConfigError, CryoflowError, NodeNotFoundError, StoreError
from cryoflow.io import nodes
from cryoflow.io.layout import (
    COMPRESSOR,
    RESULTS,
    TOMOGRAMS,
    check_dtype,
    list_tomograms,
    open_dataset,
)
from cryoflow.io.nodes import ATTR
from cryoflow.io.writer import store_blocks
from cryoflow.pipelines.config import PipelineConfig, StepConfig
from cryoflow.pipelines.provenance import make_record, run_token
from cryoflow.pipelines.steps import SOURCE_STEPS, Output, Plan, get_adapter

RUNS = "runs"
PROGRESS = "progress"


# ---------------------------------------------------------------------------- summary
@dataclass
class StepStats:
    computed: int = 0
    skipped: int = 0
    failed: int = 0
    chunks: int = 0
    seconds: float = 0.0


@dataclass
class RunSummary:
    """What a run did: per step counts and time, and every failed tomogram with its reason."""

    run_id: str
    steps: dict[str, StepStats]
    failures: dict[str, str] = field(default_factory=dict)
    tomograms: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "tomograms": self.tomograms,
            "seconds": round(self.seconds, 3),
            "steps": {
                k: {**vars(v), "seconds": round(v.seconds, 3)} for k, v in self.steps.items()
            },
            "failures": dict(self.failures),
            "ok": self.ok,
        }


# ---------------------------------------------------------------------------- one unit of work
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


def _n_chunks(data: Any) -> int:
    return int(np.prod([len(c) for c in data.chunks]))


class _Engine:
    def __init__(
        self, config: PipelineConfig, client: Any, *, quiet: bool, log: Any, on_chunk: Any = None
    ) -> None:
        self.config = config
        self.on_chunk = on_chunk
        self.recorded = 0
        self.client = client
        self.store = config.dataset.store
        self.quiet = quiet
        self.log = log
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.summary = RunSummary(self.run_id, {s.name: StepStats() for s in config.steps})
        self.root: Any = open_dataset(self.store, mode="r+")
        # ingest and simulate make the tomograms: they run first, apart from the stream
        self.steps = [s for s in config.steps if s.name not in SOURCE_STEPS]
        self.futures: dict[Any, tuple[_Unit, Any]] = {}
        self.active: dict[str, _Unit] = {}
        self.next_step: dict[str, int] = {}

    # -- planning ----------------------------------------------------------------------
    def _stage(self, tomogram: str, step: StepConfig) -> _Unit | None:
        """Plan ``step`` for ``tomogram``; None when its published results are all current."""
        plan = get_adapter(step.name)(self.store, tomogram, step.params)
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
        arr = parent.create_array(
            leaf,
            shape=shape,
            dtype=dtype,
            chunks=chunk_shape,
            compressors=COMPRESSOR,
            dimension_names=out.dims,
            attributes={ATTR: meta},
            fill_value=0,
        )
        return arr, False

    def _progress(
        self, tomogram: str, plan: Plan, token: str, n_chunks: int, *, fresh: bool
    ) -> zarr.Array:
        group: Any = self.root.require_group(f"{RUNS}/{PROGRESS}/{tomogram}")
        name = f"{plan.step}.{plan.key}.{token[:16]}"
        if not fresh and name in group and group[name].shape == (n_chunks,):
            return group[name]
        return group.create_array(
            name, shape=(n_chunks,), dtype="uint8", chunks=(1,), fill_value=0, overwrite=True
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

        if unit.plan.finish is not None:
            self._write_tables(unit)
        for target in unit.targets:
            meta: dict[str, Any] = dict(target.array.attrs[ATTR])  # type: ignore[arg-type]
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

    def _write_tables(self, unit: _Unit) -> None:
        """The plan's end-of-step tables, from the staged arrays, stored before publishing."""
        from cryoflow.io.results import write_table

        assert unit.plan.finish is not None
        staged = {t.output.key: t.array for t in unit.targets}
        try:
            tables = unit.plan.finish(self.client, staged)
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
                tables[key],
                provenance={**record, "run_id": self.run_id},
                overwrite=True,
            )

    def _fail(self, tomogram: str, step: str, exc: BaseException) -> None:
        reason = f"{step}: {type(exc).__name__}: {exc}".strip()
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

    # -- driver --------------------------------------------------------------------------
    def run(self, names: list[str], *, started: float | None = None) -> RunSummary:
        """Stream ``names`` through the steps; ``started``: the run's start (source steps ran
        before), a ``time.perf_counter()`` value."""
        from distributed import as_completed

        t0 = time.perf_counter() if started is None else started
        self.summary.tomograms = len(names)
        self.queue: deque[str] = deque(names)
        self.ac = as_completed(loop=self.client.loop)
        self._fill()
        for fut in self.ac:
            self._on_done(fut)
            del fut
        self.summary.seconds = time.perf_counter() - t0
        store_summary(self.root, self.summary)
        return self.summary


def store_summary(root: Any, summary: RunSummary) -> None:
    """Record ``summary`` under ``runs/<run_id>`` and as ``runs``' ``latest``."""
    runs = root.require_group(RUNS)
    runs.create_group(
        summary.run_id, attributes={ATTR: {"kind": "run", "summary": summary.to_dict()}}
    )
    runs.attrs[ATTR] = {"kind": "runs", "latest": summary.run_id}


def read_summary(store: object, run_id: str | None = None) -> dict[str, Any]:
    """The stored summary of run ``run_id`` (default: the latest run)."""
    root: Any = open_dataset(store)
    if RUNS not in root:
        raise NodeNotFoundError(f"{nodes.store_label(store)}: no run recorded in this dataset")
    runs: Any = root[RUNS]
    rid = run_id or (runs.attrs.get(ATTR, {}) or {}).get("latest")
    if not rid or rid not in runs:
        raise NodeNotFoundError(f"{nodes.store_label(store)}: no run {rid!r} recorded")
    return runs[rid].attrs[ATTR]["summary"]


def select_tomograms(config: PipelineConfig) -> list[str]:
    """The tomograms a run processes: the configured ones, else every one in the store."""
    if config.dataset.tomograms is not None:
        return list(config.dataset.tomograms)
    return list_tomograms(config.dataset.store)


def run_pipeline(
    config: PipelineConfig,
    client: Any,
    *,
    quiet: bool = False,
    log: Any = None,
    on_chunk: Any = None,
) -> RunSummary:
    """Run ``config``'s steps over its tomograms on ``client``; return (and store) the summary.

    Parameters
    ----------
    config : PipelineConfig
    client : distributed.Client
    quiet : bool
        No progress messages.
    log : callable, optional
        Receives one-line messages (default: print to stderr unless ``quiet``).
    on_chunk : callable, optional
        ``on_chunk(tomogram, step, n_recorded)`` after each chunk write is recorded (for
        progress displays and tests).
    """
    import sys

    def _log(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    say = log or _log
    started = time.perf_counter()
    failures: dict[str, str] = {}
    source_stats: dict[str, StepStats] = {}
    for step in config.steps:
        if step.name == "ingest":
            failed, source_stats["ingest"] = run_ingest(config, step, client, quiet=quiet, log=say)
            failures.update(failed)
        elif step.name == "simulate":
            source_stats["simulate"] = run_simulate(config, step, client, quiet=quiet, log=say)
    engine = _Engine(config, client, quiet=quiet, log=say, on_chunk=on_chunk)
    engine.summary.steps.update(source_stats)
    engine.summary.failures.update(failures)
    names = [t for t in select_tomograms(config) if t not in failures]
    return engine.run(names, started=started)


def run_simulate(
    config: PipelineConfig, step: StepConfig, client: Any, *, quiet: bool, log: Any
) -> StepStats:
    """Simulate the dataset unless it is current (see :mod:`cryoflow.pipelines.steps_simulate`).

    A simulation error is not one tomogram's failure: it propagates and stops the run.
    """
    from cryoflow.pipelines.steps_simulate import simulate_step

    t0 = time.perf_counter()
    made = simulate_step(client, config.dataset.store, step.params, quiet=True)
    n = step.params.n_tomograms
    stats = StepStats(computed=len(made), skipped=n - len(made))
    stats.seconds = time.perf_counter() - t0 if made else 0.0
    if made and not quiet:
        log(f"cryoflow: simulated {len(made)} tomogram(s): {', '.join(made)}")
    return stats


def run_ingest(
    config: PipelineConfig, step: StepConfig, client: Any, *, quiet: bool, log: Any
) -> tuple[dict[str, str], StepStats]:
    """Ingest every input file whose tomogram is not in the store yet (one file at a time).

    A file that cannot be ingested is recorded as failed (keyed by its tomogram name, the
    file's stem) and the others go on. Ingest writes publish whole tilt series (temporary node,
    then rename), so an interrupted ingest leaves only a leftover for ``cryoflow verify``.
    """
    from pathlib import Path

    from cryoflow.io import angles as angle_io
    from cryoflow.io.layout import create_dataset
    from cryoflow.pipelines.ingest import IngestConfig, expand_inputs, ingest

    stats = StepStats()
    failures: dict[str, str] = {}
    base = Path(config.source).parent if config.source and config.source != "<pipeline>" else Path()
    pattern = step.params.inputs
    full = pattern if Path(pattern).is_absolute() else str(base / pattern)
    create_dataset(config.dataset.store)
    present = set(list_tomograms(config.dataset.store))
    wanted = set(config.dataset.tomograms) if config.dataset.tomograms is not None else None
    for path in expand_inputs([full]):
        name = angle_io._stem(path)  # the name ingest gives it
        if (wanted is not None and name not in wanted) or name in present:
            stats.skipped += 1
            continue
        t0 = time.perf_counter()
        try:
            ingest(client, IngestConfig(inputs=(str(path),), out=config.dataset.store), quiet=True)
        except Exception as exc:  # one bad file is recorded; the others still ingest
            failures[name] = f"ingest: {type(exc).__name__}: {exc}"
            stats.failed += 1
            log(f"cryoflow: FAILED {name} ({failures[name]})")
            continue
        stats.computed += 1
        stats.seconds += time.perf_counter() - t0
    return failures, stats


# ---------------------------------------------------------------------------- check
def check_pipeline(config: PipelineConfig) -> list[str]:
    """Validate everything a run needs without computing; return one line per checked item.

    Checks that every step is runnable, the store is a cryoflow dataset, every selected
    tomogram's tilt series opens (complete, safe dtype and codecs) with a sane shape, and, for
    an ``ingest`` step, that every input MRC file's header is readable and consistent.

    Raises
    ------
    ConfigError, InputFileError, StoreError
        The first problem found, naming the file or node.
    """
    from cryoflow.io.store import open_tilt_series

    lines: list[str] = []
    names = [s.name for s in config.steps]
    for step in config.steps:
        if step.name not in SOURCE_STEPS:
            get_adapter(step.name)
        if step.name == "annotate":
            lines.append(check_checkpoint(step.params.checkpoint))
    if "ingest" in names:
        ingest = config.steps[names.index("ingest")].params
        lines += check_mrc_inputs(ingest.inputs, config.source)
    if "simulate" in names:
        sim = config.steps[names.index("simulate")].params.simulation()
        z, y, x = sim.shape
        lines.append(
            f"simulate: {sim.n_tomograms} tomogram(s), {sim.angles_deg.size} tilts of {y} x {x}, "
            f"volumes {z} x {y} x {x}"
        )
        return lines  # the tilt series do not exist before the run (or will be replaced)
    if "ingest" in names and not _store_exists(config.dataset.store):
        return lines + [f"{config.dataset.store}: will be created by ingest"]
    for tomogram in select_tomograms(config):
        ts = open_tilt_series(config.dataset.store, tomogram)
        n, y, x = ts.shape
        for step in config.steps:
            if step.name == "bin" and min(y, x) < step.params.factor:
                raise ConfigError(
                    f"{tomogram}: images {y} x {x} are smaller than bin factor {step.params.factor}"
                )
        lines.append(
            f"{tomogram}: tilt series {n} x {y} x {x} {ts.dtype}, "
            f"{ts.attrs['pixel_size_angstrom']:.3g} Å/px"
        )
    return lines


def check_checkpoint(directory: str) -> str:
    """Read a checkpoint's ``model.json`` (no weights); one line naming its feature and hash."""
    from cryoflow.models.checkpoint import checkpoint_hash, read_config

    model = read_config(directory)
    return (
        f"{directory}: checkpoint for {model.feature!r} ({model.spec.arch}), "
        f"weights {checkpoint_hash(directory)[:12]}"
    )


def _store_exists(store: str) -> bool:
    try:
        open_dataset(store)
    except NodeNotFoundError:
        return False
    return True


def check_mrc_inputs(pattern: str, source: str | None) -> list[str]:
    """Read (header only) every MRC file matching ``pattern`` (relative to the pipeline file)."""
    import glob
    from pathlib import Path

    from cryoflow.errors import ConfigError as _ConfigError

    base = Path(source).parent if source and source != "<pipeline>" else Path.cwd()
    full = pattern if Path(pattern).is_absolute() else str(base / pattern)
    files = sorted(glob.glob(full))
    if not files:
        raise _ConfigError(f"ingest.inputs {pattern!r} matches no file (looked for {full})")
    lines = []
    for path in files:
        n, y, x, mode = _mrc_header(path)
        lines.append(f"{path}: MRC {n} x {y} x {x}, mode {mode}")
    return lines


def _mrc_header(path: str) -> tuple[int, int, int, int]:
    """``(n, Y, X, mode)`` of an MRC file, header only (size, mode and truncation checked)."""
    from cryoflow.io.mrc import read_mrc_header

    info = read_mrc_header(path, warn=False)
    n, y, x = info.shape
    return n, y, x, info.mode
