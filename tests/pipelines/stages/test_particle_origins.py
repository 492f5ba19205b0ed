"""Origins of classify/multibody particle files with fractional coordinates (RELION's rule:
the particle's centre lies at ``coordinate - origin / voxel``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryoflow.pipelines.stages.particle_inputs import SetInputs, posed_table, set_shifts

BOX, PX = 8, 2.5


def _set(coords: np.ndarray) -> SetInputs:
    t = pd.DataFrame({"tomogram": "t", "x": coords[:, 0], "y": coords[:, 1], "z": coords[:, 2]})
    for k, a in enumerate("xyz"):
        t[f"box_{a}0"] = np.rint(coords[:, k]) - BOX // 2  # extraction: whole-voxel starts
    n = len(t)
    tr = np.tile([-60.0, 60.0], (n, 1))
    return SetInputs(
        None, "s", t, BOX, PX, tr, np.arange(n) % 2, np.zeros((n, 3)), np.zeros((n, 3))
    )


def test_written_origins_put_the_centre_where_the_shift_says_and_read_back() -> None:
    coords = np.array([[10.4, 11.0, 9.6], [20.0, 7.5, 3.25]])  # (x, y, z), fractional
    inputs = _set(coords)
    shifts = np.array([[0.5, -0.2, 0.1], [-1.0, 0.0, 0.75]])  # (z, y, x) from the box centre
    out = posed_table(inputs, np.zeros((2, 3)), shifts)
    assert np.array_equal(out[["x", "y", "z"]].to_numpy(), coords)  # input coordinates kept
    origin = out[["origin_x_angstrom", "origin_y_angstrom", "origin_z_angstrom"]].to_numpy()
    centre_xyz = coords - origin / PX
    box_centre = np.rint(coords)  # box start + B // 2
    np.testing.assert_allclose(centre_xyz, box_centre + shifts[:, ::-1], atol=1e-9)
    back = inputs.table.assign(**{c: out[c] for c in out.columns if c.startswith("origin_")})
    np.testing.assert_allclose(set_shifts(back, BOX, PX), shifts, atol=1e-9)


def test_without_box_starts_origins_are_minus_the_shift() -> None:
    t = pd.DataFrame({"x": [3.0], "y": [4.0], "z": [5.0], "origin_x_angstrom": [2.5]})
    for a in "yz":
        t[f"origin_{a}_angstrom"] = 0.0
    np.testing.assert_allclose(set_shifts(t, BOX, PX), [[0.0, 0.0, -1.0]])
