"""``extract --box`` larger than a tomogram: refused when no tomogram can hold it, else a warning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryoflow.errors import CryoflowWarning, GeometryError
from cryoflow.io.particles import write_particles
from cryoflow.io.store import write_volume
from cryoflow.io.tomograms import TiltRange, tilt_range_attrs
from cryoflow.pipelines.stages.extract import ExtractParams, check_box_size, plan


def test_box_over_every_tomogram_is_refused_naming_them() -> None:
    with pytest.raises(GeometryError, match=r"--box 40 .*'a' is 64 x 48 x 32; 'b' is 50 x 50 x 36"):
        check_box_size({"a": (32, 48, 64), "b": (36, 50, 50)}, 40)


def test_box_over_some_tomograms_warns_naming_them() -> None:
    with pytest.warns(CryoflowWarning, match=r"1 of 2 tomograms \('a' is 64 x 48 x 32"):
        check_box_size({"a": (32, 48, 64), "b": (64, 64, 64)}, 40)


def test_box_that_fits_is_silent(recwarn) -> None:
    check_box_size({"a": (32, 48, 64)}, 32)
    assert not [w for w in recwarn if issubclass(w.category, CryoflowWarning)]


def test_plan_refuses_a_box_larger_than_the_tomogram(tmp_path) -> None:
    store = tmp_path / "d.zarr"
    vol = np.random.default_rng(0).normal(size=(8, 12, 16)).astype(np.float32)
    write_volume(
        store,
        "t",
        "tomogram",
        vol,
        pixel_size_angstrom=10.0,
        provenance={"step": "x"},
        multiscale=False,
        attrs=tilt_range_attrs(TiltRange(-60, 60, "t.tlt")),
    )
    picks = tmp_path / "p.csv"
    write_particles(picks, pd.DataFrame({"tomogram": ["t"], "x": [8.0], "y": [6.0], "z": [4.0]}))
    params = ExtractParams(particles=str(picks), box=10, set="s")
    with pytest.raises(GeometryError, match=r"'t' is 16 x 12 x 8"):
        plan(store, params)
    assert plan(store, params.model_copy(update={"box": 8})).stack.shape == (1, 8, 8, 8)
