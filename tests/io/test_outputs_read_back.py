"""Files cryoflow writes, read back with the libraries users read them with (pandas, json,
mrcfile), not with cryoflow's own readers."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest

from cryoflow.io.boxes import BOX2D_COLUMNS, BOX3D_COLUMNS, write_boxes
from cryoflow.io.mrc import write_mrc_header_only


def _boxes2d() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tilt": [0, 3],
            "class": ["granule", "membrane"],
            "score": [0.9, 0.25],
            "y0": [1.0, 2.5],
            "x0": [4.0, 0.0],
            "y1": [9.0, 7.5],
            "x1": [8.0, 3.0],
            "note": ["a", "b"],
        }
    )


def test_box_csv_reads_back_with_pandas(tmp_path: Path) -> None:
    path = write_boxes(tmp_path / "out" / "boxes.csv", _boxes2d())
    table = pd.read_csv(path)
    assert list(table.columns) == [*BOX2D_COLUMNS, "note"]  # header first, extras kept
    pd.testing.assert_frame_equal(table, _boxes2d(), check_dtype=False)


def test_box_json_reads_back_with_json(tmp_path: Path) -> None:
    boxes = pd.DataFrame([["1", 3.5, 0, 1, 2, 4, 5, 6]], columns=BOX3D_COLUMNS)
    doc = json.loads(write_boxes(tmp_path / "b.json", boxes, ndim=3).read_text())
    assert doc["kind"] == "cryoflow.boxes3d" and doc["version"] == 1
    assert doc["boxes"] == [
        {"class": "1", "support": 3.5, "z0": 0, "y0": 1, "x0": 2, "z1": 4, "y1": 5, "x1": 6}
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint16, np.int8])
def test_streamed_mrc_reads_back_with_mrcfile(tmp_path: Path, dtype) -> None:
    data = (np.arange(2 * 3 * 4) % 100).astype(dtype).reshape(2, 3, 4)
    mrc = write_mrc_header_only(tmp_path / "v.mrc", (2, 3, 4), np.dtype(dtype), 6.25)
    try:
        mrc.data[...] = data
    finally:
        mrc.close()
    with mrcfile.open(tmp_path / "v.mrc") as m:
        assert m.data.dtype == np.dtype(dtype) and m.data.shape == (2, 3, 4)
        np.testing.assert_array_equal(m.data, data)
        assert (float(m.voxel_size.x), float(m.voxel_size.y), float(m.voxel_size.z)) == (
            6.25,
            6.25,
            6.25,
        )
