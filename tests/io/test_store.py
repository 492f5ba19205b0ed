"""The dataset store: names, round trips, OME-Zarr, temporary/incomplete/unsafe nodes, alignment."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr
from dask.utils import key_split

import cryoflow
from cryoflow.errors import (
    AlreadyExistsError,
    ChunkAlignmentError,
    GeometryError,
    InvalidNameError,
    NodeNotFoundError,
    StoreError,
    UnsafeStoreError,
)
from cryoflow.geometry import TiltGeometry
from cryoflow.io import store
from cryoflow.io.names import validate_name
from cryoflow.io.verify import find_leftovers, verify_store
from cryoflow.io.writer import check_aligned, store_blocks

ANGLES = np.linspace(-60.0, 60.0, 6)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def images(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(6, 20, 16)).astype(np.float32)


# ---------------------------------------------------------------------------- names
@pytest.mark.parametrize("name", ["TS_01", "a", "0.rec-v2", "A" * 128])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../x",
        "a/b",
        "a\\b",
        "..",
        "a..b",
        ".hidden",
        "-x",
        "a b",
        "x;rm",
        "A" * 129,
        "é",
        "a\n",
    ],
)
def test_invalid_names_are_refused_with_the_rule(name: str, tmp_path, images) -> None:
    with pytest.raises(InvalidNameError, match=r"A-Za-z0-9") as info:
        store.write_tilt_series(tmp_path / "s.zarr", name, images, ANGLES, 2.0)
    assert repr(name) in str(info.value)
    assert not (tmp_path / "s.zarr").exists() or store.list_tomograms(tmp_path / "s.zarr") == []


# ---------------------------------------------------------------------------- tilt series
def test_tilt_series_round_trip(tmp_path, images) -> None:
    path = tmp_path / "s.zarr"
    geom = TiltGeometry.single_axis(
        ANGLES, tilt_axis_deg=85.3, shifts_px=np.arange(12.0).reshape(6, 2)
    )
    store.write_tilt_series(path, "TS_01", images, geom, 3.25, provenance={"step": "ingest"})
    ts = cryoflow.open_tilt_series(str(path), "TS_01")
    assert ts.dims == ("tilt", "y", "x")
    assert isinstance(ts.data, da.Array)
    np.testing.assert_array_equal(ts.values, images)
    np.testing.assert_allclose(ts["angle"].values, ANGLES)
    assert ts.attrs["pixel_size_angstrom"] == 3.25
    assert store.read_geometry(path, "TS_01") == geom
    assert ts.attrs["provenance"]["cryoflow_version"] == cryoflow.__version__
    arr = zarr.open_array(str(path / "tomograms/TS_01/tilt_series"), mode="r")
    assert arr.chunks == (1, 20, 16)
    assert arr.metadata.codecs[-2].to_dict()["configuration"]["cname"] == "zstd"  # then crc32c
    assert store.list_tomograms(path) == ["TS_01"]


def test_dual_axis_geometry_round_trips(tmp_path, rng) -> None:
    geom = TiltGeometry.dual_axis([-30, 0, 30], [-20, 20])
    store.write_tilt_series(tmp_path / "s.zarr", "d", rng.random((5, 4, 4)), geom, 1.0)
    assert store.read_geometry(tmp_path / "s.zarr", "d") == geom


def test_large_images_are_tiled(tmp_path, rng) -> None:
    images = rng.integers(-100, 100, size=(2, 40, 36)).astype(np.int16)
    store.write_tilt_series(tmp_path / "s.zarr", "t", images, [0, 10], 1.0, tile_px=16)
    arr = zarr.open_array(str(tmp_path / "s.zarr/tomograms/t/tilt_series"), mode="r")
    assert arr.chunks == (1, 16, 16)
    np.testing.assert_array_equal(store.open_tilt_series(tmp_path / "s.zarr", "t").values, images)


def test_angle_count_must_match(tmp_path, images) -> None:
    with pytest.raises(GeometryError, match="6 images but 3 tilt angles"):
        store.write_tilt_series(tmp_path / "s.zarr", "x", images, [0, 1, 2], 1.0)


def test_no_overwrite_without_asking(tmp_path, images) -> None:
    path = tmp_path / "s.zarr"
    store.write_tilt_series(path, "a", images, ANGLES, 1.0)
    with pytest.raises(AlreadyExistsError, match="already exists"):
        store.write_tilt_series(path, "a", images * 0, ANGLES, 1.0)
    np.testing.assert_array_equal(store.open_tilt_series(path, "a").values, images)
    store.write_tilt_series(path, "a", images * 2, ANGLES, 1.0, overwrite=True)
    np.testing.assert_array_equal(store.open_tilt_series(path, "a").values, images * 2)
    assert find_leftovers(path) == []


def test_missing_tomogram_names_store_and_key(tmp_path, images) -> None:
    path = tmp_path / "s.zarr"
    store.write_tilt_series(path, "a", images, ANGLES, 1.0)
    with pytest.raises(NodeNotFoundError, match=r"s\.zarr: tomogram 'tomograms/b' does not exist"):
        store.open_tilt_series(path, "b")
    with pytest.raises(NodeNotFoundError, match="no cryoflow dataset"):
        store.open_tilt_series(tmp_path / "nothing.zarr", "a")


# ---------------------------------------------------------------------------- temporary/incomplete/unsafe
def test_pending_write_is_invisible_until_committed(tmp_path, images) -> None:
    path = tmp_path / "s.zarr"
    pending = store.write_tilt_series(path, "late", images, ANGLES, 1.0, compute=False)
    assert store.list_tomograms(path) == []
    with pytest.raises(NodeNotFoundError):
        store.open_tilt_series(path, "late")
    [leftover] = find_leftovers(path)
    assert leftover.path.startswith("tomograms/.tmp-late-")
    pending.run()
    np.testing.assert_array_equal(store.open_tilt_series(path, "late").values, images)
    assert find_leftovers(path) == []


def test_incomplete_result_is_refused_and_cleaned(tmp_path, images) -> None:
    path = tmp_path / "s.zarr"
    store.write_tilt_series(path, "a", images, ANGLES, 1.0)
    store.write_result(
        path, "a", "edges", "map", images > 0, dims=("tilt", "y", "x"), provenance={}
    )
    meta_file = path / "tomograms/a/results/edges/map/zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["attributes"]["cryoflow"]["complete"] = False  # as if the writer died before the flag
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(
        NodeNotFoundError, match=r"s\.zarr.*'tomograms/a/results/edges/map' is incomplete"
    ):
        store.open_result(path, "a", "edges", "map")
    [leftover] = verify_store(path, clean=True)
    assert leftover.path == "tomograms/a/results/edges/map"
    assert find_leftovers(path) == []
    np.testing.assert_array_equal(store.open_tilt_series(path, "a").values, images)


@pytest.mark.parametrize(
    "patch",
    [
        {"data_type": "object"},
        {"data_type": "variable_length_utf8"},
        {"codecs": [{"name": "numcodecs.pickle", "configuration": {}}]},
    ],
)
def test_unsafe_arrays_are_refused(tmp_path, images, patch) -> None:
    path = tmp_path / "s.zarr"
    store.write_result(path, "a", "s", "k", images, dims=("tilt", "y", "x"), provenance={})
    meta_file = path / "tomograms/a/results/s/k/zarr.json"
    meta = json.loads(meta_file.read_text())
    meta.update(patch)
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(UnsafeStoreError, match="refusing"):
        store.open_result(path, "a", "s", "k")


# ---------------------------------------------------------------------------- volumes (OME-Zarr)
@pytest.mark.parametrize("kind", ["image", "label"])
def test_volume_is_ome_zarr_v05_multiscale(tmp_path, rng, kind) -> None:
    import ngff_zarr
    path = tmp_path / "s.zarr"
    vol = rng.normal(size=(10, 24, 17)).astype(np.float32)
    if kind == "label":
        vol = (vol > 0.5).astype(np.uint8)
    store.write_volume(
        path,
        "t",
        "v",
        vol,
        pixel_size_angstrom=7.5,
        provenance={"step": "recon"},
        kind=kind,
        chunk=8,
    )
    section = "volumes" if kind == "image" else "labels"
    group = zarr.open_group(str(path / f"tomograms/t/{section}/v"), mode="r")
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    assert [a["unit"] for a in ome["multiscales"][0]["axes"]] == ["angstrom"] * 3
    assert ("image-label" in ome) == (kind == "label")
    ms = ngff_zarr.from_ngff_zarr(str(path / f"tomograms/t/{section}/v"))
    assert [tuple(im.data.shape) for im in ms.images] == [(10, 24, 17), (5, 12, 8), (2, 6, 4)]
    assert ms.images[2].scale == {"z": 30.0, "y": 30.0, "x": 30.0}
    np.testing.assert_array_equal(np.asarray(ms.images[0].data), vol)
    lvl1 = store.open_volume(path, "t", "v", level=1)
    assert lvl1.dims == ("z", "y", "x") and lvl1.attrs["pixel_size_angstrom"] == 15.0
    expected = (
        vol[::2, ::2, ::2][:5, :12, :8]
        if kind == "label"
        else vol[:10, :24, :16].reshape(5, 2, 12, 2, 8, 2).mean(axis=(1, 3, 5))
    )
    np.testing.assert_allclose(lvl1.values, expected, rtol=1e-5)
    assert zarr.open_array(str(path / f"tomograms/t/{section}/v/0"), mode="r").chunks == (8, 8, 8)


def test_volume_without_tilt_series_and_missing_level(tmp_path, rng) -> None:
    path = tmp_path / "s.zarr"
    store.write_volume(
        path,
        "t",
        "tomogram",
        rng.random((4, 4, 4)),
        pixel_size_angstrom=2.0,
        provenance=None,
        multiscale=False,
    )
    assert store.list_tomograms(path) == ["t"]
    with pytest.raises(NodeNotFoundError, match="levels 0..0"):
        store.open_volume(path, "t", "tomogram", level=1)
    with pytest.raises(NodeNotFoundError):
        store.open_tilt_series(path, "t")


# ---------------------------------------------------------------------------- results and tables
def test_result_and_table_round_trip(tmp_path, rng) -> None:
    path = tmp_path / "s.zarr"
    curve = rng.random(7)
    store.write_result(
        path,
        "t",
        "threshold",
        "scores",
        curve,
        dims=("threshold",),
        provenance={"parameters": {"n": 7}, "inputs": {"votes": "x"}},
        attrs={"best": 3},
    )
    res = store.open_result(path, "t", "threshold", "scores")
    np.testing.assert_array_equal(res.values, curve)
    assert res.dims == ("threshold",) and res.attrs["best"] == 3
    prov = res.attrs["provenance"]
    assert prov["step"] == "threshold" and prov["parameters"] == {"n": 7} and "created" in prov
    table = pd.DataFrame(
        {
            "z": [1.5, 2.5, 3.5],
            "cls": ["ribosome", "rubisco", "ribosome"],
            "id": np.array([4, 5, 6], np.int32),
            "ok": [True, False, True],
        }
    )
    store.write_table(path, "t", "localize", "particles", table, provenance={"parameters": {}})
    pd.testing.assert_frame_equal(store.read_table(path, "t", "localize", "particles"), table)
    with pytest.raises(AlreadyExistsError):
        store.write_table(path, "t", "localize", "particles", table, provenance=None)


# ---------------------------------------------------------------------------- chunk alignment
def test_misaligned_region_is_refused(tmp_path) -> None:
    target = zarr.create_array(
        str(tmp_path / "a.zarr"), shape=(4, 16, 16), chunks=(1, 8, 8), dtype="f4"
    )
    src = da.ones((2, 8, 8), chunks=(1, 8, 8), dtype="f4")
    with pytest.raises(ChunkAlignmentError, match="boundary 4 on axis 1 .* chunk size 8"):
        store_blocks(src, target, region_start=(0, 4, 0))
    with pytest.raises(ChunkAlignmentError, match="axis 2"):
        store_blocks(
            da.ones((1, 8, 12), chunks=(1, 8, 6), dtype="f4"), target, region_start=(0, 0, 0)
        )
    check_aligned(((1, 1), (8,), (8,)), (4, 16, 16), (1, 8, 8), (2, 8, 8))  # aligned: no error
    tasks = store_blocks(src * 3, target, region_start=(2, 8, 8), name="t")
    assert len(tasks) == 2 and key_split(tasks[0].key) == "t"
    da.compute(*tasks)
    np.testing.assert_array_equal(target[2:4, 8:, 8:], 3.0)
    assert float(np.asarray(target[:2]).sum()) == 0.0


def test_edge_chunk_may_end_at_the_array_end(tmp_path) -> None:
    target = zarr.create_array(str(tmp_path / "a.zarr"), shape=(10,), chunks=(4,), dtype="i4")
    da.compute(*store_blocks(da.arange(6, chunks=(4, 2)).astype("i4"), target, region_start=(4,)))
    np.testing.assert_array_equal(target[:], [0, 0, 0, 0, 0, 1, 2, 3, 4, 5])


def test_empty_blocks_are_not_stored_and_replace_what_was_there(tmp_path) -> None:
    from cryoflow.io.writer import surely_not_fill

    target = zarr.create_array(
        str(tmp_path / "a.zarr"), shape=(4, 16), chunks=(2, 8), dtype="f4", fill_value=0
    )
    dense = np.arange(1, 65, dtype="f4").reshape(4, 16)
    sparse = np.zeros((4, 16), "f4")
    sparse[3, 15] = 7  # a chunk whose samples all look empty but is not
    assert surely_not_fill(dense, 0) and not surely_not_fill(sparse, 0)
    assert not surely_not_fill(dense, None)
    da.compute(*store_blocks(da.from_array(dense, chunks=(2, 8)), target))
    np.testing.assert_array_equal(target[:], dense)
    assert target.nchunks_initialized == 4
    da.compute(*store_blocks(da.from_array(sparse, chunks=(2, 8)), target))
    np.testing.assert_array_equal(target[:], sparse)  # old chunks replaced, empty ones dropped
    assert target.nchunks_initialized == 1


# ---------------------------------------------------------------------------- non-local stores
def test_memory_store_publishes_by_copy(images) -> None:
    root = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    store.write_tilt_series(root, "m", images, ANGLES, 1.0)
    store.write_tilt_series(root, "m", images + 1, ANGLES, 1.0, overwrite=True)
    np.testing.assert_array_equal(store.open_tilt_series(root, "m").values, images + 1)
    assert store.list_tomograms(root) == ["m"]
    assert [k for k in root["tomograms"].group_keys()] == ["m"]


def test_foreign_zarr_group_is_not_written_into(tmp_path, images) -> None:
    foreign = zarr.open_group(str(tmp_path / "f.zarr"), mode="w")
    foreign.create_array("data", shape=(2,), dtype="i4")
    with pytest.raises(StoreError, match="not a cryoflow dataset"):
        store.write_tilt_series(tmp_path / "f.zarr", "a", images, ANGLES, 1.0)
    assert "cryoflow" not in zarr.open_group(str(tmp_path / "f.zarr"), mode="r").attrs


def test_numpy_values_in_provenance_and_attrs(tmp_path, images) -> None:
    path = tmp_path / "s.zarr"
    store.write_result(
        path,
        "a",
        "s",
        "k",
        images,
        dims=("tilt", "y", "x"),
        provenance={
            "parameters": {"t": np.float32(0.5), "ids": np.arange(3)},
            "inputs": {"file": tmp_path / "x.mrc"},
        },
        attrs={"threshold": np.int64(4)},
    )
    res = store.open_result(path, "a", "s", "k")
    assert res.attrs["threshold"] == 4
    assert res.attrs["provenance"]["parameters"] == {"t": 0.5, "ids": [0, 1, 2]}
    assert res.attrs["provenance"]["inputs"]["file"] == str(tmp_path / "x.mrc")
    with pytest.raises(StoreError, match="JSON-serialisable"):
        store.write_result(
            path,
            "brand-new",
            "s",
            "k2",
            images,
            dims=("tilt", "y", "x"),
            provenance={"parameters": {"f": object()}},
        )
    assert find_leftovers(path) == []
    assert store.list_tomograms(path) == ["a"]
