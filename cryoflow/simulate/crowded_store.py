"""Crowded tomograms written into a cryoflow store, with their tilt range and truth picks.

:func:`write_crowded` stores a :class:`~cryoflow.simulate.crowded.CrowdedTomogram`'s
reconstruction as volume ``tomogram`` of tomogram ``name`` with the tilt range it was
reconstructed from (its missing wedge, what ``extract`` and ``average`` read);
:func:`example_marks` draws the few example targets a user would mark, seeded;
:func:`molecule_truth_map` renders the target molecule in its own frame (a box of side ``B``,
centre voxel ``B // 2``), the map an average of its picks should converge to.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cryoflow.simulate.crowded import CrowdedTomogram

__all__ = ["example_marks", "molecule_truth_map", "target_xyz", "write_crowded"]


def write_crowded(
    store: Any, name: str, tomo: CrowdedTomogram, *, chunk: int | None = None
) -> None:
    """Write ``tomo.tomogram`` as ``tomograms/<name>/volumes/tomogram`` (with its pyramid) and
    its tilt range (source ``"simulated"``)."""
    from cryoflow.io.store import write_volume
    from cryoflow.io.tomograms import TiltRange, tilt_range_attrs

    cfg = tomo.config
    write_volume(
        store,
        name,
        "tomogram",
        tomo.tomogram,
        pixel_size_angstrom=cfg.pixel_size_angstrom,
        provenance={"step": "simulate-crowded", "parameters": cfg.to_dict()},
        attrs=tilt_range_attrs(TiltRange(cfg.tilt_min_deg, cfg.tilt_max_deg, "simulated")),
    )


def target_xyz(truth: pd.DataFrame, kind: str = "target") -> np.ndarray:
    """ndarray (n, 3): ``x, y, z`` (voxels) of the truth rows of ``kind``."""
    return truth[truth["kind"] == kind][["x", "y", "z"]].to_numpy(np.float64)


def example_marks(name: str, targets: np.ndarray, n: int, seed: int) -> pd.DataFrame:
    """``n`` of ``targets`` (n_targets, 3) chosen at random (``seed``) as the user's examples:
    a ``tomogram, x, y, z`` table."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(targets), size=min(int(n), len(targets)), replace=False)
    e = targets[np.sort(chosen)]
    return pd.DataFrame({"tomogram": name, "x": e[:, 0], "y": e[:, 1], "z": e[:, 2]})


def molecule_truth_map(
    shape: str, diameter_angstrom: float, box: int, pixel_size_angstrom: float
) -> np.ndarray:
    """ndarray (B, B, B) float32: molecule ``shape`` of that diameter in its body frame (no
    rotation; centre of mass at voxel ``B // 2``), soft-edged and blurred by one voxel."""
    from cryoflow.simulate.molecules import molecule
    from cryoflow.simulate.subtomo import render_shape, shape_from_template

    tmpl = molecule(shape, diameter_angstrom)
    return render_shape(shape_from_template(tmpl), int(box), pixel_size_angstrom, blur_px=1.0)
