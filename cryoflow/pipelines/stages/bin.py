"""The ``bin`` stage: mean-bin every tilt image by an integer factor (``cryoflow run`` only).

Writes ``results/bin/tilt_series`` ``(tilt, y, x)`` float32 with ``bin_factor`` in the
attributes; ``reconstruct`` reads it with ``source: bin``.
"""

from __future__ import annotations

from pydantic import Field

from cryoflow.errors import ConfigError
from cryoflow.pipelines.stages.base import CheckContext, Output, Plan, Stage, StageParams
from cryoflow.pipelines.stages.inputs import tilt_series_input

NAME = "bin"


class BinParams(StageParams):
    """Bin each tilt image by an integer factor (mean of ``factor x factor`` pixels)."""

    factor: int = Field(default=2, ge=1, le=64, description="pixels per bin along y and x")


def plan(store: object, tomogram: str, params: BinParams) -> Plan:
    """``(n, Y, X) -> (n, Y//f, X//f)``, one tilt per chunk."""
    from cryoflow.graph.binning import bin_graph
    from cryoflow.io.layout import TILT_SERIES

    images, inputs = tilt_series_input(store, tomogram, "tilt_series")
    _, y, x = images.shape
    f = int(params.factor)
    if y < f or x < f:
        raise ConfigError(
            f"bin factor {f} is larger than tomogram {tomogram!r}'s images ({y} x {x})"
        )
    out = bin_graph(images.data, f, prefix=f"bin:{tomogram}")
    attrs = {"bin_factor": f}
    return Plan(NAME, (Output(TILT_SERIES, out, ("tilt", "y", "x"), attrs),), inputs)


def check(params: BinParams, ctx: CheckContext) -> list[str]:
    """Refuse a factor larger than a stored tilt series' images."""
    for tomogram, (_, y, x) in ctx.images.items():
        if min(y, x) < params.factor:
            raise ConfigError(
                f"{tomogram}: images {y} x {x} are smaller than bin factor {params.factor}"
            )
    return []


STAGE = Stage(NAME, BinParams, plan=plan, check=check)
