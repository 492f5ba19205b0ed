"""Live progress lines for ``cryoflow run`` (it was silent until the summary table).

:class:`ChunkTicker` is the engine's ``on_chunk(tomogram, step, n_recorded)`` callback: it prints
one line to stderr when a step starts on a tomogram and then, for each (tomogram, step), at
most every ``interval`` seconds while its chunks are recorded, e.g. ``cryoflow: reconstruct TS_01: 24 chunks written
(run total 130, 12.4 s)``. For a dataset-level step (``tomogram == ""``) the count is the round.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["ChunkTicker"]


class ChunkTicker:
    """Throttled progress lines (see the module docstring)."""

    def __init__(
        self,
        interval: float = 2.0,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = float(interval)
        self.stream = stream
        self.clock = clock
        self.start = clock()
        self.last: dict[tuple[str, str], float] = {}  # when each (tomogram, step) last printed
        self.counts: dict[tuple[str, str], int] = {}

    def __call__(self, tomogram: str, step: str, recorded: int) -> None:
        key = (tomogram, step)
        self.counts[key] = self.counts.get(key, 0) + 1
        now = self.clock()
        if key in self.last and now - self.last[key] < self.interval:
            return
        self.last[key] = now
        elapsed = now - self.start
        if tomogram:
            text = (
                f"cryoflow: {step} {tomogram}: {self.counts[key]} chunks written "
                f"(run total {recorded}, {elapsed:.1f} s)"
            )
        else:
            text = f"cryoflow: {step}: round {recorded} recorded ({elapsed:.1f} s)"
        print(text, file=self.stream or sys.stderr, flush=True)
