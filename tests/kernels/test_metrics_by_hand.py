"""Overlap metrics on cases worked out by hand (the expected numbers are in the comments)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryoflow.kernels.iou import box_iou, mask_iou, match_boxes, surface_scores
from cryoflow.models.detector import average_precision


def _row_mask(width: int, start: int, stop: int) -> np.ndarray:
    m = np.zeros((1, width), bool)
    m[0, start:stop] = True
    return m


# ---------------------------------------------------------------------------- mask IoU
@pytest.mark.parametrize("fn", [mask_iou], ids=["kernels.mask_iou"])
def test_mask_iou_by_hand(fn) -> None:
    a = _row_mask(10, 0, 4)  # |a| = 4
    b = _row_mask(10, 2, 8)  # |b| = 6, |a & b| = 2, |a | b| = 8
    assert fn(a, b) == pytest.approx(2 / 8)  # not 2 / max(4, 6)
    assert fn(b, a) == pytest.approx(0.25)
    assert fn(a, a) == 1.0
    assert fn(a, _row_mask(10, 5, 9)) == 0.0  # disjoint
    assert fn(np.zeros((2, 3), bool), np.zeros((2, 3), bool)) == 1.0  # both empty
    assert fn(a, np.zeros_like(a)) == 0.0  # one empty
    cube = np.zeros((4, 4, 4), bool)
    cube[:2, :2, :2] = True  # 8 voxels
    shifted = np.roll(cube, 1, axis=2)  # overlap 4, union 12
    assert fn(cube, shifted) == pytest.approx(4 / 12)


def test_mask_iou_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="equal shapes"):
        mask_iou(np.zeros((2, 2)), np.zeros((2, 3)))


# ---------------------------------------------------------------------------- box IoU
def test_box_iou_by_hand() -> None:
    a = np.array([[0, 0, 2, 2]])  # 4 pixels (hi is exclusive)
    b = np.array([[1, 1, 3, 3], [2, 0, 4, 2], [0, 0, 2, 2], [0, 0, 4, 4], [5, 5, 5, 7]])
    # vs (1,1,3,3): inter 1, union 7; vs (2,0,4,2): touching, 0; itself: 1;
    # vs (0,0,4,4): inter 4, union 16; vs an empty box: 0
    np.testing.assert_allclose(box_iou(a, b), [[1 / 7, 0.0, 1.0, 0.25, 0.0]])
    cube = np.array([[0, 0, 0, 2, 2, 2]])  # 8 voxels
    half = np.array([[1, 0, 0, 3, 2, 2]])  # inter 4, union 12
    np.testing.assert_allclose(box_iou(cube, half), [[1 / 3]])
    assert box_iou(a, b).shape == (1, 5)


# ---------------------------------------------------------------------------- matching
def _band(x0: float, x1: float) -> list[float]:
    """A box one pixel tall covering columns [x0, x1): its IoU is the interval IoU."""
    return [0, x0, 1, x1]


def test_zero_iou_pairs_are_never_matches() -> None:
    pred = np.array([_band(0, 1), _band(30, 40)])
    truth = np.array([_band(5, 6), _band(50, 60)])
    p, t, iou = match_boxes(pred, truth)
    assert len(p) == len(t) == len(iou) == 0
    # one true overlap plus one disjoint pair: only the overlap is a match
    pred = np.array([_band(0, 10), _band(30, 40)])
    truth = np.array([_band(5, 15), _band(50, 60)])
    p, t, iou = match_boxes(pred, truth)
    assert p.tolist() == [0] and t.tolist() == [0]
    np.testing.assert_allclose(iou, [5 / 15])


def test_matching_maximises_total_iou_not_greedily() -> None:
    # T1 = [0, 10), T2 = [10, 20); P1 = [6, 16): IoU 4/16 with T1, 6/14 with T2;
    # P2 = [15, 25): IoU 5/15 with T2 only. Greedy takes P1-T2 and leaves P2 unmatched;
    # the optimum is P1-T1 + P2-T2 (total 0.25 + 0.333 > 0.4286).
    truth = np.array([_band(0, 10), _band(10, 20)])
    pred = np.array([_band(6, 16), _band(15, 25)])
    p, t, iou = match_boxes(pred, truth)
    assert sorted(zip(p.tolist(), t.tolist(), strict=True)) == [(0, 0), (1, 1)]
    np.testing.assert_allclose(iou, [4 / 16, 5 / 15])
    assert match_boxes(pred[:0], truth)[0].size == 0


# ---------------------------------------------------------------------------- surfaces
def test_surface_scores_by_hand() -> None:
    truth = np.zeros((6, 6, 6), bool)
    truth[0, 0, 0:5] = True  # a line of 5 voxels
    pred = np.zeros_like(truth)
    pred[0, 1, 0:5] = True  # the same line, 1 voxel off: within 1.5
    pred[5, 5, 5] = True  # and one voxel far from everything
    s = surface_scores(pred, truth, tolerance=1.5)
    assert (s["n_pred"], s["n_truth"]) == (6, 5)
    assert s["precision"] == pytest.approx(5 / 6)
    assert s["recall"] == pytest.approx(1.0)
    assert s["f1"] == pytest.approx(2 * (5 / 6) / (5 / 6 + 1))  # 10/11
    tight = surface_scores(pred, truth, tolerance=0.5)  # 1 voxel is too far now
    assert (tight["precision"], tight["recall"], tight["f1"]) == (0.0, 0.0, 0.0)
    exact = surface_scores(pred, truth, tolerance=1.0)  # distance 1 counts (<=)
    assert exact["recall"] == 1.0
    assert surface_scores(np.zeros_like(truth), truth)["f1"] == 0.0


# ---------------------------------------------------------------------------- AP
def _boxes(rows, columns):
    return pd.DataFrame(rows, columns=columns)


def test_average_precision_by_hand() -> None:
    truth = _boxes([(0, 0, 0, 10, 10), (0, 20, 20, 30, 30)], ["tilt", "y0", "x0", "y1", "x1"])
    cols = ["tilt", "score", "y0", "x0", "y1", "x1"]
    pred = _boxes(
        [
            (0, 0.9, 0, 0, 10, 10),  # TP: precision 1, recall 1/2
            (0, 0.8, 50, 50, 60, 60),  # FP: precision 1/2, recall 1/2
            (0, 0.7, 20, 20, 30, 30),  # TP: precision 2/3, recall 1
        ],
        cols,
    )
    # all-point interpolation: 1/2 * 1 + 1/2 * 2/3
    assert average_precision(pred, truth) == pytest.approx(0.5 + 1 / 3)
    # FP ranked first: precisions 0, 1/2, 2/3 at recalls 0, 1/2, 1; the envelope is 2/3
    # everywhere (the best precision at any higher recall) -> 2/3
    reordered = pred.assign(score=[0.8, 0.9, 0.7])
    assert average_precision(reordered, truth) == pytest.approx(2 / 3)
    # the first detection on a tilt without true boxes: FP, FP, TP -> recall 1/2 at 1/3
    wrong_tilt = pred.assign(tilt=[1, 0, 0])
    assert average_precision(wrong_tilt, truth) == pytest.approx(0.5 * 1 / 3)
    # IoU exactly 0.5 counts at threshold 0.5: box (0,0,10,20) over truth (0,0,10,10)
    half = _boxes([(0, 1.0, 0, 0, 10, 20)], cols)
    assert average_precision(half, truth.iloc[:1]) == pytest.approx(1.0)
    assert average_precision(half, truth.iloc[:1], iou_threshold=0.51) == 0.0
    # two detections of one true box: the second is a false positive
    double = _boxes([(0, 0.9, 0, 0, 10, 10), (0, 0.8, 0, 0, 10, 10)], cols)
    assert average_precision(double, truth.iloc[:1]) == pytest.approx(1.0)
    assert average_precision(double, truth) == pytest.approx(0.5)
    assert average_precision(pred.iloc[:0], truth) == 0.0
    assert average_precision(pred.iloc[:0], truth.iloc[:0]) == 1.0


# ---------------------------------------------------------------------------- edges (mutation run)
@pytest.mark.parametrize("fn", [mask_iou, box_iou, surface_scores])
@pytest.mark.parametrize("lazy_arg", [0, 1])
def test_kernels_refuse_dask_input_naming_themselves(fn, lazy_arg) -> None:
    import dask.array as da

    args = [np.ones((2, 4), bool), np.ones((2, 4), bool)]
    args[lazy_arg] = da.from_array(args[lazy_arg])
    with pytest.raises(TypeError, match=rf"^{fn.__name__} is a kernel .* Dask array"):
        fn(*args)


def test_box_iou_refuses_mismatched_or_odd_columns() -> None:
    with pytest.raises(ValueError, match="2\\*d columns each, got 4 and 6"):
        box_iou(np.zeros((1, 4)), np.zeros((1, 6)))
    with pytest.raises(ValueError, match="got 3 and 3"):
        box_iou(np.zeros((2, 3)), np.zeros((1, 3)))


def test_box_iou_of_sub_pixel_and_empty_boxes() -> None:
    # refined boxes have fractional corners: volumes below one pixel count as they are
    a = np.array([[0, 0, 0.5, 2.0]])  # area 1
    b = np.array([[0, 0, 0.5, 1.0], [0, 0, 0.5, 2.0]])  # area 0.5 (inside a), and a itself
    np.testing.assert_allclose(box_iou(a, b), [[0.5, 1.0]])
    tiny = np.array([[0, 0, 0.5, 0.5]])  # area 0.25 < 1: still IoU 1 with itself
    np.testing.assert_allclose(box_iou(tiny, tiny), [[1.0]])
    empty = np.array([[3, 3, 3, 5]])  # zero height: IoU 0, also with itself
    np.testing.assert_array_equal(box_iou(empty, np.vstack([empty, [[0, 0, 4, 4]]])), [[0, 0]])


def test_match_boxes_with_one_true_box_and_empty_inputs() -> None:
    p, t, iou = match_boxes(np.array([_band(0, 4), _band(1, 5)]), np.array([_band(1, 5)]))
    assert p.tolist() == [1] and t.tolist() == [0] and iou.tolist() == [1.0]
    for pred, truth in [
        (np.zeros((0, 4)), np.array([_band(0, 1)])),
        (np.array([_band(0, 1)]), np.zeros((0, 4))),
    ]:
        p, t, iou = match_boxes(pred, truth)
        assert p.dtype == t.dtype == np.int64 and iou.shape == p.shape == t.shape == (0,)


def test_surface_scores_default_tolerance_f1_and_empty_inputs() -> None:
    truth = np.zeros((3, 3, 8), bool)
    truth[1, 1, 0:5] = True  # x = 0..4
    pred = np.zeros_like(truth)
    pred[1, 1, 0:2] = True  # x = 0, 1: truth x = 0..2 lie within 1.5, x = 3, 4 do not
    pred[1, 1, 7] = True  # 3 voxels from the nearest true voxel
    s = surface_scores(pred, truth)  # default tolerance 1.5
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(3 / 5)
    assert s["f1"] == pytest.approx(2 * (2 / 3) * (3 / 5) / (2 / 3 + 3 / 5))
    line = np.zeros((3, 1, 5), bool)
    line[0] = True
    two_off = np.roll(line, 2, axis=0)  # every voxel 2 away: outside the default 1.5
    assert surface_scores(two_off, line)["precision"] == 0.0
    assert surface_scores(truth, truth)["f1"] == 1.0  # precision == recall
    exact = surface_scores(np.roll(truth, 1, axis=1), truth, tolerance=1.0)  # distance == tol
    assert exact["precision"] == 1.0 and exact["recall"] == 1.0
    single = np.zeros_like(truth)
    single[0, 0, 0] = True  # a one-voxel truth is not "empty"
    assert surface_scores(single, single) == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "n_pred": 1,
        "n_truth": 1,
    }
    zeros = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert surface_scores(np.zeros_like(truth), truth) == {**zeros, "n_pred": 0, "n_truth": 5}
    assert surface_scores(pred, np.zeros_like(truth)) == {**zeros, "n_pred": 3, "n_truth": 0}


def test_integer_label_masks_count_as_their_non_zero_voxels() -> None:
    # labels 2 and 1 overlap where both are non-zero, although 2 & 1 == 0 bitwise
    a = np.array([[2, 0, 1, 0]])
    b = np.array([[1, 0, 1, 3]])
    assert mask_iou(a, b) == pytest.approx(2 / 3)
    s = surface_scores(a.reshape(1, 1, 4), b.reshape(1, 1, 4), tolerance=0.5)
    assert (s["n_pred"], s["n_truth"]) == (2, 3)
    assert s["precision"] == 1.0 and s["recall"] == pytest.approx(2 / 3)
