"""Partial sums that add field by field (cryoflow.kernels.sums)."""

from __future__ import annotations

import numpy as np
import pytest

from cryoflow.errors import GeometryError
from cryoflow.kernels.heterogeneity.pca import ProjectionSums, SketchSums


def test_fields_add_one_by_one() -> None:
    rng = np.random.default_rng(0)
    a = SketchSums(rng.normal(size=4), rng.normal(size=(4, 2)), 1.5, 3)
    b = SketchSums(rng.normal(size=4), rng.normal(size=(4, 2)), 2.0, 4)
    c = a + b
    np.testing.assert_allclose(c.total, a.total + b.total)
    np.testing.assert_allclose(c.product, a.product + b.product)
    assert (c.power, c.count) == (3.5, 7)


def test_shapes_and_classes_must_agree() -> None:
    a = ProjectionSums(np.zeros(2), np.zeros((2, 2)), 1)
    with pytest.raises(GeometryError, match=r"ProjectionSums whose gram .*\(2, 2\) and \(3, 3\)"):
        _ = a + ProjectionSums(np.zeros(2), np.zeros((3, 3)), 1)
    with pytest.raises(TypeError):
        _ = a + SketchSums(np.zeros(2), np.zeros((2, 1)), 0.0, 1)  # type: ignore[operator]
