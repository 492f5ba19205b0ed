"""Particle sets in the store, tilt ranges, and stale marks across the dataset level."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import cryoflow
from cryoflow.errors import (
    AlreadyExistsError,
    MissingTiltRangeError,
    NodeNotFoundError,
    StaleResultError,
)
from cryoflow.graph.extract import extract_stack
from cryoflow.io import nodes
from cryoflow.io.dataset_lineage import mark_dataset_dependents_stale
from cryoflow.io.layout import create_dataset
from cryoflow.io.particleset import (
    list_particle_sets,
    open_particles,
    read_particle_table,
    write_particle_set,
)
from cryoflow.io.provenance import make_provenance
from cryoflow.io.store import open_volume, write_tilt_series, write_volume
from cryoflow.io.tomograms import (
    TiltRange,
    resolve_tilt_range,
    tilt_range,
    tilt_range_attrs,
    tomogram_info,
)
from cryoflow.kernels.extract import crop_boxes


@pytest.fixture()
def store(tmp_path):
    path = tmp_path / "d.zarr"
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(16, 20, 24)).astype(np.float32)
    write_tilt_series(path, "a", rng.normal(size=(5, 20, 24)).astype(np.float32), [-40, -20, 0, 20, 50], 10.0)
    write_volume(path, "a", "tomogram", vol, pixel_size_angstrom=10.0,
                 provenance=make_provenance("reconstruct", inputs={"tilt_series": "a"}), chunk=8)
    write_volume(path, "b", "tomogram", vol[::-1].copy(), pixel_size_angstrom=10.0,
                 provenance=make_provenance("ingest"), chunk=8,
                 attrs=tilt_range_attrs(TiltRange(-54, 48, "b.tlt")))
    write_volume(path, "c", "tomogram", vol, pixel_size_angstrom=8.0, provenance=make_provenance("ingest"))
    return path


def _set(store, name: str, box: int = 6, overwrite: bool = False, tomos=("a", "b")):
    table = pd.DataFrame({"tomogram": [tomos[0], tomos[-1], tomos[0]], "x": [3.0, 10.0, 20.0],
                          "y": [4.0, 9.5, 18.0], "z": [2.0, 7.0, 15.0], "score": [0.9, 0.5, 0.7]})
    vols = {t: open_volume(store, t, "tomogram") for t in tomos}
    stack, planned = extract_stack(vols, table, box, batch_size=2)
    planned["tilt_min_deg"] = [tilt_range(store, t).min_deg for t in planned["tomogram"]]
    inputs = {f"tomograms/{t}/volumes/tomogram": "" for t in tomos}
    write_particle_set(store, name, planned, stack, provenance=make_provenance("extract", {"box": box}, inputs),
                       overwrite=overwrite)
    return planned


def test_tilt_ranges_from_tilt_series_attrs_or_refused(store, tmp_path) -> None:
    assert tilt_range(store, "a").as_tuple == (-40.0, 50.0)  # reconstructed: its tilt series
    assert tilt_range(store, "b").as_tuple == (-54.0, 48.0) and tilt_range(store, "b").source == "b.tlt"
    with pytest.raises(MissingTiltRangeError) as info:
        tilt_range(store, "c")
    msg = str(info.value)
    assert "'c'" in msg and ".tlt/.rawtlt/.mdoc" in msg and "--angles FILE" in msg and "--tilt-range MIN MAX" in msg
    assert tomogram_info(store, "c").pixel_size_angstrom == 8.0
    mrc = tmp_path / "t.mrc"
    (tmp_path / "t.tlt").write_text("-57\n0\n61\n")
    assert resolve_tilt_range(mrc).as_tuple == (-57.0, 61.0)
    assert resolve_tilt_range(mrc, tilt_range_deg=(-30, 30)).source == "--tilt-range"
    assert resolve_tilt_range(tmp_path / "none.mrc") is None


def test_set_round_trip_as_dataarray(store) -> None:
    planned = _set(store, "s1")
    arr = cryoflow.open_particles(store, "s1")
    assert isinstance(arr, xr.DataArray) and arr.dims == ("particle", "z", "y", "x") and arr.shape == (3, 6, 6, 6)
    assert arr.data.chunks[0] == (2, 1)
    for col in ("tomogram", "x", "y", "z", "score", "input_index", "tilt_min_deg", "inside_fraction"):
        assert col in arr.coords and arr.coords[col].dims == ("particle",)
    assert arr.attrs["box_size"] == 6 and arr.attrs["provenance"]["step"] == "extract"
    got = arr.values
    for t in ("a", "b"):
        rows = np.flatnonzero(planned["tomogram"] == t)
        vol = open_volume(store, t, "tomogram").values
        assert np.array_equal(got[rows], crop_boxes(vol, planned.loc[rows, ["x", "y", "z"]].to_numpy(), 6))
    pd.testing.assert_frame_equal(read_particle_table(store, "s1"), planned, check_dtype=False)
    assert list_particle_sets(store) == ["s1"]


def test_existing_set_kept_unless_overwrite_and_derived_results_go_stale(store) -> None:
    _set(store, "s1")
    with pytest.raises(AlreadyExistsError):
        _set(store, "s1", box=8)
    assert open_particles(store, "s1").shape[1] == 6
    # another box size makes a new set; an average derived from s1 is a dataset-level node
    _set(store, "s2", box=8)
    root = create_dataset(store)
    info = nodes.cryoflow_attrs(nodes.open_node(root, "particles/s1", what="set"))
    avg = root.require_group("averages").create_group("avg1", attributes={"cryoflow": {
        "kind": "average", "complete": True, "write_id": "w-avg",
        "provenance": {"inputs": {"particles/s1": info["write_id"]}}}})
    assert avg is not None
    _set(store, "s1", box=10, overwrite=True)
    assert open_particles(store, "s1").shape[1] == 10
    assert nodes.is_stale(root, "averages/avg1") and not nodes.is_stale(root, "particles/s2")
    with pytest.raises(StaleResultError, match="particles/s1"):
        nodes.open_node(root, "averages/avg1", what="average")


def test_replacing_a_volume_marks_sets_cut_from_it_stale(store) -> None:
    _set(store, "s1")
    _set(store, "only_b", tomos=("b",))
    write_volume(store, "a", "tomogram", np.zeros((16, 20, 24), np.float32), pixel_size_angstrom=10.0,
                 provenance=make_provenance("reconstruct"), overwrite=True)
    with pytest.raises(StaleResultError, match="tomograms/a/volumes/tomogram"):
        open_particles(store, "s1")
    assert open_particles(store, "only_b").shape[0] == 3
    # writing the set again replaces the stale one without overwrite
    _set(store, "s1")
    assert open_particles(store, "s1").shape[0] == 3
    assert mark_dataset_dependents_stale(store, "particles/missing") == []
    with pytest.raises(NodeNotFoundError):
        open_particles(store, "nope")


def test_stack_shape_checked(store) -> None:
    t = pd.DataFrame({"tomogram": ["a"], "x": [1.0], "y": [1.0], "z": [1.0]})
    with pytest.raises(ValueError, match=r"\(n, B, B, B\)"):
        write_particle_set(store, "bad", t, da.zeros((1, 4, 4, 5)), provenance=None)
    with pytest.raises(ValueError, match="table rows"):
        write_particle_set(store, "bad", t, da.zeros((2, 4, 4, 4)), provenance=None)
