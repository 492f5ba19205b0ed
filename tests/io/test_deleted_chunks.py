"""A chunk file deleted from a published result (Zarr reads it back as the fill value, silently):
``cryoflow verify --deep`` names the array and the chunk (the shard of a sharded array), and a
chunk that was empty all along is not mistaken for a deleted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from cryoflow.cli.main import main
from cryoflow.io import nodes, store
from cryoflow.io.layout import COMPRESSOR
from cryoflow.io.stored_chunks import RECORD, decode_stored, encode_stored
from cryoflow.io.verify import deep_check

pytestmark = pytest.mark.fault  # the fault matrix: damaged and half-written stores

ANGLES = [-30.0, -10.0, 10.0, 30.0]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A tilt series (4 chunks, one image each), a 16^3 volume in 8^3 chunks, and a result whose
    second half is all zeros (its chunks are empty: Zarr stores no file for them)."""
    rng = np.random.default_rng(11)
    path = tmp_path / "d.zarr"
    store.write_tilt_series(path, "t", rng.normal(size=(4, 16, 12)).astype(np.float32), ANGLES, 3.0)
    vol = rng.normal(size=(16, 16, 16)).astype(np.float32)
    store.write_volume(path, "t", "tomogram", vol, pixel_size_angstrom=3.0, provenance={}, chunk=8)
    half = np.zeros((4, 16, 12), dtype=np.float32)
    half[:2] = 1.0
    store.write_result(path, "t", "s", "map", half, dims=("tilt", "y", "x"), provenance={},
                       chunks=(1, 16, 12))  # fmt: skip
    return path


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_a_sound_store_has_no_missing_chunk_and_empty_chunks_are_not_flagged(dataset: Path):
    chunk_files = _files(dataset / "tomograms/t/results/s/map/c")
    assert chunk_files == {"0/0/0", "1/0/0"}  # tilts 2 and 3 are empty: never stored
    assert deep_check(dataset) == []


def test_deleted_chunks_are_named_with_their_array_and_grid_index(dataset: Path):
    (dataset / "tomograms/t/tilt_series/c/2/0/0").unlink()
    (dataset / "tomograms/t/volumes/tomogram/0/c/1/0/1").unlink()
    (dataset / "tomograms/t/results/s/map/c/1/0/0").unlink()
    # what Zarr alone makes of it: the lost tilt reads back as zeros, with no error
    ts = zarr.open_array(str(dataset / "tomograms/t/tilt_series"), mode="r")
    assert not np.any(ts[2])
    found = {(p.array, p.chunk): p for p in deep_check(dataset)}
    assert set(found) == {
        ("tomograms/t/tilt_series", (2, 0, 0)),
        ("tomograms/t/volumes/tomogram/0", (1, 0, 1)),
        ("tomograms/t/results/s/map", (1, 0, 0)),
    }
    problem = found[("tomograms/t/tilt_series", (2, 0, 0))]
    assert problem.key == "tomograms/t/tilt_series/c/2/0/0"
    assert "chunk file missing" in problem.problem and "fill value" in problem.problem
    assert "tomograms/t/tilt_series" in str(problem) and "(2, 0, 0)" in str(problem)


def test_a_deleted_shard_is_named_by_its_shard_index(dataset: Path):
    parent = nodes.open_root(dataset, mode="r+")["tomograms/t/results/s"]
    tmp = nodes.temp_leaf("stack")
    arr = parent.create_array(
        tmp, shape=(8, 8), chunks=(2, 2), shards=(4, 4), dtype="f4",
        compressors=COMPRESSOR, fill_value=0,
    )  # fmt: skip
    arr[...] = np.arange(1, 65, dtype="f4").reshape(8, 8)
    arr.attrs[nodes.ATTR] = {"kind": "result", "complete": True}
    nodes.publish(parent, tmp, "stack", overwrite=False)
    assert deep_check(dataset) == []
    (dataset / "tomograms/t/results/s/stack/c/1/0").unlink()  # the shard of rows 4-7, cols 0-3
    [problem] = deep_check(dataset)
    assert problem.array == "tomograms/t/results/s/stack" and problem.chunk == (1, 0)
    assert problem.key == "tomograms/t/results/s/stack/c/1/0"
    assert problem.problem.startswith("shard file missing")


def test_verify_deep_command_exits_1_naming_the_deleted_chunk(dataset: Path, capsys):
    (dataset / "tomograms/t/volumes/tomogram/0/c/0/1/1").unlink()
    with pytest.raises(SystemExit) as exit_:
        main(["verify", str(dataset), "--deep"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert exit_.value.code == 1, text
    assert "tomograms/t/volumes/tomogram/0" in text and "(0, 1, 1)" in text
    assert "missing" in text


def test_an_array_without_the_record_cannot_tell_and_reports_nothing(dataset: Path):
    """Stores published before the record existed: a missing chunk there reads as empty."""
    arr = zarr.open_array(str(dataset / "tomograms/t/tilt_series"), mode="r+")
    attrs = nodes.cryoflow_attrs(arr)
    del attrs[RECORD]
    arr.attrs[nodes.ATTR] = attrs
    (dataset / "tomograms/t/tilt_series/c/1/0/0").unlink()
    assert deep_check(dataset) == []


def test_the_record_round_trips_any_grid():
    rng = np.random.default_rng(5)
    for shape in [(1,), (3, 5), (2, 3, 7), (4, 1, 1, 9)]:
        mask = rng.random(shape) < 0.5
        record = encode_stored(mask)
        assert record["grid"] == list(shape)
        back = decode_stored(record)
        assert back is not None and back.shape == shape
        # the bit of grid index i (C order) is mask.flat[i]
        assert [bool(b) for b in back.ravel()] == [bool(m) for m in mask.ravel()]
    assert decode_stored({"grid": [2, 2], "bits": "not base64!"}) is None
    assert decode_stored(None) is None


def test_rewritten_results_record_their_own_chunks(dataset: Path):
    """Overwriting a result records the new node's chunks, not the old one's."""
    full = np.ones((4, 16, 12), dtype=np.float32)
    store.write_result(dataset, "t", "s", "map", full, dims=("tilt", "y", "x"), provenance={},
                       chunks=(1, 16, 12), overwrite=True)  # fmt: skip
    arr = zarr.open_array(str(dataset / "tomograms/t/results/s/map"), mode="r")
    mask = decode_stored(nodes.cryoflow_attrs(arr)[RECORD])
    assert mask is not None and mask.shape == (4, 1, 1) and mask.all()
