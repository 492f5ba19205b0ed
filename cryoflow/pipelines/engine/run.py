"""``cryoflow run``: every step of a pipeline over every tomogram, resumable and fault tolerant.

How a run proceeds
------------------
1. Source steps (``ingest``, ``simulate``: they make the tomograms) run first, on the whole
   dataset.
2. The other steps run in order, in segments: consecutive per-tomogram steps stream the
   tomograms through the cluster together (:mod:`cryoflow.pipelines.engine.stream`); a
   dataset-level step (unit: the whole dataset, in map-reduce rounds,
   :mod:`cryoflow.pipelines.engine.rounds`) waits for the segment before it and runs over the
   tomograms that have not failed. A per-tomogram step that trains first (``Stage.train``,
   e.g. ``dewedge``) starts a segment: its training runs as a dataset-level step over the
   tomograms that have not failed, then its plans stream like any other step's.
3. Every result records its run token (step, parameters, input identities): a rerun skips what
   is current and resumes what was interrupted (chunks, or rounds) from the store.
4. A tomogram that fails is recorded with the reason and left out of later steps; the others go
   on. The summary (per step: computed/skipped/failed, chunks, seconds; failures) is printed
   and stored under ``runs/<run-id>``.
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from cryoflow.io.layout import open_dataset
from cryoflow.pipelines.engine.config import PipelineConfig, StepConfig
from cryoflow.pipelines.engine.stream import TomogramStream
from cryoflow.pipelines.engine.summary import RunSummary, StepStats, read_summary, store_summary
from cryoflow.pipelines.stages import get_stage
from cryoflow.pipelines.stages.inputs import select_tomograms

__all__ = ["read_summary", "run_pipeline", "segments", "selected_tomograms"]


def selected_tomograms(config: PipelineConfig) -> list[str]:
    """The tomograms a run processes: the configured ones, else every one in the store."""
    return select_tomograms(config.dataset.store, config.dataset.tomograms)


def segments(steps: tuple[StepConfig, ...] | list[StepConfig]) -> list[list[StepConfig]]:
    """The non-source steps in run order: runs of per-tomogram steps, and each dataset-level
    step alone. A per-tomogram step that trains first (``Stage.train``) starts a run, so its
    training sees every tomogram's results of the steps before it."""
    out: list[list[StepConfig]] = []
    for step in steps:
        stage = get_stage(step.name)
        unit = stage.unit
        if unit == "source":
            continue
        joins = unit == "tomogram" and stage.train is None
        if joins and out and get_stage(out[-1][0].name).unit == "tomogram":
            out[-1].append(step)
        else:
            out.append([step])
    return out


def _run_source(
    config: PipelineConfig, step: StepConfig, client: Any, summary: RunSummary, log: Any
) -> None:
    """A step that makes tomograms; its failures are per tomogram, other errors stop the run."""
    stage = get_stage(step.name)
    assert stage.source is not None
    report = stage.source(
        client, config.dataset.store, step.params, tomograms=config.dataset.tomograms, log=log
    )
    stats = summary.steps[step.name]
    stats.computed += len(report.made)
    stats.skipped += report.skipped
    stats.failed += len(report.failures)
    stats.seconds += report.seconds
    summary.failures.update(report.failures)


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
        ``on_chunk(tomogram, step, n_recorded)`` after each chunk write is recorded, and
        ``on_chunk("", step, round)`` after each round of a dataset-level step is recorded
        (for progress displays and tests).
    """

    def _log(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    say = log or _log
    started = time.perf_counter()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = RunSummary(run_id, {s.name: StepStats() for s in config.steps})
    for step in config.steps:
        if get_stage(step.name).unit == "source":
            _run_source(config, step, client, summary, say)
    names = [t for t in selected_tomograms(config) if t not in summary.failures]
    summary.tomograms = len(names)
    for segment in segments(config.steps):
        names = [t for t in names if t not in summary.failures]
        first = get_stage(segment[0].name)
        if first.unit == "tomogram":
            if first.train is not None:
                from cryoflow.pipelines.engine.rounds import run_dataset_step

                run_dataset_step(
                    config, segment[0], client, summary, names, quiet=quiet, log=say,
                    on_chunk=on_chunk, train=True,
                )  # fmt: skip
                names = [t for t in names if t not in summary.failures]
            stream = TomogramStream(
                config, segment, client, summary, quiet=quiet, log=say, on_chunk=on_chunk
            )
            stream.run(names)
        else:
            from cryoflow.pipelines.engine.rounds import run_dataset_step

            run_dataset_step(
                config, segment[0], client, summary, names, quiet=quiet, log=say, on_chunk=on_chunk
            )
    summary.seconds = time.perf_counter() - started
    store_summary(open_dataset(config.dataset.store, mode="r+"), summary)
    return summary
