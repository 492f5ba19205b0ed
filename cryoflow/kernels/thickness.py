"""A default reconstruction thickness from the data, and the size of the volume it makes.

Without ``--thickness`` the old default was the detector width (a 4096-deep volume for a 4k
camera). :func:`estimate_thickness` instead finds the specimen in a quick preview:

1. the caller bins the tilt series to at most ``PREVIEW_WIDTH`` pixels across
   (:func:`preview_bin_factor`) and passes that small eager stack with its geometry;
2. ramp filter (across the tilt axis) and back-project it into a preview volume as deep as it
   is wide (the thickest specimen the detector can hold);
3. the profile ``s(z)`` = standard deviation of each z slice over the central 60 % of (y, x);
   the background ``b`` is the median of ``s`` over the outer ``EDGE`` of z on both sides, the
   peak ``p`` its maximum; refuse (``ConfigError``) when ``p < CONTRAST * b``: no specimen
   stands out, the user must say ``--thickness``;
4. the specimen spans the outermost z where the (lightly smoothed) ``s > b + HALF * (p - b)``;
   the thickness
   is twice its farthest edge from the centre (the volume stays centred), plus ``MARGIN``,
   times the bin factor, rounded up to a multiple of 8, within ``[MIN_THICKNESS, width]``.

A limited tilt range elongates everything along z (the missing wedge), so the run found is a
little longer than the specimen; with the margin the choice errs on the thick side. Units:
voxels of the (unbinned) reconstruction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cryoflow.errors import ConfigError
from cryoflow.geometry import TiltGeometry
from cryoflow.geometry.tilt_axis import filter_directions
from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.backproject import backproject_block
from cryoflow.kernels.ramp import ramp_filter

PREVIEW_WIDTH = 128  # preview pixels across the widest detector axis
EDGE = 0.15  # fraction of the preview depth on each side taken as background
CONTRAST = 1.5  # the peak must stand this far above the background
HALF = 0.5  # specimen edge: this fraction of the way from background to peak
MARGIN = 0.2  # added thickness (fraction)
MIN_THICKNESS = 16


@dataclass(frozen=True)
class ThicknessChoice:
    """The volume depth to reconstruct and why.

    Attributes
    ----------
    thickness : int
        Z in voxels of the reconstruction.
    source : str
        ``"--thickness"`` or ``"estimated from the data"``.
    specimen_px : tuple of float or None
        The specimen's z extent found, ``(lo, hi)`` in centred voxels, when estimated.
    contrast : float or None
        Peak over background of the z profile, when estimated.
    """

    thickness: int
    source: str
    specimen_px: tuple[float, float] | None = None
    contrast: float | None = None


def preview_bin_factor(detector_shape: Sequence[int], width: int = PREVIEW_WIDTH) -> int:
    """The bin factor that brings the detector ``(V, U)`` to at most ``width`` pixels across."""
    return max(1, int(np.ceil(max(int(s) for s in detector_shape) / width)))


def volume_size(shape: Sequence[int], dtype: object = np.float32) -> str:
    """``"300 x 4096 x 4096 float32 voxels, 18.8 GiB"`` for a volume of ``shape`` (Z, Y, X)."""
    d = np.dtype(dtype)  # type: ignore[call-overload]
    nbytes = int(np.prod([int(s) for s in shape], dtype=np.int64)) * d.itemsize
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            size = f"{nbytes / scale:.1f} {unit}"
            break
    else:
        size = f"{nbytes} bytes"
    return " x ".join(str(int(s)) for s in shape) + f" {d.name} voxels, {size}"


def choose_thickness(
    thickness: int | None,
    preview: np.ndarray | None,
    preview_geometry: TiltGeometry | None,
    *,
    bin_factor: int,
    width: int,
) -> ThicknessChoice:
    """``thickness`` when given (``--thickness``), else :func:`estimate_thickness` on the preview."""
    if thickness is not None:
        if int(thickness) < 1:
            raise ConfigError(f"--thickness must be >= 1, got {thickness}")
        return ThicknessChoice(int(thickness), "--thickness")
    if preview is None or preview_geometry is None:
        raise ConfigError("no --thickness and no preview to estimate it from; pass --thickness Z")
    return estimate_thickness(preview, preview_geometry, bin_factor=bin_factor, width=width)


def estimate_thickness(
    preview: np.ndarray,
    geometry: TiltGeometry,
    *,
    bin_factor: int = 1,
    width: int | None = None,
) -> ThicknessChoice:
    """Estimate the specimen thickness from a small (binned) tilt series (module docstring).

    Parameters
    ----------
    preview : ndarray of shape (n_tilts, Vp, Up)
        The tilt series binned by ``bin_factor`` (at most ~``PREVIEW_WIDTH`` across).
    geometry : TiltGeometry
        The geometry of ``preview`` (binned: ``cryoflow.geometry.binning.bin_geometry``).
    bin_factor : int
        Unbinned pixels per preview pixel.
    width : int, optional
        Upper bound of the thickness (unbinned voxels); default ``Up * bin_factor``.

    Raises
    ------
    ConfigError
        When no specimen stands out of the background along z (pass ``--thickness``).
    """
    refuse_lazy(preview, "preview")
    images = np.asarray(preview, dtype=np.float32)
    n, V, U = images.shape
    f = int(bin_factor)
    limit = int(width) if width is not None else U * f
    # 2. preview volume as deep as it is wide
    Z = max(U, 8)
    filtered = ramp_filter(images, filter_directions(geometry))
    whole = (slice(0, Z), slice(0, V), slice(0, U))
    vol = backproject_block(
        filtered, geometry, (Z, V, U), (V, U), whole, interpolation="linear", n_threads=1
    )
    # 3. z profile over the central (y, x) region
    y0, y1 = int(0.2 * V), max(int(0.8 * V), int(0.2 * V) + 1)
    x0, x1 = int(0.2 * U), max(int(0.8 * U), int(0.2 * U) + 1)
    profile = vol[:, y0:y1, x0:x1].reshape(Z, -1).std(axis=1).astype(np.float64)
    box = 2 * max(1, Z // 64) + 1  # a light smoothing along z
    profile = np.convolve(np.pad(profile, box // 2, mode="edge"), np.ones(box) / box, "valid")
    edge = max(1, int(round(EDGE * Z)))
    background = float(np.median(np.concatenate([profile[:edge], profile[-edge:]])))
    peak_z = int(np.argmax(profile))
    peak = float(profile[peak_z])
    contrast = peak / background if background > 0 else float("inf")
    if not np.isfinite(peak) or contrast < CONTRAST:
        raise ConfigError(
            f"cannot tell the specimen thickness from the data (its z profile peaks at "
            f"{contrast:.2f}x the background, need {CONTRAST}x); pass --thickness Z"
        )
    # 4. the outermost slices above the half level (the specimen may have quiet layers inside)
    level = background + HALF * (peak - background)
    above = np.flatnonzero(profile > level)
    lo, hi = int(above[0]), int(above[-1])
    centre = (Z - 1) / 2
    reach = max(abs(lo - 0.5 - centre), abs(hi + 0.5 - centre))
    thickness = 2 * reach * (1 + MARGIN) * f
    z = int(np.ceil(thickness / 8) * 8)
    z = int(min(max(z, MIN_THICKNESS), limit))
    return ThicknessChoice(
        z, "estimated from the data", ((lo - centre) * f, (hi - centre) * f), contrast
    )
