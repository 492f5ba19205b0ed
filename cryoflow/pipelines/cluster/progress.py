"""Progress bars driven by completed futures, and the compute function pending writes run with."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["compute_with_progress", "runner", "wait_with_progress"]


def wait_with_progress(
    client: Any,
    futures: Sequence[Any],
    description: str,
    *,
    quiet: bool = False,
    release: bool = False,
) -> list[Any]:
    """Wait for ``futures`` while a progress bar counts completed ones; return their results.

    ``release=True`` (for futures the caller owns and nothing else depends on, such as those
    :func:`compute_with_progress` makes) gathers and releases each future as soon as it
    completes, so neither the cluster nor the client keeps a finished task's state for the rest
    of the wait: worker memory stays flat however many chunks a write has. Futures of a
    persisted collection must not be released (later graphs read them), hence the default.
    Either way the first error is raised only after every future has finished: a writer
    cleaning up after a failed write must not race tasks that are still writing chunks.
    """
    from distributed import as_completed

    pending = list(futures)
    if not pending:
        return []
    show = not quiet and (sys.stderr.isatty() or os.environ.get("CRYOFLOW_PROGRESS") == "1")
    with contextlib.ExitStack() as stack:
        advance = _progress_bar(stack, description, len(pending)) if show else _nothing
        if not release:
            for _ in as_completed(pending, loop=client.loop):
                advance()
            return client.gather(pending)
        order: dict[Any, list[int]] = {}
        for i, f in enumerate(pending):
            order.setdefault(f.key, []).append(i)
        results: list[Any] = [None] * len(pending)
        completed = as_completed(pending, with_results=True, raise_errors=False, loop=client.loop)
        del pending  # as_completed holds each future until it is yielded
        failed: Any = None
        for future, result in completed:
            if future.status == "error":
                failed = failed or future  # kept (not released) to re-raise its error below
            else:
                for i in order[future.key]:
                    results[i] = result
                future.release()
            advance()
    if failed is not None:
        failed.result()
    return results


def _nothing() -> None:
    return None


def _progress_bar(stack: contextlib.ExitStack, description: str, total: int) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = stack.enter_context(
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
        )
    )
    task = bar.add_task(description, total=total)
    return lambda: bar.advance(task)


def compute_with_progress(
    client: Any,
    collections: Iterable[Any],
    description: str,
    *,
    quiet: bool = False,
    resources: dict[str, float] | None = None,
) -> list[Any]:
    """Compute Dask collections on ``client`` with a progress bar; return their values.

    ``resources`` (e.g. ``{"GPU": 1}``): what every task of the computation needs.
    """
    futures = client.compute(list(collections), resources=resources)
    return wait_with_progress(client, futures, description, quiet=quiet, release=True)


def runner(
    client: Any, description: str, quiet: bool, resources: dict[str, float] | None = None
) -> Callable[[list[Any]], Any]:
    """Compute function for :meth:`cryoflow.io.nodes.PendingWrite.run` on ``client``."""
    return lambda tasks: compute_with_progress(
        client, tasks, description, quiet=quiet, resources=resources
    )
