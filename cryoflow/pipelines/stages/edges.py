"""The ``edges`` stage: the 2D-to-3D paper's Algorithm 2 on every tomogram's tilt series.

Per tomogram, one lazy graph (:mod:`cryoflow.graph.edges`): the per-tilt edge maps (DoG, peak
threshold) ``edges2d`` ``(tilt, y, x)`` bool, the refined per-voxel sums ``S = sum_h B(h)``
``sums`` ``(z, y, x)`` uint16 and ``E3D = S > T`` (uint8, 1 = edge). Parameters are those of
:mod:`cryoflow.kernels.edges`. ``cryoflow edges`` writes ``E3D`` as the label image
``labels/<out>`` and the rest under ``results/<out>/``; ``cryoflow run`` everything under
``results/edges/`` (``labels``, ``edges2d``, ``sums``).
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

import numpy as np
from pydantic import Field, model_validator

from cryoflow.pipelines.stages.base import Output, Plan, Stage, StageParams
from cryoflow.pipelines.stages.eager import Target, run_stage
from cryoflow.pipelines.stages.fields import Chunk, Thickness, choice
from cryoflow.pipelines.stages.inputs import block_chunks, tilt_series_input, volume_shape

NAME = "edges"


def _denoisers() -> tuple[str, ...]:
    from cryoflow.kernels.edges import Denoise

    return get_args(Denoise)


class EdgesParams(StageParams):
    """Algorithm 2 (see :mod:`cryoflow.kernels.edges` for each parameter)."""

    sigma1: float = Field(default=1.0, ge=0, description="small DoG sigma (pixels)")
    sigma2: float = Field(default=2.0, gt=0, description="large DoG sigma (pixels)")
    alpha: float = Field(
        default=0.5, ge=0, le=1, description="2D threshold min+alpha*(max-min) of the DoG peaks"
    )
    denoise: Annotated[str, choice(_denoisers)] = Field(
        default="none", description="none, gaussian or median"
    )
    denoise_size: float = Field(default=1.0, gt=0, description="sigma or window (px)")
    invert: bool = Field(default=False, description="dark structures on bright images")
    iterations: int = Field(default=4, ge=0, description="refinement iterations m")
    window: int = Field(default=1, ge=1, description="neighbour tilts on each side (k)")
    min_support: int = Field(default=2, ge=1, description="neighbours that must agree")
    threshold: float = Field(default=2.0, description="E3D = sum > T")
    thickness: Thickness = None
    chunk: Chunk = 64

    @model_validator(mode="after")
    def _sigmas(self) -> EdgesParams:
        if not self.sigma1 < self.sigma2:
            raise ValueError(f"need sigma1 < sigma2, got {self.sigma1}, {self.sigma2}")
        return self

    def detector(self) -> dict[str, Any]:
        """Keyword arguments of :func:`cryoflow.graph.edges.edge_maps`."""
        return self.model_dump(include={"sigma1", "sigma2", "alpha", "denoise", "denoise_size"})

    def refinement(self) -> dict[str, Any]:
        """Keyword arguments of :func:`cryoflow.graph.edges.edge_sums`."""
        return self.model_dump(include={"iterations", "window", "min_support"})


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
    cz, cy, cx = block_chunks(shape, params.chunk)
    sums = G.edge_sums(
        e2d,
        geometry,
        shape,
        chunks=(cz, cy, cx),
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


def run(client: Any, target: Target, params: EdgesParams) -> dict[str, dict[str, Any]]:
    """Algorithm 2 on each tomogram; per tomogram ``{"n_edge_voxels": int}``."""
    from cryoflow.io.store import open_volume

    done = run_stage(client, STAGE, target, params)
    count = {name: open_volume(target.store, name, w.out).data.sum() for name, w in done.items()}
    return {name: {"n_edge_voxels": int(n)} for name, n in client.compute(count, sync=True).items()}


STAGE = Stage(NAME, EdgesParams, plan=plan)
