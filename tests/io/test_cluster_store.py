"""Store writes and checks on a real Dask cluster (worker processes): sharded arrays written by
many concurrent tasks lose nothing, a damaged chunk read on a worker is named on the client,
and the deep check's batches run as cluster tasks."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster

from cryoflow.errors import ChunkAlignmentError, CorruptChunkError, CryoflowError, SourceTypeError
from cryoflow.io import store
from cryoflow.io.layout import COMPRESSOR
from cryoflow.io.verify import check_batch, plan_deep_check
from cryoflow.io.writer import aligned_chunks, check_aligned, store_blocks


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def _sharded(path: Path, shape, chunks, shards) -> zarr.Array:
    return zarr.create_array(
        str(path),
        shape=shape,
        chunks=chunks,
        shards=shards,
        dtype="f4",
        compressors=COMPRESSOR,
        fill_value=0,
    )


def _values(shape) -> da.Array:
    """Distinct non-zero values, one tilt per block (the layout of a tilt series)."""
    n = int(np.prod(shape))
    return (da.arange(1, n + 1, chunks=n, dtype="f4").reshape(shape)).rechunk((1, *shape[1:]))


@pytest.mark.fault  # the fault matrix (docs/design/fault-matrix.md)
def test_blocks_aligned_to_inner_chunks_but_not_shards_are_refused(tmp_path: Path) -> None:
    """The audit's lost writes: inner-chunk-aligned tasks sharing a shard. Refused now."""
    target = _sharded(tmp_path / "a.zarr", (16, 8, 8), (1, 8, 8), (4, 8, 8))
    with pytest.raises(ChunkAlignmentError, match="boundary 1 on axis 0 .* shard size 4"):
        store_blocks(_values((16, 8, 8)), target)
    with pytest.raises(ChunkAlignmentError, match="shard"):
        store_blocks(_values((4, 8, 8)).rechunk((4, 8, 8)), target, region_start=(2, 0, 0))


@pytest.mark.fault  # the fault matrix (docs/design/fault-matrix.md)
def test_numpy_source_gets_its_own_error(tmp_path: Path) -> None:
    target = zarr.create_array(str(tmp_path / "a.zarr"), shape=(4, 4), chunks=(2, 2), dtype="f4")
    with pytest.raises(SourceTypeError, match=r"takes a dask.array.Array, got numpy.ndarray") as e:
        store_blocks(np.ones((4, 4), "f4"), target)
    assert isinstance(e.value, TypeError) and isinstance(e.value, CryoflowError)
    assert "as_dask" in str(e.value)


def test_aligned_chunks_end_on_unit_boundaries() -> None:
    assert aligned_chunks((10, 7), (4, 3), (0, 3)) == ((4, 4, 2), (3, 3, 1))
    assert aligned_chunks((4,), (4,), (8,)) == ((4,),)
    check_aligned(aligned_chunks((13, 9), (4, 5), (4, 0)), (17, 9), (4, 5), (4, 0))


@pytest.mark.fault  # the fault matrix (docs/design/fault-matrix.md)
@pytest.mark.parametrize("inner", [(1, 8, 8), (1, 4, 4)])
def test_many_concurrent_tasks_write_a_sharded_array_without_loss(client, tmp_path, inner):
    """64 tilts, shards of 4 tilts: 16 shard-writing tasks over 4 worker threads, twice."""
    shape = (64, 8, 8)
    target = _sharded(tmp_path / "s.zarr", shape, inner, (4, 8, 8))
    source = _values(shape)  # 64 blocks of one tilt: regrouped to one task per shard
    tasks = store_blocks(source, target, name="sharded", regroup=True)
    assert len(tasks) == 16
    written = dask.compute(*tasks, scheduler=client)
    assert sum(int(np.asarray(w).sum()) for w in written) == source.nbytes
    np.testing.assert_array_equal(target[...], source.compute())
    # a region write into the middle of the array, also from many tasks
    region = _values((32, 8, 8)) * -1
    dask.compute(
        *store_blocks(region, target, region_start=(16, 0, 0), regroup=True), scheduler=client
    )
    expected = source.compute()
    expected[16:48] = region.compute()
    np.testing.assert_array_equal(target[...], expected)


def test_damaged_chunk_read_on_a_worker_is_named_on_the_client(client, tmp_path) -> None:
    path = tmp_path / "d.zarr"
    images = np.random.default_rng(2).normal(size=(4, 8, 8)).astype(np.float32)
    store.write_tilt_series(path, "t", images, [0.0, 10.0, 20.0, 30.0], 1.0)
    chunk = path / "tomograms/t/tilt_series/c/1/0/0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    chunk.write_bytes(bytes(raw))
    lazy = store.open_tilt_series(str(path), "t").data
    with pytest.raises(CorruptChunkError) as info:
        client.compute(lazy.sum()).result()
    assert (info.value.array, info.value.chunk) == ("tomograms/t/tilt_series", (1, 0, 0))
    plan = plan_deep_check(str(path), chunks_per_batch=1)
    futures = client.map(check_batch, [str(path)] * len(plan.batches), plan.batches, pure=False)
    found = [p for f in futures for p in f.result()]
    assert [(p.array, p.chunk) for p in found] == [("tomograms/t/tilt_series", (1, 0, 0))]


def test_export_of_a_damaged_volume_is_one_line_naming_the_chunk(client, tmp_path, capsys):
    """Through the command line, on the cluster: no traceback, no MRC left behind."""
    from cryoflow.cli.main import main

    path = tmp_path / "e.zarr"
    vol = np.random.default_rng(4).normal(size=(8, 8, 8)).astype(np.float32)
    store.write_volume(
        path,
        "t",
        "tomogram",
        vol,
        pixel_size_angstrom=3.0,
        provenance={},
        chunk=4,
        multiscale=False,
    )
    chunk = path / "tomograms/t/volumes/tomogram/0/c/1/0/1"
    raw = bytearray(chunk.read_bytes())
    raw[7] ^= 0x01
    chunk.write_bytes(bytes(raw))
    out = tmp_path / "out.mrc"
    argv = [
        "export",
        str(path),
        "--name",
        "t",
        "--key",
        "tomogram",
        "--out",
        str(out),
        "--scheduler",
        client.scheduler.address,
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("cryoflow: error:")]
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1]
    assert "array 'tomograms/t/volumes/tomogram/0' chunk (1, 0, 1)" in errors[0]
    assert "crc32c checksum mismatch" in errors[0]
    assert not out.exists() and not list(tmp_path.glob(".out.mrc.tmp-*"))
