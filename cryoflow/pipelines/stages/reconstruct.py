"""The ``reconstruct`` stage: weighted (ramp-filtered) back-projection of each tilt series.

Per tomogram: the tilt series (or, with ``source: bin``, the ``bin`` stage's result) and its
stored geometry (any tilt-axis angle, imported alignments), optionally binned ``N x N``,
ramp filtered across the tilt axis of every image and back-projected chunkwise (:func:`cryoflow.graph.reconstruct.weighted_backprojection`).
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
    thickness: Thickness = Field(
        default=None,
        ge=1,
        description="volume depth Z (voxels); default: estimated from the data (cryoflow "
        "reconstruct; cryoflow run: the detector width)",
    )
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
    width = int(images.shape[-1]) // int(params.bin)
    if params.thickness is None and width > FALLBACK_WIDTH:
        from cryoflow.errors import ConfigError

        raise ConfigError(
            f"reconstruct step of {tomogram!r}: no thickness given and the detector is {width} "
            f"pixels wide (binned), so the volume would be {width} deep; give the step a "
            "'thickness' (cryoflow reconstruct estimates one from the data)"
        )
    geometry = read_geometry(store, tomogram)
    if params.source != "tilt_series":  # the stored geometry fits the raw images
        _, V, U = open_tilt_series(store, tomogram).shape
        geometry = bin_geometry(geometry, (V, U), int(images.attrs.get("bin_factor", 1)))
    volume, _ = reconstruction(images.data, geometry, params, prefix=tomogram)
    pixel = float(images.attrs["pixel_size_angstrom"]) * int(params.bin)
    attrs = {"source": params.source, "pixel_size_angstrom": pixel}
    out = Output(KEY, volume, ("z", "y", "x"), attrs, volume="image")
    return Plan(NAME, (out,), inputs, pixel_size_angstrom=pixel)


#: without --thickness, detectors up to this wide (binned) fall back to their width when the
#: data show no specimen; wider ones refuse and ask for --thickness
FALLBACK_WIDTH = 512


def default_thickness(
    client: Any, store: object, tomogram: str, params: ReconstructParams
) -> tuple[int, str]:
    """The volume depth to use without ``--thickness`` and why (``kernels/thickness.py``).

    A preview of the series binned to ~128 pixels across is computed on ``client`` (one read
    of the images), reconstructed as deep as it is wide, and the specimen's z extent found.
    When no specimen stands out, a detector up to :data:`FALLBACK_WIDTH` (binned) pixels wide
    gives its width (as before); a wider one raises the estimate's ``ConfigError``.
    """
    import numpy as np

    from cryoflow.errors import ConfigError
    from cryoflow.geometry.binning import bin_geometry
    from cryoflow.graph.binning import bin_graph
    from cryoflow.io.store import open_tilt_series, read_geometry
    from cryoflow.kernels.thickness import estimate_thickness, preview_bin_factor

    images, _ = tilt_series_input(store, tomogram, params.source)
    geometry = read_geometry(store, tomogram)
    _, V, U = (int(s) for s in images.shape)
    if params.source != "tilt_series":
        _, V0, U0 = open_tilt_series(store, tomogram).shape
        geometry = bin_geometry(geometry, (V0, U0), int(images.attrs.get("bin_factor", 1)))
    b = int(params.bin)
    width = U // b
    f = preview_bin_factor((V // b, U // b))
    preview = bin_graph(images.data, b * f, prefix=f"thickness-preview-{tomogram}")
    small = np.asarray(client.compute(preview, sync=True))
    try:
        choice = estimate_thickness(
            small, bin_geometry(geometry, (V, U), b * f), bin_factor=f, width=width
        )
    except ConfigError as exc:
        if width > FALLBACK_WIDTH:
            raise ConfigError(f"{tomogram}: {exc}") from exc
        return width, f"the detector width: {exc}"
    lo, hi = choice.specimen_px or (0.0, 0.0)
    why = f"estimated from the data: specimen {lo:+.0f}..{hi:+.0f} voxels from the centre"
    return choice.thickness, why


def run(client: Any, target: Target, params: ReconstructParams) -> dict[str, dict[str, Any]]:
    """Reconstruct each tomogram into ``volumes/<target.out>`` (default ``tomogram``); per
    tomogram its shape, voxel size, key and where the thickness came from.

    Without ``params.thickness`` each tomogram's is :func:`default_thickness`; the volume's
    size is printed (unless ``target.quiet``) before it is computed.
    """
    from cryoflow.kernels.thickness import volume_size

    target = replace(target, out=target.out or VOLUME)
    summary: dict[str, dict[str, Any]] = {}
    for name in target.names:
        chosen, why = params, "--thickness"
        if params.thickness is None:
            z, why = default_thickness(client, target.store, name, params)
            chosen = params.model_copy(update={"thickness": z})
        one = replace(target, names=(name,))
        if not target.quiet:
            shape = tuple(int(s) for s in plan(target.store, name, chosen).outputs[0].data.shape)
            print(f"cryoflow: {name}: volume {volume_size(shape)}; thickness {shape[0]} ({why})")
        w = run_stage(client, STAGE, one, chosen)[name]
        summary[name] = {
            "shape": tuple(int(s) for s in w.plan.outputs[0].data.shape),
            "pixel_size_angstrom": w.plan.pixel_size_angstrom,
            "key": target.out,
            "thickness_from": why,
        }
    return summary


STAGE = Stage(NAME, ReconstructParams, plan=plan)
