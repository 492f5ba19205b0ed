"""All figures of a missing-wedge filling against a known truth, and the peers it must beat.

:func:`filling_figures` measures one estimate; :func:`peer_volumes` makes the trivial peers of a
tomogram (one fixed, small grid of settings; the best of them on the truth is the bar, which
flatters the peers). Figures (keys of the returned dict):

- ``wedge_cc``: Fourier correlation with the truth over the missing wedge, ``0 < |k| <= k_max``
  (:func:`cryoflow.kernels.wedge_metrics.wedge_cc`); ``wedge_cc_deep``: only components at
  least ``deep_deg`` beyond the tilt range (no measured neighbour near); ``wedge_cc_half``:
  ``|k| <= k_max / 2``.
- ``cc``: real-space (Pearson) correlation with the truth.
- ``copy_cc``: correlation of the estimate's wedge with a neighbour copy of ``reference``'s
  (:func:`~cryoflow.kernels.wedge_metrics.neighbour_copy`: the "fake wedge").
- ``z_ratio``: median z/x FWHM of the given objects
  (:func:`cryoflow.kernels.wedge_shapes.z_elongation`).
- ``membrane_facing``, ``membrane_side``: membrane contrast, normal within 30 degrees of the beam
  or of the ``xy`` plane; ``membrane_ratio`` their quotient
  (:func:`~cryoflow.kernels.wedge_shapes.membrane_contrast`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.wedge_metrics import (
    fourier_cc,
    neighbour_copy,
    real_space_cc,
    wedge_cc,
    wedge_region,
)
from cryoflow.kernels.wedge_peers import blur_threshold, rectified_square
from cryoflow.kernels.wedge_shapes import membrane_contrast, z_elongation

#: the peers' settings (name -> (filter, keyword arguments)), fixed before any measurement
PEERS: dict[str, tuple[str, dict[str, float]]] = {
    "blur_threshold_s1_q70": ("blur_threshold", {"sigma_px": 1.0, "quantile": 0.70}),
    "blur_threshold_s1_q85": ("blur_threshold", {"sigma_px": 1.0, "quantile": 0.85}),
    "blur_threshold_s2_q70": ("blur_threshold", {"sigma_px": 2.0, "quantile": 0.70}),
    "blur_threshold_s2_q85": ("blur_threshold", {"sigma_px": 2.0, "quantile": 0.85}),
    "rectified_square_s0": ("rectified_square", {"sigma_px": 0.0}),
    "rectified_square_s1": ("rectified_square", {"sigma_px": 1.0}),
    "rectified_square_s2": ("rectified_square", {"sigma_px": 2.0}),
    "gaussian_s2": ("gaussian", {"sigma_px": 2.0}),  # linear: denoises, cannot fill
}


def peer_volumes(tomogram: np.ndarray) -> dict[str, np.ndarray]:
    """The peers of :data:`PEERS` applied to ``tomogram`` (dense matter positive)."""
    refuse_lazy(tomogram, "peer_volumes")
    t = np.asarray(tomogram, dtype=np.float32)
    out = {}
    for name, (kind, kw) in PEERS.items():
        if kind == "blur_threshold":
            out[name] = blur_threshold(t, **kw)
        elif kind == "rectified_square":
            out[name] = rectified_square(t, **kw)
        else:
            out[name] = ndimage.gaussian_filter(t, kw["sigma_px"])
    return out


def filling_figures(
    estimate: np.ndarray,
    truth: np.ndarray,
    tilt_range_deg: Sequence[float],
    *,
    reference: np.ndarray | None = None,
    objects: tuple[np.ndarray, np.ndarray] | None = None,
    membranes: np.ndarray | None = None,
    k_max: float = 0.25,
    deep_deg: float = 15.0,
) -> dict[str, float]:
    """Figures of ``estimate`` (``(Z, Y, X)``) against ``truth`` (see the module docstring).

    Parameters
    ----------
    reference : ndarray of shape (Z, Y, X), optional
        The tomogram the estimate came from (for ``copy_cc``).
    objects : (centres (n, 3) zyx, radii (n,)), optional
        Round objects for ``z_ratio``.
    membranes : bool ndarray of shape (Z, Y, X), optional
        The true membrane voxels.
    """
    est = np.asarray(estimate, dtype=np.float32)
    figs = {
        "wedge_cc": wedge_cc(est, truth, tilt_range_deg, k_max=k_max),
        "wedge_cc_deep": wedge_cc(est, truth, tilt_range_deg, k_max=k_max, min_angle_deg=deep_deg),
        "wedge_cc_half": wedge_cc(est, truth, tilt_range_deg, k_max=k_max / 2),
        "cc": real_space_cc(est, truth),
    }
    if reference is not None:
        region = wedge_region(est.shape, tilt_range_deg, k_max=k_max)
        figs["copy_cc"] = fourier_cc(est, neighbour_copy(reference, tilt_range_deg), region)
    if objects is not None:
        ratios = z_elongation(est, objects[0], objects[1])
        figs["z_ratio"] = float(np.nanmedian(ratios)) if np.isfinite(ratios).any() else float("nan")
    if membranes is not None and np.any(membranes):
        mc = membrane_contrast(est, membranes)
        figs["membrane_facing"] = mc["facing_beam"]
        figs["membrane_side"] = mc["side_on"]
        figs["membrane_ratio"] = (
            mc["facing_beam"] / mc["side_on"] if mc["side_on"] > 0 else float("nan")
        )
    return {k: float(v) for k, v in figs.items()}
