"""The picking network's candidate search at training time: its threshold from the examples
and the candidates of the example tomograms (:mod:`cryoflow.kernels.candidates`; step 2 of
:mod:`cryoflow.models.picktrain`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.spatial import cKDTree

from cryoflow.kernels.candidates import candidate_voxels, response_radius
from cryoflow.kernels.invariants import InvariantSpec, halo

__all__ = ["candidate_search"]


def candidate_search(
    norm: Mapping[str, np.ndarray],
    marks_zyx: Mapping[str, np.ndarray],
    inv: InvariantSpec,
    polarity: float,
    fraction: float,
) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The candidate search's threshold and, per tomogram, its candidates and the candidate
    nearest each mark (:mod:`cryoflow.kernels.candidates`, step 2 of :mod:`cryoflow.models.picktrain`).

    The threshold is ``fraction`` times the weakest blob response among the candidates at the
    marks (the local maximum within ``max(2, D / 4)`` voxels of each), so every example and
    particles up to ``1 / fraction`` times weaker are scored. Marks with no candidate that
    near are left out of that minimum; when no mark has one, or the weakest response is not
    positive, the threshold is the lowest candidate's response (every local maximum).
    """
    radius = response_radius(inv.diameter_px, halo(inv))
    near = max(2.0, 0.25 * inv.diameter_px)
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    at_marks: dict[str, np.ndarray] = {}
    responses: list[float] = []
    for name, vol in norm.items():
        pts, resp = candidate_voxels(vol, inv.diameter_px, polarity, -np.inf, radius=radius)
        found[name] = (pts, resp)
        marks = marks_zyx.get(name, np.zeros((0, 3), np.int64))
        if not len(marks):
            at_marks[name] = np.zeros((0, 3), np.int64)
            continue
        d, i = cKDTree(pts).query(marks) if len(pts) else (np.full(len(marks), np.inf), None)
        ok = d <= near
        responses.extend(resp[i[ok]].tolist() if i is not None else [])
        at_marks[name] = pts[i[ok]] if i is not None else np.zeros((0, 3), np.int64)
    weakest = min(responses) if responses else -np.inf
    floor = min((float(r.min()) for _, r in found.values() if len(r)), default=0.0)
    threshold = fraction * weakest if np.isfinite(weakest) and weakest > 0 else floor
    cands = {n: p[r >= threshold] for n, (p, r) in found.items()}
    return float(threshold), cands, at_marks
