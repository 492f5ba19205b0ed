"""Per-group sums (tree-summable, equal to the averaging sums per group) and truth metrics."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.geometry.rotation import matrix_xyz_from_euler, random_euler
from cryoflow.kernels.average import accumulate_batch
from cryoflow.kernels.heterogeneity.groups import GroupSums, accumulate_groups, tree_sum
from cryoflow.kernels.heterogeneity.metrics import body_angle_errors_deg, class_accuracy


def _batch(n: int, box: int, seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    vols = rng.normal(size=(n, box, box, box)).astype(np.float32)
    euler = random_euler(rng, n)
    shifts = rng.uniform(-1, 1, (n, 3))
    tr = np.tile([-60.0, 60.0], (n, 1))
    return vols, euler, shifts, tr, rng.integers(0, 2, n)


def test_group_sums_equal_averaging_sums_per_group_and_add_in_any_order() -> None:
    vols, euler, shifts, tr, halves = _batch(9, 12, 0)
    groups = np.array([0, 1, 2, 0, 1, 0, -1, 2, 0])  # -1: left out
    g = accumulate_groups(vols, groups, euler, shifts, tr, halves, n_groups=3)
    for k in range(3):
        sel = groups == k
        ref = accumulate_batch(vols[sel], euler[sel], shifts[sel], tr[sel], halves[sel])
        np.testing.assert_allclose(g.groups[k].data, ref.data, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(g.groups[k].count, ref.count)
    assert g.counts.tolist() == [4, 2, 2]
    parts = [
        accumulate_groups(
            vols[i : i + 3],
            groups[i : i + 3],
            euler[i : i + 3],
            shifts[i : i + 3],
            tr[i : i + 3],
            halves[i : i + 3],
            n_groups=3,
        )
        for i in (0, 3, 6)
    ]
    a, b = tree_sum(parts), (parts[2] + parts[0]) + parts[1]
    for ga, gb, gg in zip(a.groups, b.groups, g.groups, strict=True):
        np.testing.assert_allclose(ga.data, gb.data, atol=1e-9)
        np.testing.assert_allclose(ga.weight, gg.weight, atol=1e-9)
    with pytest.raises(GeometryError, match="groups"):
        _ = a + GroupSums.zeros(2, 12)
    with pytest.raises(GeometryError, match="group ids"):
        accumulate_groups(vols, groups + 1, euler, shifts, tr, halves, n_groups=3)


def test_class_accuracy_ignores_class_numbers_and_counts_extra_classes_wrong() -> None:
    truth = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    assert class_accuracy(1 - truth, truth) == 1.0
    assert class_accuracy(np.array([2, 2, 2, 0, 0, 0, 0, 1]), truth) == pytest.approx(7 / 8)
    assert class_accuracy(np.zeros(8, int), truth) == pytest.approx(5 / 8)
    with pytest.raises(GeometryError):
        class_accuracy(truth[:3], truth)


def test_body_angle_errors() -> None:
    e = random_euler(np.random.default_rng(2), 6).reshape(3, 2, 3)
    m = matrix_xyz_from_euler(e)
    np.testing.assert_allclose(body_angle_errors_deg(e, m), 0.0, atol=1e-6)
    turn = np.array([[np.cos(0.1), -np.sin(0.1), 0], [np.sin(0.1), np.cos(0.1), 0], [0, 0, 1]])
    err = body_angle_errors_deg(e, m @ turn)
    np.testing.assert_allclose(err, np.degrees(0.1), atol=1e-6)
