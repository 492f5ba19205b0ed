"""``cryoflow run``'s live progress lines (ChunkTicker), with a fake clock."""

from __future__ import annotations

import io

from cryoflow.pipelines.engine.live import ChunkTicker


def test_a_line_per_new_step_and_at_most_one_per_interval() -> None:
    now = [0.0]
    out = io.StringIO()
    tick = ChunkTicker(2.0, stream=out, clock=lambda: now[0])
    for i in range(1, 6):  # five chunks within one second: one line
        now[0] = 0.2 * i
        tick("TS_01", "reconstruct", i)
    now[0] = 2.5
    tick("TS_01", "reconstruct", 6)  # the interval passed: a second line
    tick("TS_01", "lift", 7)  # a new step: at once
    tick("TS_02", "reconstruct", 8)  # another tomogram: at once
    tick("TS_01", "reconstruct", 9)  # interleaved, within its interval: silent
    tick("", "intensity", 2)  # a dataset-level round
    lines = out.getvalue().splitlines()
    assert lines == [
        "cryoflow: reconstruct TS_01: 1 chunks written (run total 1, 0.2 s)",
        "cryoflow: reconstruct TS_01: 6 chunks written (run total 6, 2.5 s)",
        "cryoflow: lift TS_01: 1 chunks written (run total 7, 2.5 s)",
        "cryoflow: reconstruct TS_02: 1 chunks written (run total 8, 2.5 s)",
        "cryoflow: intensity: round 2 recorded (2.5 s)",
    ]
