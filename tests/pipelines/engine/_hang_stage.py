"""A test-only stage: doubles every tilt image; the first chunk of one tomogram never returns
(or first allocates ``allocate_mib`` and holds it: a worker over its memory limit).

Registered for a test with ``monkeypatch.setitem(STAGES, "hang", __name__)``; its chunk
function lives here, so workers import it from the tests package.
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from cryoflow.pipelines.stages.base import Output, Plan, Stage, StageParams
from cryoflow.pipelines.stages.inputs import tilt_series_input

NAME = "hang"


class HangParams(StageParams):
    """Double every tilt image; the first chunk of ``tomogram`` sleeps ``hang_s`` first."""

    tomogram: str = Field(default="", description="the tomogram whose first chunk hangs")
    hang_s: float = Field(default=9999.0, description="how long it hangs")
    allocate_mib: int = Field(default=0, description="memory it holds while it hangs")


def _double(
    block: np.ndarray, hang_s: float, allocate_mib: int, block_info: dict | None = None
) -> np.ndarray:
    if hang_s and block_info is not None and block_info[0]["chunk-location"][0] == 0:
        held = np.ones(allocate_mib * 2**17)  # float64: 8 bytes each, every page touched
        time.sleep(hang_s)
        del held
    return block * 2


def plan(store: object, tomogram: str, params: HangParams) -> Plan:
    images, inputs = tilt_series_input(store, tomogram, "tilt_series")
    hang = params.hang_s if tomogram == params.tomogram else 0.0
    mib = params.allocate_mib if hang else 0
    out = images.data.map_blocks(
        _double, hang, mib, dtype=images.dtype, name=f"hang:{tomogram}-{hang}-{mib}"
    )
    return Plan(NAME, (Output("tilt_series", out, ("tilt", "y", "x")),), inputs)


STAGE = Stage(NAME, HangParams, plan=plan)
