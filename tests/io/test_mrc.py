"""MRC reading: every mode, odd but valid files (warned), bad files (refused, naming the file)."""

from __future__ import annotations

import bz2
import gzip
import warnings

import dask.array as da
import numpy as np
import pytest

from cryoflow.errors import InputFileError, NonStandardInputWarning
from cryoflow.io import mrc
from tests.io_files import patch_bytes, set_header_int32, write_mrc

MODES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _data(rng: np.random.Generator, dtype: type, shape=(5, 12, 10)) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_reads_chunk_by_chunk(tmp_path, rng, mode) -> None:
    data = _data(rng, MODES[mode])
    path = write_mrc(tmp_path / f"m{mode}.mrc", data, voxel_size=1.7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a standard file raises no warning
        info = mrc.read_mrc_header(path)
    assert info.mode == mode and info.shape == (5, 12, 10)
    assert info.voxel_size_angstrom == pytest.approx((1.7, 1.7, 1.7))
    arr = mrc.mrc_dask_array(info, (1, 5, 4))
    assert arr.dtype == MODES[mode] and arr.chunks == ((1,) * 5, (5, 5, 2), (4, 4, 2))
    np.testing.assert_array_equal(arr.compute(), data)
    assert mrc.mrc_dask_array(info, (1, 5, 4)).name == arr.name  # deterministic


def test_big_endian_file(tmp_path, rng) -> None:
    data = _data(rng, np.float32)
    path = tmp_path / "be.mrc"
    import mrcfile

    with mrcfile.new(path) as m:
        m.set_data(data.astype(">f4"))
    info = mrc.read_mrc_header(path)
    assert info.dtype == ">f4"
    out = mrc.mrc_dask_array(info, (2, 12, 10)).compute()
    assert out.dtype == np.dtype("=f4")
    np.testing.assert_array_equal(out, data)


def test_old_file_without_map_or_machine_stamp_warns_and_reads(tmp_path, rng) -> None:
    data = _data(rng, np.int16)
    path = write_mrc(tmp_path / "old.mrc", data)
    patch_bytes(path, 208, b"\0\0\0\0")  # MAP stamp
    patch_bytes(path, 212, b"\0\0\0\0")  # machine stamp
    with pytest.warns(NonStandardInputWarning) as record:
        info = mrc.read_mrc_header(path)
    messages = " | ".join(str(w.message) for w in record)
    assert str(path) in messages and "no 'MAP ' stamp" in messages and "machine stamp" in messages
    np.testing.assert_array_equal(mrc.mrc_dask_array(info, (1, 12, 10)).compute(), data)


@pytest.mark.parametrize("exttyp", [b"FEI1", b"SERI"])
def test_extended_header_is_skipped(tmp_path, rng, exttyp) -> None:
    data = _data(rng, np.float32)
    ext = np.arange(8192, dtype=np.uint8)  # 8 KiB, non-zero so a wrong offset shows
    path = write_mrc(tmp_path / "ext.mrc", data, extended_header=ext, exttyp=exttyp)
    info = mrc.read_mrc_header(path)
    assert info.data_offset == 1024 + 8192
    np.testing.assert_array_equal(mrc.mrc_dask_array(info, (2, 6, 10)).compute(), data)


def test_truncated_file_names_expected_and_actual_bytes(tmp_path, rng) -> None:
    path = write_mrc(tmp_path / "cut.mrc", _data(rng, np.float32))
    full = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputFileError) as info:
        mrc.read_mrc_header(path)
    msg = str(info.value)
    assert str(path) in msg and "truncated" in msg and f"needs {full} bytes" in msg
    assert f"has {full - 100} bytes" in msg


@pytest.mark.parametrize(
    ("word", "value", "expect"),
    [
        (0, 100000, "nx = 100000"),
        (2, 0, "nz = 0"),
        (1, -5, "ny = -5"),
        (3, 4, "unsupported MRC mode 4"),
        (23, -64, "negative extended header"),
    ],
)
def test_absurd_or_unsupported_header_is_refused(tmp_path, rng, word, value, expect) -> None:
    path = write_mrc(tmp_path / "bad.mrc", _data(rng, np.float32))
    set_header_int32(path, word, value)
    with pytest.raises(InputFileError, match=expect) as info:
        mrc.read_mrc_header(path)
    assert str(path) in str(info.value)


def test_huge_claim_is_refused_before_allocation(tmp_path, rng) -> None:
    path = write_mrc(tmp_path / "huge.mrc", _data(rng, np.float32))
    for word, value in ((0, 60000), (1, 60000), (2, 60000)):
        set_header_int32(path, word, value)
    with pytest.raises(InputFileError, match=r"bytes; the limit is 1099511627776 bytes"):
        mrc.read_mrc_header(path)


def test_not_an_mrc(tmp_path) -> None:
    path = tmp_path / "x.mrc"
    path.write_bytes(b"hello")
    with pytest.raises(InputFileError, match="truncated: 5 bytes"):
        mrc.read_mrc_header(path)


@pytest.mark.parametrize("opener", [gzip.open, bz2.open])
def test_compressed_input_is_streamed_to_a_file(tmp_path, rng, opener) -> None:
    data = _data(rng, np.int16)
    raw = write_mrc(tmp_path / "c.mrc", data)
    suffix = ".gz" if opener is gzip.open else ".bz2"
    packed = tmp_path / f"c.mrc{suffix}"
    with opener(packed, "wb") as f:
        f.write(raw.read_bytes())
    out = mrc.decompress_mrc(packed, tmp_path / "out.mrc")
    info = mrc.read_mrc_header(out)
    np.testing.assert_array_equal(mrc.mrc_dask_array(info, (1, 12, 10)).compute(), data)


def test_compressed_bomb_is_refused(tmp_path) -> None:
    # header declares 2 MiB, below the absurd-size limit but above the expansion limit
    raw = write_mrc(tmp_path / "z.mrc", np.zeros((128, 64, 64), np.float32))
    packed = tmp_path / "z.mrc.gz"
    with gzip.open(packed, "wb") as f:
        f.write(raw.read_bytes())
    assert packed.stat().st_size < 20_000
    with pytest.raises(
        InputFileError, match=r"would expand to 2098176 bytes, past the limit of 1048576"
    ):
        mrc.decompress_mrc(packed, tmp_path / "o.mrc", max_expanded_bytes=2**20)
    assert not (tmp_path / "o.mrc").exists()


def test_stream_longer_than_declared_is_refused(tmp_path) -> None:
    raw = write_mrc(tmp_path / "z.mrc", np.zeros((2, 8, 8), np.float32))
    packed = tmp_path / "lie.mrc.gz"
    with gzip.open(packed, "wb") as f:
        f.write(raw.read_bytes() + bytes(3 << 20))  # 3 MiB more than the header declares
    with pytest.raises(InputFileError, match="exceeds the 1536 bytes its header declares"):
        mrc.decompress_mrc(packed, tmp_path / "o.mrc")
    assert not (tmp_path / "o.mrc").exists()


def test_reading_task_never_touches_other_tilts(tmp_path, rng) -> None:
    """Each task reads only its own chunk: corrupting tilt 3 on disk changes only block 3."""
    data = _data(rng, np.float32, shape=(4, 8, 8))
    path = write_mrc(tmp_path / "t.mrc", data)
    info = mrc.read_mrc_header(path)
    arr = mrc.mrc_dask_array(info, (1, 8, 8))
    patch_bytes(path, 1024 + 3 * 8 * 8 * 4, np.full(64, 9.0, "<f4").tobytes())
    blocks = [np.asarray(b.compute()) for b in arr.to_delayed().ravel()]
    np.testing.assert_array_equal(np.concatenate(blocks[:3]), data[:3])
    np.testing.assert_array_equal(blocks[3], 9.0)
    assert isinstance(arr, da.Array)
