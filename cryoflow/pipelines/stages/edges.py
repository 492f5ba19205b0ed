"""The ``edges`` stage: the 2D-to-3D paper's Algorithm 2 on every tomogram's tilt series.

Per tomogram, one lazy graph (:mod:`cryoflow.graph.edges`): the per-tilt edge maps (DoG, peak
threshold) ``edges2d`` ``(tilt, y, x)`` bool, the refined per-voxel sums ``S = sum_h B(h)``
``sums`` ``(z, y, x)`` uint16 and ``E3D = S > T`` (uint8, 1 = edge). Parameters are those of
:mod:`cryoflow.kernels.edges`. ``cryoflow edges`` writes ``E3D`` as the label image
``labels/<out>`` and the rest under ``results/<out>/``; ``cryoflow run`` everything under
``results/edges/`` (``labels``, ``edges2d``, ``sums``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from cryoflow.pipelines.stages.base import Output, Plan, Stage, StageParams, one_of
from cryoflow.pipelines.stages.eager import run_stage
from cryoflow.pipelines.stages.inputs import block_chunks, tilt_series_input, volume_shape

NAME = "edges"


class EdgesParams(StageParams):
    """Algorithm 2 (see :mod:`cryoflow.kernels.edges` for each parameter)."""

    sigma1: float = Field(default=1.0, ge=0, description="small DoG sigma (pixels)")
    sigma2: float = Field(default=2.0, gt=0, description="large DoG sigma (pixels)")
    alpha: float = Field(
        default=0.5, ge=0, le=1, description="2D threshold min+alpha*(max-min) of the DoG peaks"
    )
    denoise: str = Field(default="none", description="none, gaussian or median")
    denoise_size: float = Field(default=1.0, gt=0, description="sigma or window (px)")
    invert: bool = Field(default=False, description="dark structures on bright images")
    iterations: int = Field(default=4, ge=0, description="refinement iterations m")
    window: int = Field(default=1, ge=1, description="neighbour tilts on each side (k)")
    min_support: int = Field(default=2, ge=1, description="neighbours that must agree")
    threshold: float = Field(default=2.0, description="E3D = sum > T")
    thickness: int | None = Field(default=None, ge=1, description="volume depth Z (voxels)")
    chunk: int = Field(default=64, ge=8, description="output chunk edge in voxels")

    @field_validator("denoise")
    @classmethod
    def _denoise(cls, v: str) -> str:
        from typing import get_args

        from cryoflow.kernels.edges import Denoise

        return one_of(v, get_args(Denoise))

    @model_validator(mode="after")
    def _sigmas(self) -> EdgesParams:
        if not self.sigma1 < self.sigma2:
            raise ValueError(f"need sigma1 < sigma2, got {self.sigma1}, {self.sigma2}")
        return self

    def detector(self) -> dict[str, Any]:
        """Keyword arguments of :func:`cryoflow.graph.edges.edge_maps`."""
        return {
            "sigma1": self.sigma1,
            "sigma2": self.sigma2,
            "alpha": self.alpha,
            "denoise": self.denoise,
            "denoise_size": self.denoise_size,
        }

    def refinement(self) -> dict[str, Any]:
        """Keyword arguments of :func:`cryoflow.graph.edges.edge_sums`."""
        return {
            "iterations": self.iterations,
            "window": self.window,
            "min_support": self.min_support,
        }


def plan(store: object, tomogram: str, params: EdgesParams) -> Plan:
    """Algorithm 2 on ``tomogram``'s tilt series."""
    from cryoflow.graph import edges as G
    from cryoflow.io.store import read_geometry

    # 1. input: the tilt series (n_tilts, Y, U) and its geometry
    tilts, inputs = tilt_series_input(store, tomogram, "tilt_series")
    geometry = read_geometry(store, tomogram)
    shape = volume_shape(tilts, params.thickness)
    images = -tilts.data if params.invert else tilts.data
    # 2. per-tilt edge maps (one chunk per tilt)
    e2d = G.edge_maps(images, **params.detector(), name=f"edges:{tomogram}-2d")
    # 3. refined sums S and E3D = S > T
    sums = G.edge_sums(
        e2d,
        geometry,
        shape,
        chunks=block_chunks(shape, params.chunk),  # type: ignore[arg-type]
        **params.refinement(),
        name=f"edges:{tomogram}-sums",
    )
    threshold = float(params.threshold)
    labels = (sums > threshold).astype(np.uint8)
    attrs = {"threshold": threshold}
    outputs = (
        Output("labels", labels, ("z", "y", "x"), attrs, volume="label"),
        Output("edges2d", e2d, ("tilt", "y", "x")),
        Output("sums", sums, ("z", "y", "x"), attrs),
    )
    return Plan(
        NAME, outputs, inputs, pixel_size_angstrom=float(tilts.attrs["pixel_size_angstrom"])
    )


def run(
    client: Any,
    store: object,
    names: Sequence[str],
    params: EdgesParams,
    *,
    out: str = NAME,
    overwrite: bool = False,
    quiet: bool = False,
) -> dict[str, dict[str, Any]]:
    """Algorithm 2 on each tomogram; per tomogram ``{"n_edge_voxels": int}``."""
    from cryoflow.io.store import open_volume

    run_stage(client, STAGE, store, names, params, out=out, overwrite=overwrite, quiet=quiet)
    return {
        name: {
            "n_edge_voxels": int(
                client.compute(open_volume(store, name, out).data.sum(), sync=True)
            )
        }
        for name in names
    }


STAGE = Stage(NAME, EdgesParams, plan=plan)
