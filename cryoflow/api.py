"""The contract's projectors: :func:`backproject`, :func:`project`, :func:`select_threshold`.

These validate their inputs and build lazy Dask graphs (``cryoflow.graph``); results are
``xarray.DataArray`` objects backed by Dask, except :func:`select_threshold`, whose answer
(one number and a curve) is computed on the current Dask scheduler (a ``distributed.Client``
when one is the default).
"""

from __future__ import annotations

from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np
import xarray as xr

from cryoflow.errors import GeometryError
from cryoflow.geometry import TiltGeometry, as_geometry
from cryoflow.graph.backproject import backproject_graph
from cryoflow.graph.project import project_graph
from cryoflow.graph.threshold import counts_split, threshold_counts_graph
from cryoflow.kernels.backproject import parse_interpolation
from cryoflow.kernels.project import parse_mode
from cryoflow.kernels.threshold import ThresholdResult, parse_candidates, result_from_counts

__all__ = ["ThresholdResult", "backproject", "project", "select_threshold"]

TILT_DIMS = ("tilt", "y", "x")
VOLUME_DIMS = ("z", "y", "x")


def _as_dask(
    array: object, what: str, dims: tuple[str, str, str], chunks: Sequence[int]
) -> da.Array:
    """NumPy / Dask / xarray (dims in any order) -> 3-D Dask array in ``dims`` order."""
    if isinstance(array, xr.DataArray):
        if set(array.dims) == set(dims):
            array = array.transpose(*dims)
        array = array.data
    if isinstance(array, da.Array):
        out = array
    else:
        try:
            values = np.asarray(array)
        except (TypeError, ValueError) as exc:
            raise GeometryError(f"{what} must be an array, got {type(array)!r}") from exc
        if values.ndim != 3:
            raise GeometryError(f"{what} must be 3-D {dims}, got shape {values.shape}")
        out = da.from_array(values, chunks=tuple(chunks))
    if out.ndim != 3:
        raise GeometryError(f"{what} must be 3-D {dims}, got shape {out.shape}")
    if out.dtype.kind not in "biuf":
        raise GeometryError(f"{what} must be bool, integer or float, got dtype {out.dtype}")
    return out


def _parse_shape(shape: object) -> tuple[int, int, int]:
    try:
        values = tuple(int(s) for s in shape)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"shape must be (Z, Y, X) positive integers, got {shape!r}") from exc
    if len(values) != 3 or min(values) < 1:
        raise GeometryError(f"shape must be (Z, Y, X) positive integers, got {shape!r}")
    return values  # type: ignore[return-value]


def _geometry(angles: object, n_tilts: int, what: str) -> TiltGeometry:
    geometry = as_geometry(angles)
    if geometry.n_tilts != n_tilts:
        raise GeometryError(
            f"{what} holds {n_tilts} tilts but {geometry.n_tilts} angles were given"
        )
    return geometry


def backproject(
    images: object,
    angles: object,
    shape: Sequence[int],
    *,
    interpolation: str = "nearest",
    chunks: Sequence[int] | None = None,
) -> xr.DataArray:
    """Back-project a tilt series into a volume (CONTRACT.md).

    ``out[z, y, x] = sum over t of images[t, v, u_t(z, y, x)]`` under the nearest-neighbour rule
    (or bilinear taps with ``interpolation="linear"``); off-detector positions add nothing.

    Parameters
    ----------
    images : array of shape (n_tilts, Y, U)
        NumPy, Dask or ``xarray.DataArray`` (dims ``tilt, y, x``). Boolean masks give integer
        vote counts (per tilt, any true tap sets the voxel); integers give integer sums;
        floats a float32 sum.
    angles : array of shape (n_tilts,) in degrees, or TiltGeometry
        A plain array means the contract's single-axis geometry (then ``Y`` must match).
    shape : (Z, Y, X)
    interpolation : {"nearest", "linear"}
    chunks : (cz, cy, cx), optional
        Output blocks (default ``cryoflow.graph.backproject.DEFAULT_CHUNKS``).

    Returns
    -------
    xarray.DataArray of shape (Z, Y, X), dims ``("z", "y", "x")``, lazy (Dask).
    """
    parse_interpolation(interpolation)
    volume_shape = _parse_shape(shape)
    stack = _as_dask(images, "images", TILT_DIMS, (-1, 64, -1))
    geometry = _geometry(angles, stack.shape[0], "images")
    if not isinstance(angles, TiltGeometry) and stack.shape[1] != volume_shape[1]:
        raise GeometryError(
            f"images have {stack.shape[1]} rows but shape has Y={volume_shape[1]}; "
            "single-axis image row y sees volume row y"
        )
    out = backproject_graph(
        stack, geometry, volume_shape, chunks=chunks, interpolation=interpolation
    )
    return xr.DataArray(out, dims=VOLUME_DIMS, name="backprojection")


def project(
    volume: object,
    angles: object,
    width: int,
    mode: str = "any",
    *,
    interpolation: str = "nearest",
    chunks: Sequence[int] | None = None,
) -> xr.DataArray:
    """Forward project a volume onto ``n_tilts`` detectors of ``Y`` rows and ``width`` columns.

    Parameters
    ----------
    volume : array of shape (Z, Y, X)
    angles : array of shape (n_tilts,) in degrees, or TiltGeometry
    width : int
        Detector columns ``U``.
    mode : {"any", "sum", "max"}
        ``any``: true where a non-zero voxel falls (bool); ``sum``: the exact adjoint of
        :func:`backproject`; ``max``: largest voxel value per pixel, ``-inf`` where none falls.
    interpolation : {"nearest", "linear"}
    chunks : (cz, cy, cx), optional
        Volume blocks for NumPy input (Dask input keeps its chunks).

    Returns
    -------
    xarray.DataArray of shape (n_tilts, Y, width), dims ``("tilt", "y", "x")``, coord ``angle``.
    """
    parse_mode(mode)
    parse_interpolation(interpolation)
    vol = _as_dask(volume, "volume", VOLUME_DIMS, tuple(chunks or (64, 128, 256)))
    geometry = as_geometry(angles)
    try:
        width = int(width)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"width must be a positive integer, got {width!r}") from exc
    if width < 1:
        raise GeometryError(f"width must be a positive integer, got {width}")
    out = project_graph(
        vol, geometry, (vol.shape[1], width), mode=mode, interpolation=interpolation
    )
    return xr.DataArray(
        out,
        dims=TILT_DIMS,
        coords={"angle": ("tilt", list(geometry.angles_deg))},
        name=f"projection_{mode}",
    )


def select_threshold(
    votes: object,
    masks: object,
    angles: object,
    *,
    candidates: Sequence[float] | np.ndarray | None = None,
    interpolation: str = "nearest",
) -> ThresholdResult:
    """The 2D-to-3D paper's Algorithm 1: pick the vote threshold whose projection fits the masks.

    For every candidate ``T`` (default every integer ``0 .. n_tilts-1``) the score is the mean
    over tilts of IoU(mask_t, FP_any(votes > T)_t) (IoU of two empty masks = 1). All candidates
    are scored from one max-projection (``any(votes > T) == max(votes) > T`` along a ray).

    Parameters
    ----------
    votes : array of shape (Z, Y, X)
    masks : array of shape (n_tilts, Y, U)
        2D masks (non-zero = object).
    angles : array of shape (n_tilts,) in degrees, or TiltGeometry
    candidates : array of shape (K,), optional
    interpolation : {"nearest", "linear"}

    Returns
    -------
    ThresholdResult
        ``.threshold`` (ties -> lowest), ``.thresholds`` and ``.scores`` (ascending, aligned).
    """
    parse_interpolation(interpolation)
    vol = _as_dask(votes, "votes", VOLUME_DIMS, (64, 128, 256))
    stack = _as_dask(masks, "masks", TILT_DIMS, (-1, 64, -1))
    geometry = _geometry(angles, stack.shape[0], "masks")
    if not isinstance(angles, TiltGeometry) and stack.shape[1] != vol.shape[1]:
        raise GeometryError(f"masks have {stack.shape[1]} rows but votes have Y={vol.shape[1]}")
    cands = parse_candidates(candidates, geometry.n_tilts)
    counts = threshold_counts_graph(vol, stack, geometry, cands, interpolation=interpolation)
    (values,) = dask.compute(counts)
    return result_from_counts(cands, *counts_split(np.asarray(values), cands.size))
