"""The ``reconstruct`` stage: weighted (ramp-filtered) back-projection of each tilt series.

Per tomogram: the tilt series (or, with ``source: bin``, the ``bin`` stage's result) and its
stored geometry, optionally binned ``N x N``, ramp filtered along detector rows and
back-projected chunkwise (:func:`cryoflow.graph.reconstruct.weighted_backprojection`).
``cryoflow reconstruct`` writes it as the OME-Zarr image ``volumes/<key>`` (default
``tomogram``); ``cryoflow run`` as ``results/reconstruct/volume``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator

from cryoflow.pipelines.stages.base import Output, Plan, Stage, StageParams, one_of
from cryoflow.pipelines.stages.eager import run_stage
from cryoflow.pipelines.stages.inputs import tilt_series_input

NAME = "reconstruct"
KEY = "volume"  # the result key under cryoflow run


class ReconstructParams(StageParams):
    """Back-project a tilt series into a volume ``(Z, Y // bin, X // bin)``."""

    source: Literal["tilt_series", "bin"] = Field(
        default="tilt_series", description="the images: the tilt series or the bin stage's result"
    )
    thickness: int | None = Field(
        default=None, ge=1, description="volume depth Z in output voxels (default: the width)"
    )
    filter: str = Field(default="ramp", description="ramp (weighted back-projection) or none")
    bin: int = Field(default=1, ge=1, description="average N x N detector pixels first")
    interpolation: str = Field(default="linear", description="linear or nearest")
    chunk: int = Field(default=128, ge=8, description="output chunk edge in voxels")

    @field_validator("filter")
    @classmethod
    def _filter(cls, v: str) -> str:
        from cryoflow.kernels.ramp import FILTERS

        return one_of(v, FILTERS)

    @field_validator("interpolation")
    @classmethod
    def _interpolation(cls, v: str) -> str:
        from cryoflow.kernels.backproject import INTERPOLATIONS

        return one_of(v, INTERPOLATIONS)


def reconstruction(
    images: Any, geometry: Any, params: ReconstructParams, *, prefix: str = NAME
) -> tuple[Any, Any]:
    """The lazy volume ``(Z, Y', X')`` float32 of ``images`` ``(n, Y, X)`` and the geometry used."""
    from cryoflow.graph.reconstruct import weighted_backprojection

    return weighted_backprojection(
        images,
        geometry,
        thickness=params.thickness,
        filter=params.filter,
        bin=params.bin,
        interpolation=params.interpolation,
        chunk=params.chunk,
        prefix=prefix,
    )


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


def run(
    client: Any,
    store: object,
    names: Sequence[str],
    params: ReconstructParams,
    *,
    key: str = "tomogram",
    overwrite: bool = False,
    quiet: bool = False,
) -> dict[str, dict[str, Any]]:
    """Reconstruct each tomogram into ``volumes/<key>``; per tomogram its shape and voxel size."""
    done = run_stage(client, STAGE, store, names, params, out=key, overwrite=overwrite, quiet=quiet)
    return {
        name: {
            "shape": tuple(int(s) for s in w.plan.outputs[0].data.shape),
            "pixel_size_angstrom": w.plan.pixel_size_angstrom,
            "key": key,
        }
        for name, w in done.items()
    }


STAGE = Stage(NAME, ReconstructParams, plan=plan)
