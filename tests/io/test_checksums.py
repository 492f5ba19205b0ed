"""Chunk checksums: every array carries crc32c, a damaged chunk is named, old stores still read,
and the deep check finds every flipped bit."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from cryoflow.errors import CorruptChunkError, StoreError
from cryoflow.io import chunks, results, store
from cryoflow.io.layout import BLOSC
from cryoflow.io.verify import check_batch, deep_check, plan_deep_check

ANGLES = [-40.0, -20.0, 0.0, 20.0, 40.0, 60.0]


def _codec_names(meta_file: Path) -> list[str]:
    return [c["name"] for c in json.loads(meta_file.read_text())["codecs"]]


def _chunk_files(array_dir: Path) -> list[Path]:
    return sorted(p for p in (array_dir / "c").rglob("*") if p.is_file())


def _flip(path: Path, bit: int) -> bytes:
    """Flip bit ``bit`` (modulo the file's size in bits) of ``path``; returns the old bytes."""
    raw = path.read_bytes()
    flipped = bytearray(raw)
    bit %= 8 * len(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(flipped))
    return raw


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A float32 tilt series (6 chunks), a float32 volume and a uint8 label volume (8 chunks
    each at level 0, 16^3), a result and a table."""
    rng = np.random.default_rng(7)
    path = tmp_path / "s.zarr"
    images = rng.normal(size=(6, 24, 20)).astype(np.float32)
    store.write_tilt_series(path, "a", images, ANGLES, 2.0)
    vol = rng.normal(size=(32, 32, 32)).astype(np.float32)
    store.write_volume(path, "a", "tomogram", vol, pixel_size_angstrom=2.0, provenance={}, chunk=16)
    labels = rng.integers(0, 4, size=(32, 32, 32)).astype(np.uint8)
    store.write_volume(
        path, "a", "mask", labels, pixel_size_angstrom=2.0, provenance={}, kind="label", chunk=16
    )
    store.write_result(path, "a", "s", "map", images > 0, dims=("tilt", "y", "x"), provenance={})
    table = pd.DataFrame({"x": [1.0, 2.0], "name": ["p", "q"]})
    store.write_table(path, "a", "s", "boxes", table, provenance={})
    return path


def test_every_array_written_ends_with_crc32c(dataset: Path) -> None:
    metas = sorted(dataset.rglob("zarr.json"))
    arrays = [m for m in metas if json.loads(m.read_text())["node_type"] == "array"]
    assert len(arrays) >= 1 + 3 + 3 + 1 + 2  # tilt series, 2 x 3 levels, result, 2 columns
    for meta in arrays:
        assert _codec_names(meta)[-2:] == ["blosc", "crc32c"], meta


def test_a_flipped_bit_is_named_by_array_and_chunk(dataset: Path) -> None:
    target = dataset / "tomograms/a/tilt_series/c/3/0/0"
    _flip(target, 100)
    ts = store.open_tilt_series(dataset, "a")
    np.testing.assert_array_equal(ts[:3].values.shape, (3, 24, 20))  # other chunks still read
    with pytest.raises(CorruptChunkError) as info:
        _ = ts.values
    err = info.value
    assert err.array == "tomograms/a/tilt_series"
    assert err.chunk == (3, 0, 0)
    assert err.key == "tomograms/a/tilt_series/c/3/0/0"
    assert "crc32c checksum mismatch" in str(err) and "s.zarr" in str(err)
    again = pickle.loads(pickle.dumps(err))  # crosses from a Dask worker to the client intact
    assert (again.array, again.chunk, again.key, str(again)) == (
        err.array,
        err.chunk,
        err.key,
        str(err),
    )


def test_damaged_volume_level_and_table_column_are_named(dataset: Path) -> None:
    _flip(dataset / "tomograms/a/labels/mask/0/c/1/0/1", 7)
    with pytest.raises(CorruptChunkError, match=r"labels/mask/0' chunk \(1, 0, 1\)"):
        _ = store.open_volume(dataset, "a", "mask").values
    np.asarray(store.open_volume(dataset, "a", "mask", level=1).values)  # level 1 is intact
    _flip(dataset / "tomograms/a/results/s/boxes/c1/c/0", 3)
    with pytest.raises(CorruptChunkError, match=r"boxes/c1' chunk \(0,\)"):
        store.read_table(dataset, "a", "s", "boxes")


def test_truncated_and_emptied_chunks_are_named(dataset: Path) -> None:
    files = _chunk_files(dataset / "tomograms/a/volumes/tomogram/0")
    files[0].write_bytes(files[0].read_bytes()[:-9])
    files[1].write_bytes(b"")
    found = deep_check(dataset)
    assert {(p.array, p.key) for p in found} == {
        ("tomograms/a/volumes/tomogram/0", str(f.relative_to(dataset))) for f in files[:2]
    }


def test_stores_written_before_checksums_still_read(tmp_path: Path, monkeypatch) -> None:
    """The writer as it was (Blosc alone): still opens, reads and passes the deep check."""
    monkeypatch.setattr(results, "COMPRESSOR", BLOSC)  # the one array constructor
    path = tmp_path / "old.zarr"
    images = np.random.default_rng(3).normal(size=(6, 16, 16)).astype(np.float32)
    store.write_tilt_series(path, "old", images, ANGLES, 1.5)
    assert _codec_names(path / "tomograms/old/tilt_series/zarr.json")[-1] == "blosc"
    np.testing.assert_array_equal(store.open_tilt_series(path, "old").values, images)
    assert deep_check(path) == []
    _chunk_files(path / "tomograms/old/tilt_series")[2].write_bytes(b"\x00" * 5)
    with pytest.raises(CorruptChunkError, match="cannot be decoded"):  # Blosc still refuses it
        _ = store.open_tilt_series(path, "old").values


@pytest.mark.parametrize(
    "array_dir",
    ["tomograms/a/tilt_series", "tomograms/a/volumes/tomogram/0", "tomograms/a/labels/mask/0"],
    ids=["float32-tilt-series", "float32-volume", "uint8-labels"],
)
def test_deep_check_finds_every_single_bit_flip(dataset: Path, array_dir: str) -> None:
    """20 rounds, each flipping one random bit in every chunk file of the array at once."""
    rng = np.random.default_rng(11)
    files = _chunk_files(dataset / array_dir)
    assert len(files) in (6, 8)
    n_found = 0
    for _ in range(20):
        saved = {f: _flip(f, int(rng.integers(0, 1 << 30))) for f in files}
        found = deep_check(dataset)
        assert {p.key for p in found} == {str(f.relative_to(dataset)) for f in files}
        assert all(p.array == array_dir and "checksum" in p.problem for p in found)
        n_found += len(found)
        for f, raw in saved.items():
            f.write_bytes(raw)
    assert n_found == 20 * len(files)
    assert deep_check(dataset) == []


def test_deep_check_plan_batches_and_progress(dataset: Path) -> None:
    plan = plan_deep_check(dataset, chunks_per_batch=3)
    assert plan.problems == ()
    assert plan.n_arrays == len(
        [m for m in dataset.rglob("zarr.json") if json.loads(m.read_text())["node_type"] == "array"]
    )
    assert sum(len(b.chunks) for b in plan.batches) == plan.n_chunks
    assert max(len(b.chunks) for b in plan.batches) == 3
    pickle.loads(pickle.dumps(plan.batches))  # batches travel to workers
    ts_batches = [b for b in plan.batches if b.array == "tomograms/a/tilt_series"]
    assert [c for b in ts_batches for c in b.chunks] == [(i, 0, 0) for i in range(6)]
    _flip(dataset / "tomograms/a/tilt_series/c/4/0/0", 9)
    assert [p.chunk for b in ts_batches for p in check_batch(str(dataset), b)] == [(4, 0, 0)]
    seen: list[tuple[int, int]] = []
    found = deep_check(dataset, chunks_per_batch=3, progress=lambda d, t: seen.append((d, t)))
    assert [p.chunk for p in found] == [(4, 0, 0)]
    assert seen[-1] == (plan.n_chunks, plan.n_chunks) and len(seen) == len(plan.batches)


def test_deep_check_reports_unsafe_metadata_without_reading_it(dataset: Path) -> None:
    meta_file = dataset / "tomograms/a/results/s/map/zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["codecs"] = [{"name": "numcodecs.pickle", "configuration": {}}]
    meta_file.write_text(json.dumps(meta))
    [problem] = deep_check(dataset)
    assert problem.array == "tomograms/a/results/s/map" and problem.chunk == ()
    assert "refusing codec 'numcodecs.pickle'" in problem.problem


def test_sharded_arrays_name_the_shard_and_inner_chunk(tmp_path: Path) -> None:
    arr = zarr.create_array(
        str(tmp_path / "sh.zarr"),
        shape=(8, 8),
        chunks=(2, 2),
        shards=(4, 8),
        dtype="f4",
        compressors=(BLOSC, zarr.codecs.Crc32cCodec()),
        fill_value=0,
    )
    arr[...] = np.arange(64, dtype="f4").reshape(8, 8)
    assert list(chunks.chunk_indices(arr)) == [(0, 0), (1, 0)]
    assert chunks.chunk_key(arr, (1, 0)) == "c/1/0"
    assert chunks.check_chunk(arr, (1, 0)) is None
    _flip(tmp_path / "sh.zarr/c/1/0", 40)  # inside the first inner chunk's bytes
    problem = chunks.check_chunk(arr, (1, 0))
    assert (
        problem is not None and problem.chunk == (1, 0) and "inner chunk (2, 0)" in problem.problem
    )
    with pytest.raises(CorruptChunkError, match=r"chunk \(1, 0\)"):
        chunks.read_checked(arr, (slice(4, 8), slice(None)))
    np.testing.assert_array_equal(chunks.read_checked(arr, (slice(0, 4),)), arr[:4])


def test_errors_that_are_not_damage_pass_through(dataset: Path) -> None:
    ts = chunks.CheckedArray(zarr.open_array(str(dataset / "tomograms/a/tilt_series"), mode="r"))
    with pytest.raises(IndexError):
        ts[99]
    assert isinstance(CorruptChunkError("x", array="a", chunk=(0,), key="a/c/0"), StoreError)
