"""The ``reconstruct`` stage: weighted (ramp-filtered) back-projection of each tilt series.

Per tomogram: the tilt series (or, with ``source: bin``, the ``bin`` stage's result) and its
stored geometry, optionally binned ``N x N``, ramp filtered along detector rows and
back-projected chunkwise (:func:`cryoflow.graph.reconstruct.weighted_backprojection`).
``cryoflow reconstruct`` writes it as the OME-Zarr image ``volumes/<key>`` (default
``tomogram``); ``cryoflow run`` as ``results/reconstruct/volume``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import Field

from cryoflow.pipelines.stages.base import Output, Plan, Stage, StageParams
from cryoflow.pipelines.stages.eager import Target, run_stage
from cryoflow.pipelines.stages.fields import Chunk, Thickness, choice
from cryoflow.pipelines.stages.inputs import tilt_series_input

NAME = "reconstruct"
KEY = "volume"  # the result key under cryoflow run
VOLUME = "tomogram"  # the volume cryoflow reconstruct writes by default


def _filters() -> tuple[str, ...]:
    from cryoflow.kernels.ramp import FILTERS

    return FILTERS


def _interpolations() -> tuple[str, ...]:
    from cryoflow.kernels.backproject import INTERPOLATIONS

    return INTERPOLATIONS


class ReconstructParams(StageParams):
    """Back-project a tilt series into a volume ``(Z, Y // bin, X // bin)``."""

    source: Literal["tilt_series", "bin"] = Field(
        default="tilt_series", description="the images: the tilt series or the bin stage's result"
    )
    thickness: Thickness = None
    filter: Annotated[str, choice(_filters)] = Field(
        default="ramp", description="ramp (weighted back-projection) or none"
    )
    bin: int = Field(default=1, ge=1, description="average N x N detector pixels first")
    interpolation: Annotated[str, choice(_interpolations)] = Field(
        default="linear", description="linear or nearest"
    )
    chunk: Chunk = 128


def reconstruction(
    images: Any, geometry: Any, params: ReconstructParams, *, prefix: str = NAME
) -> tuple[Any, Any]:
    """The lazy volume ``(Z, Y', X')`` float32 of ``images`` ``(n, Y, X)`` and the geometry used."""
    from cryoflow.graph.reconstruct import weighted_backprojection

    options = params.model_dump(exclude={"source"})  # thickness, filter, bin, interpolation, chunk
    return weighted_backprojection(images, geometry, **options, prefix=prefix)


def plan(store: object, tomogram: str, params: ReconstructParams) -> Plan:
    """The volume of ``tomogram`` (see the module docstring)."""
    from cryoflow.geometry.binning import bin_geometry
    from cryoflow.io.store import open_tilt_series, read_geometry

    images, inputs = tilt_series_input(store, tomogram, params.source)
    geometry = read_geometry(store, tomogram)
    if params.source != "tilt_series":  # the stored geometry fits the raw images
        _, V, U = open_tilt_series(store, tomogram).shape
        geometry = bin_geometry(geometry, (V, U), int(images.attrs.get("bin_factor", 1)))
    volume, _ = reconstruction(images.data, geometry, params, prefix=tomogram)
    pixel = float(images.attrs["pixel_size_angstrom"]) * int(params.bin)
    attrs = {"source": params.source, "pixel_size_angstrom": pixel}
    out = Output(KEY, volume, ("z", "y", "x"), attrs, volume="image")
    return Plan(NAME, (out,), inputs, pixel_size_angstrom=pixel)


def run(client: Any, target: Target, params: ReconstructParams) -> dict[str, dict[str, Any]]:
    """Reconstruct each tomogram into ``volumes/<target.out>`` (default ``tomogram``); per
    tomogram its shape, voxel size and key."""
    target = replace(target, out=target.out or VOLUME)
    done = run_stage(client, STAGE, target, params)
    return {
        name: {
            "shape": tuple(int(s) for s in w.plan.outputs[0].data.shape),
            "pixel_size_angstrom": w.plan.pixel_size_angstrom,
            "key": target.out,
        }
        for name, w in done.items()
    }


STAGE = Stage(NAME, ReconstructParams, plan=plan)
