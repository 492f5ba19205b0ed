"""Algorithm 3 building blocks: chunked labelling, box masks, box statistics, box files."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from cryoflow.errors import InputFileError
from cryoflow.graph.labels import label
from cryoflow.io.boxes import read_boxes, write_boxes
from cryoflow.kernels.boxes import box_masks, boxes_from_masks
from cryoflow.kernels.components import (
    block_stats,
    bounding_boxes,
    face_pairs,
    label_block,
    merge_stats,
)
from cryoflow.kernels.iou import box_iou, mask_iou, match_boxes


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal label images up to a renumbering of the non-zero labels."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]], axis=1), axis=0)
    return len(np.unique(pairs[:, 0])) == len(pairs) == len(np.unique(pairs[:, 1]))


def blobs(shape: tuple[int, int, int], seed: int, level: float = 0.53) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 1.2) > level


@pytest.mark.parametrize("connectivity", [1, 2, 3])
@pytest.mark.parametrize("chunks", [(5, 7, 9), (18, 21, 23), (3, 21, 4), (18, 2, 23)])
def test_chunked_label_equals_scipy(connectivity: int, chunks: tuple[int, int, int]) -> None:
    mask = blobs((18, 21, 23), seed=connectivity)
    ref, n_ref = ndimage.label(mask, ndimage.generate_binary_structure(3, connectivity))
    labels, n = label(da.from_array(mask, chunks=chunks), connectivity=connectivity)
    got, n_got = da.compute(labels, n, scheduler="sync")
    assert n_got == n_ref > 3
    assert got.dtype == np.int32 and got.max() == n_ref
    assert same_partition(got, ref)


def test_label_merges_diagonal_contacts_only_with_higher_connectivity() -> None:
    mask = np.zeros((4, 4, 4), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True  # corner contact across a chunk corner
    for conn, expected in ((1, 2), (2, 2), (3, 1)):
        labels, n = label(da.from_array(mask, chunks=2), connectivity=conn)
        assert n.compute(scheduler="sync") == expected


def test_label_names_are_deterministic() -> None:
    mask = da.from_array(blobs((8, 8, 8), 0), chunks=4)
    a, _ = label(mask, name="label-t1")
    b, _ = label(mask, name="label-t1")
    assert a.name == b.name and str(a.name).startswith("label-t1")


def test_label_kernels_refuse_dask() -> None:
    with pytest.raises(TypeError):
        label_block(da.zeros((2, 2, 2), chunks=1))


def test_face_pairs_shifted_contact() -> None:
    slab = np.zeros((2, 3, 3), np.int64)
    slab[0, 0, 0] = 5
    slab[1, 1, 1] = 7
    assert face_pairs(slab, 0, connectivity=1).shape == (0, 2)
    assert face_pairs(slab, 0, connectivity=3).tolist() == [[5, 7]]


def test_block_stats_merge_equals_whole() -> None:
    mask = blobs((12, 14, 16), seed=4)
    labels, _ = ndimage.label(mask)
    votes = np.random.default_rng(0).integers(0, 9, mask.shape)
    whole = block_stats(labels, votes)
    parts = [
        block_stats(labels[z : z + 5, y : y + 6, :], votes[z : z + 5, y : y + 6, :], (z, y, 0))
        for z in range(0, 12, 5)
        for y in range(0, 14, 6)
    ]
    merged = merge_stats(parts)
    pd.testing.assert_frame_equal(merged.reset_index(drop=True), whole, check_dtype=False)
    boxes = bounding_boxes(merged, "blob")
    for _, row in boxes.iterrows():
        sel = labels == row["label"]
        zz, yy, xx = np.nonzero(sel)
        assert (row["z0"], row["z1"]) == (zz.min(), zz.max() + 1)
        assert (row["x0"], row["x1"]) == (xx.min(), xx.max() + 1)
        assert row["support"] == pytest.approx(votes[sel].mean())


def test_box_masks_paint_half_open_boxes() -> None:
    boxes = pd.DataFrame(
        [[0, "mito", 0.9, 1, 2, 3, 5], [1, "mito", 0.2, 0, 0, 2, 2], [1, "other", 1.0, 4, 4, 9, 9]],
        columns=["tilt", "class", "score", "y0", "x0", "y1", "x1"],
    )
    m = box_masks(boxes, 2, (6, 7), class_name="mito", min_score=0.5)
    expected = np.zeros((2, 6, 7), bool)
    expected[0, 1:3, 2:5] = True
    np.testing.assert_array_equal(m, expected)
    other = box_masks(boxes, 2, (6, 7), class_name="other")
    assert other[1, 4:, 4:].all() and other.sum() == 2 * 3  # clipped to the image
    with pytest.raises(ValueError, match="tilt 1"):
        box_masks(boxes, 1, (6, 7))
    from cryoflow.graph.boxes import box_masks_graph as lazy_box_masks

    lazy = lazy_box_masks(boxes, 2, (6, 7), class_name="mito", min_score=0.5)
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), m)


def test_boxes_from_masks_roundtrip() -> None:
    masks = np.zeros((3, 10, 12), bool)
    masks[0, 2:5, 3:8] = True
    masks[2, 6:9, 0:2] = True
    boxes = boxes_from_masks(masks, "mito", min_pixels=1)
    assert boxes[["tilt", "y0", "x0", "y1", "x1"]].to_numpy().tolist() == [
        [0, 2, 3, 5, 8],
        [2, 6, 0, 9, 2],
    ]
    np.testing.assert_array_equal(box_masks(boxes, 3, (10, 12)), masks)
    jittered = boxes_from_masks(masks, "mito", jitter_px=1.0, seed=3, min_pixels=1)
    again = boxes_from_masks(masks, "mito", jitter_px=1.0, seed=3, min_pixels=1)
    pd.testing.assert_frame_equal(jittered, again)
    assert not np.allclose(jittered[["y0"]].to_numpy(), boxes[["y0"]].to_numpy())


def test_box_iou_and_matching() -> None:
    a = np.array([[0, 0, 0, 2, 2, 2], [10, 10, 10, 12, 12, 12]], float)
    b = np.array([[10, 10, 11, 12, 12, 13], [0, 0, 0, 2, 2, 2], [50, 50, 50, 51, 51, 51]], float)
    iou = box_iou(a, b)
    assert iou[0, 1] == 1.0 and iou[1, 0] == pytest.approx(4 / 12)
    pi, ti, v = match_boxes(a, b)
    assert sorted(zip(pi.tolist(), ti.tolist(), strict=True)) == [(0, 1), (1, 0)]
    assert v.mean() == pytest.approx((1 + 4 / 12) / 2)
    assert mask_iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_box_files_roundtrip(tmp_path, suffix: str) -> None:
    b2 = pd.DataFrame(
        {
            "tilt": [0, 3],
            "class": ["mito", "granule"],
            "score": [0.5, 1.0],
            "y0": [1.0, 2.5],
            "x0": [0.0, 1.0],
            "y1": [4.0, 6.0],
            "x1": [3.0, 2.0],
        }
    )
    write_boxes(tmp_path / f"b2{suffix}", b2, ndim=2)
    pd.testing.assert_frame_equal(
        read_boxes(tmp_path / f"b2{suffix}", ndim=2), b2, check_dtype=False
    )
    b3 = pd.DataFrame(
        {
            "class": ["mito"],
            "support": [7.5],
            "z0": [1],
            "y0": [2],
            "x0": [3],
            "z1": [4],
            "y1": [5],
            "x1": [6],
            "tomogram": ["t1"],
        }
    )
    write_boxes(tmp_path / f"b3{suffix}", b3, ndim=3)
    back = read_boxes(tmp_path / f"b3{suffix}", ndim=3)
    assert back["tomogram"].tolist() == ["t1"] and back["z1"].tolist() == [4]


def test_box_files_refuse_bad_input(tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("tilt,class,score,y0,x0,y1\n0,a,1,0,0,1\n")
    with pytest.raises(InputFileError, match="missing column"):
        read_boxes(bad)
    bad.write_text("tilt,class,score,y0,x0,y1,x1\n0,a,1,5,0,1,1\n")
    with pytest.raises(InputFileError, match="upper bound"):
        read_boxes(bad)
    bad.write_text("tilt,class,score,y0,x0,y1,x1\n-1,a,1,0,0,1,1\n")
    with pytest.raises(InputFileError, match="tilt"):
        read_boxes(bad)
    js = tmp_path / "b.json"
    js.write_text(json.dumps({"kind": "cryoflow.boxes3d", "boxes": []}))
    with pytest.raises(InputFileError, match="expected"):
        read_boxes(js, ndim=2)
    with pytest.raises(InputFileError, match="csv or .json"):
        read_boxes(tmp_path / "b.txt")
    with pytest.raises(InputFileError, match="no such"):
        read_boxes(tmp_path / "missing.csv")
