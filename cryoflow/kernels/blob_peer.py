"""The blob detector a picker is measured against: Laplacian-of-Gaussian peaks at a scale.

:func:`blob_peaks` finds LoG peaks at the particle's scale (``sigma = D / (2 sqrt 3)``) and
polarity, half a diameter apart, with every score; :func:`blob_f1` gives the F1 of those
peaks against true positions at two thresholds: the best of all (chosen on the truth: an upper
bound of what a blob detector can do) and the one the examples suggest (the lowest LoG
response at a peak next to an example). Peaks and truths may come from several tomograms:
one threshold for all, the matches counted per tomogram.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import ndimage

from cryoflow.kernels._guards import refuse_lazy
from cryoflow.kernels.candidates import particle_sigma
from cryoflow.kernels.match import match_picks
from cryoflow.kernels.peaks import local_maxima

__all__ = ["blob_f1", "blob_peaks"]


def blob_peaks(volume: np.ndarray, diameter_px: float, polarity: float) -> pd.DataFrame:
    """LoG peaks of ``volume`` (Z, Y, X) at the particle's scale and polarity (+1: dense is
    bright), half a diameter apart: a ``x, y, z, score`` table (all scores)."""
    refuse_lazy(volume, "blob_peaks")
    v = np.asarray(volume, dtype=np.float32)
    v = (v - v.mean()) / (v.std() or 1.0)
    log = -polarity * ndimage.gaussian_laplace(v, particle_sigma(diameter_px))
    return local_maxima(log, min_distance=0.5 * diameter_px, threshold=-np.inf)


def _f1(
    peaks: Mapping[str, pd.DataFrame], truth: Mapping[str, np.ndarray], t: float, tol: float
) -> float:
    tp = fp = fn = 0
    for name, true_xyz in truth.items():
        p = peaks.get(name)
        xyz = np.zeros((0, 3)) if p is None else p[p["score"] >= t][["x", "y", "z"]].to_numpy(float)
        s = match_picks(xyz, true_xyz, tol)
        tp, fp, fn = tp + s.tp, fp + s.fp, fn + s.fn
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def blob_f1(
    peaks: Mapping[str, pd.DataFrame],
    truth: Mapping[str, np.ndarray],
    examples: Mapping[str, np.ndarray],
    tol: float,
    n_thresholds: int = 400,
) -> dict[str, float]:
    """``{"best_f1", "best_threshold", "example_threshold_f1"}`` of tomogram -> peaks (from
    :func:`blob_peaks`) against tomogram -> true ``(n, 3)`` positions ``x, y, z``; ``examples``
    tomogram -> the user's example positions."""
    scores = np.concatenate([p["score"].to_numpy() for p in peaks.values()] or [np.zeros(0)])
    best, best_t = 0.0, float("nan")
    for t in (
        np.unique(np.quantile(scores, np.linspace(0.5, 1.0, n_thresholds))) if scores.size else []
    ):
        f1 = _f1(peaks, truth, float(t), tol)
        if f1 > best:
            best, best_t = f1, float(t)
    at = []  # the lowest response at a peak next to an example
    for name, ex in examples.items():
        p = peaks.get(name)
        if p is None or not len(p):
            continue
        xyz = p[["x", "y", "z"]].to_numpy(np.float64)
        for e in np.asarray(ex, dtype=float).reshape(-1, 3):
            d = np.linalg.norm(xyz - e, axis=1)
            if d.min() <= tol:
                at.append(float(p["score"].to_numpy()[np.argmin(d)]))
    t_ex = min(at) if at else float("inf")
    return {
        "best_f1": best,
        "best_threshold": best_t,
        "example_threshold_f1": _f1(peaks, truth, t_ex, tol),
    }
