"""Replacing a tilt series (or any node) marks the results derived from it stale."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest

import cryoflow
from cryoflow.cli.main import main
from cryoflow.errors import AlreadyExistsError, NodeNotFoundError, StaleResultError
from cryoflow.io import lineage, nodes, store
from cryoflow.io.layout import open_dataset
from cryoflow.io.verify import find_leftovers, verify_store
from cryoflow.pipelines.stages.eager import Target
from cryoflow.pipelines.stages.ingest import IngestParams
from cryoflow.pipelines.stages.ingest import run as ingest
from tests.io_files import tilt_stack, write_mrc, write_tlt

ANGLES = np.linspace(-60.0, 60.0, 6)
ZYX = ("z", "y", "x")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def images(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(6, 16, 12)).astype(np.float32)


def _ts_write_id(path) -> str:
    return nodes.cryoflow_attrs(open_dataset(path)["tomograms/a/tilt_series"])["write_id"]


def _derived_store(path, images) -> None:
    """Tomogram ``a`` with results in every provenance form the pipelines use, and ``b``."""
    store.write_tilt_series(path, "a", images, ANGLES, 1.0)
    store.write_tilt_series(path, "b", images, ANGLES, 1.0)
    vol = np.ones((4, 16, 12), np.float32)
    maps = images > 0
    ts_path = "tomograms/a/tilt_series"

    def result(step, key, inputs, data=maps, dims=("tilt", "y", "x"), name="a"):
        store.write_result(path, name, step, key, data, dims=dims, provenance={"inputs": inputs})

    result("edges", "edges2d", {"tilt_series": "a"})  # edges / lift / localize
    result("annotate", "membrane", {"images": "a/tilt_series", "model": "/m/unet"})  # annotate
    result("bin", "tilt_series", {ts_path: _ts_write_id(path)})  # the run engine
    result("seg3d", "votes", {"tilt_series": "b", "maps": "annotate/membrane"}, vol, ZYX)
    result("rerun", "votes", {"tomograms/a/results/bin/tilt_series": "x"}, vol, ZYX)
    result("truth", "masks2d", {"seed": 3})  # independent of the stored tilt series
    result("corrupt", "masks2d", {"maps": "truth/masks2d"})
    result("edges", "edges2d", {"tilt_series": "b"}, name="b")  # another tomogram's
    store.write_volume(
        path,
        "a",
        "tomogram",
        vol,
        pixel_size_angstrom=1.0,
        multiscale=False,
        provenance={"inputs": {"tilt_series": ts_path, "tilt_series_provenance": {"step": "x"}}},
    )
    store.write_volume(
        path,
        "a",
        "raw",
        vol,
        pixel_size_angstrom=1.0,
        multiscale=False,
        provenance={"step": "ingest", "inputs": {"mrc": {"path": "/d/a.mrc"}}},
    )
    store.write_table(
        path,
        "a",
        "detect",
        "boxes",
        pd.DataFrame({"x": [1.0, 2.0], "class": ["m", "r"]}),
        provenance={"inputs": {"maps": "annotate/membrane"}},
    )


STALE = [
    ("result", "edges", "edges2d", "tilt_series"),
    ("result", "annotate", "membrane", "tilt_series"),
    ("result", "bin", "tilt_series", "tilt_series"),
    ("result", "seg3d", "votes", "results/annotate/membrane"),
    ("result", "rerun", "votes", "results/bin/tilt_series"),
    ("volume", None, "tomogram", "tilt_series"),
    ("table", "detect", "boxes", "results/annotate/membrane"),
]


def _open(path, kind, step, key, name="a"):
    if kind == "volume":
        return store.open_volume(path, name, key)
    if kind == "table":
        return store.read_table(path, name, step, key)
    return store.open_result(path, name, step, key)


def test_dependency_graph_of_every_provenance_form(tmp_path, images) -> None:
    path = tmp_path / "s.zarr"
    _derived_store(path, images)
    found = lineage.dependents(open_dataset(path), "a", "tilt_series")
    expected = {
        ("volumes/tomogram" if kind == "volume" else f"results/{step}/{key}"): via
        for kind, step, key, via in STALE
    }
    assert found == expected


def test_overwriting_a_tilt_series_makes_derived_results_stale(tmp_path, images) -> None:
    path = tmp_path / "s.zarr"
    _derived_store(path, images)
    old_id = _ts_write_id(path)
    store.write_tilt_series(path, "a", images[::-1] * 2, ANGLES, 1.0, overwrite=True)

    np.testing.assert_array_equal(cryoflow.open_tilt_series(path, "a").values, images[::-1] * 2)
    for kind, step, key, via in STALE:
        with pytest.raises(StaleResultError, match="is stale: its input 'tomograms/a/tilt_series'"):
            _open(path, kind, step, key)
        with pytest.raises(NodeNotFoundError):  # stale reads as missing to older callers
            _open(path, kind, step, key)
        node = f"tomograms/a/{'volumes/tomogram' if kind == 'volume' else f'results/{step}/{key}'}"
        record = nodes.stale_record(open_dataset(path), node)
        assert record is not None
        assert record["replaced_write_id"] == old_id
        assert record["via"] == f"tomograms/a/{via}"
    # independent results and the other tomogram stay readable
    store.open_result(path, "a", "truth", "masks2d")
    store.open_result(path, "a", "corrupt", "masks2d")
    store.open_volume(path, "a", "raw")
    store.open_result(path, "b", "edges", "edges2d")
    stale = sorted(item.path for item in find_leftovers(path))
    assert len(stale) == len(STALE)
    assert all("stale" in item.reason for item in find_leftovers(path))


def test_stale_results_can_be_rewritten_or_cleaned(tmp_path, images) -> None:
    path = tmp_path / "s.zarr"
    _derived_store(path, images)
    store.write_tilt_series(path, "a", images, ANGLES, 1.0, overwrite=True)
    fresh = images < 0
    # a stale node is replaced without overwrite=True; a current one still needs it
    store.write_result(path, "a", "edges", "edges2d", fresh, dims=("tilt", "y", "x"), provenance={})
    np.testing.assert_array_equal(store.open_result(path, "a", "edges", "edges2d").values, fresh)
    with pytest.raises(AlreadyExistsError):
        store.write_result(
            path, "a", "edges", "edges2d", fresh, dims=("tilt", "y", "x"), provenance={}
        )
    removed = verify_store(path, clean=True)
    assert len(removed) == len(STALE) - 1
    assert find_leftovers(path) == []
    with pytest.raises(NodeNotFoundError, match="does not exist"):
        store.open_result(path, "a", "annotate", "membrane")
    store.open_result(path, "a", "truth", "masks2d")


def test_replacing_a_result_stales_only_what_derives_from_it(tmp_path, images) -> None:
    path = tmp_path / "s.zarr"
    _derived_store(path, images)
    store.write_result(
        path,
        "a",
        "annotate",
        "membrane",
        images < 0,
        dims=("tilt", "y", "x"),
        provenance={"inputs": {"images": "a/tilt_series"}},
        overwrite=True,
    )
    assert sorted(i.path for i in find_leftovers(path)) == [
        "tomograms/a/results/detect/boxes",
        "tomograms/a/results/seg3d/votes",
    ]
    store.open_result(path, "a", "edges", "edges2d")
    store.open_volume(path, "a", "tomogram")


def test_failed_overwrite_leaves_results_current(tmp_path, images) -> None:
    path = tmp_path / "s.zarr"
    _derived_store(path, images)

    def boom(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("disk full")

    bad = da.from_array(images, chunks=(1, 16, 12)).map_blocks(boom, dtype=np.float32)
    with pytest.raises(RuntimeError, match="disk full"):
        store.write_tilt_series(path, "a", bad, ANGLES, 1.0, overwrite=True)
    assert find_leftovers(path) == []
    for kind, step, key, _ in STALE:
        _open(path, kind, step, key)
    np.testing.assert_array_equal(cryoflow.open_tilt_series(path, "a").values, images)


def test_ingest_overwrite_through_the_cli(tmp_path, rng, capsys) -> None:
    import distributed
    data = tilt_stack(rng, n=4, ny=16, nx=12)
    mrc = write_mrc(tmp_path / "TS_1.mrc", data)
    write_tlt(tmp_path / "TS_1.tlt", [-30.0, -10.0, 10.0, 30.0])
    out = str(tmp_path / "s.zarr")
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"
    ) as client:
        ingest(client, Target(out, (), quiet=True), IngestParams(inputs=(str(mrc),)))
        store.write_result(
            out,
            "TS_1",
            "edges",
            "edges2d",
            data > 0,
            dims=("tilt", "y", "x"),
            provenance={"inputs": {"tilt_series": "TS_1"}},
        )
        write_mrc(mrc, data * 2)
        ingest(client, Target(out, (), overwrite=True, quiet=True), IngestParams(inputs=(str(mrc),)))
    with pytest.raises(StaleResultError, match="TS_1/tilt_series"):
        store.open_result(out, "TS_1", "edges", "edges2d")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", out])
    assert exit_info.value.code == 1
    assert "stale result" in capsys.readouterr().out


def test_nodes_module_keeps_its_names() -> None:
    from cryoflow.io.nodes import (  # noqa: F401  (the split must not break importers)
        SAFE_CODECS,
        SAFE_DATA_TYPES,
        PendingWrite,
        check_safe_metadata,
        make_provenance,
        normalise_provenance,
        publish,
    )

    assert make_provenance("x")["step"] == "x"
