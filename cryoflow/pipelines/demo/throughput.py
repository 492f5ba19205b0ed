"""What each demo stage processes, so its time becomes a throughput (tilts/s, voxels/s,
images/s) a user can scale to their own dataset.

The amounts are the inputs the stage reads, counted from the preset's resolved sizes
(:meth:`cryoflow.pipelines.demo.presets.DemoPreset.sizes`), never measured from a clock:

- ``simulate``: tilt images made (``tomograms x tilts``) and voxels (``tomograms x Z Y X``,
  each phantom built and reconstructed once);
- ``seg3d``, ``localize``: tilt images lifted (``test tomograms x tilts``);
- ``edges``: voxels of the hollow-sphere volume;
- ``compare``: images the trained networks annotate (per test tomogram: every tilt for each
  feature, and every z slice of the reconstruction for the conventional route);
- ``dewedge``: tomogram voxels filled (every simulated tomogram);
- ``particles``, ``pick``: voxels of the crowded particle tomograms.

Stages not listed (the small particle sets of the structure half) get no throughput.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["format_rates", "rates", "stage_work"]


def stage_work(sizes: Mapping[str, Any], stage: str) -> dict[str, float]:
    """Amounts ``{unit: count}`` stage ``stage`` processes under ``sizes`` (a preset's
    :meth:`~cryoflow.pipelines.demo.presets.DemoPreset.sizes`); empty when not counted."""
    n_tomo = int(sizes["n_tomograms"])
    n_test = len(sizes["test_tomograms"]) or 1
    tilts = int(sizes["n_tilts"])
    voxels = math.prod(int(s) for s in sizes["shape_zyx"])
    depth = int(sizes["shape_zyx"][0])
    crowded = sizes.get("particles", {})
    crowded_voxels = float(crowded.get("n_tomograms", 0)) * math.prod(
        int(s) for s in crowded.get("crowded", {}).get("shape", (0,))
    )
    n_features = int(sizes.get("n_features", 3))
    work: dict[str, dict[str, float]] = {
        "simulate": {"tilts": n_tomo * tilts, "voxels": n_tomo * voxels},
        "seg3d": {"tilts": n_test * tilts},
        "localize": {"tilts": n_test * tilts},
        "edges": {"voxels": float(sizes["sphere_size"]) ** 3},
        "compare": {"images": n_test * (n_features * tilts + depth)},
        "dewedge": {"voxels": n_tomo * voxels},
        "particles": {"voxels": crowded_voxels},
        "pick": {"voxels": crowded_voxels},
    }
    return {k: float(v) for k, v in work.get(stage, {}).items() if v > 0}


def rates(work: Mapping[str, float], seconds: float) -> dict[str, float]:
    """``{unit: count per second}``; empty for a stage that took no measurable time."""
    if not seconds > 0:
        return {}
    return {unit: count / seconds for unit, count in work.items()}


def format_rates(per_second: Mapping[str, float]) -> str:
    """``"12.3 tilts/s, 4.56 Mvoxels/s"`` (millions for voxels), ``""`` for none."""
    parts = []
    for unit, r in per_second.items():
        if unit == "voxels":
            parts.append(f"{r / 1e6:.3g} Mvoxels/s")
        else:
            parts.append(f"{r:.3g} {unit}/s")
    return ", ".join(parts)
