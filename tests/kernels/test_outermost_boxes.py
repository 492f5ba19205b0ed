"""3D boxes inside another box of the table are dropped (one object, one box)."""

from __future__ import annotations

import pandas as pd

from cryoflow.kernels.boxes import outermost

COLS = ["z0", "y0", "x0", "z1", "y1", "x1"]


def _table(rows: list[list[int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLS).assign(n_voxels=range(len(rows)))


def test_slivers_inside_a_box_go_and_separate_boxes_stay() -> None:
    t = _table(
        [
            [0, 10, 10, 128, 60, 70],  # an object
            [0, 10, 12, 4, 60, 13],  # a one-voxel-thick sliver inside it
            [120, 30, 69, 128, 40, 70],  # another, touching its faces from inside
            [0, 50, 65, 128, 90, 100],  # a second object overlapping the first: kept
        ]
    )
    out = outermost(t)
    assert out[COLS].values.tolist() == [[0, 10, 10, 128, 60, 70], [0, 50, 65, 128, 90, 100]]
    assert list(out.index) == [0, 1] and list(out["n_voxels"]) == [0, 3]


def test_equal_boxes_keep_the_first_and_empty_tables_pass() -> None:
    t = _table([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    assert list(outermost(t)["n_voxels"]) == [0]
    assert len(outermost(_table([]))) == 0


def test_fraction_keeps_a_whole_object_inside_a_merged_box() -> None:
    t = pd.DataFrame(
        [[0, 0, 0, 128, 300, 300], [0, 10, 10, 128, 100, 100], [0, 10, 150, 3, 90, 151]],
        columns=COLS,
    ).assign(n_voxels=[6_000_000, 1_600_000, 240])
    assert list(outermost(t, 0.05)["n_voxels"]) == [6_000_000, 1_600_000]
    assert list(outermost(t)["n_voxels"]) == [6_000_000]
