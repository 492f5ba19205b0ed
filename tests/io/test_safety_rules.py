"""What a reader accepts: every numeric data type cryoflow writes, and no unsafe codec hidden
anywhere in the codec chain (inside a shard's codecs or its index codecs included)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cryoflow.errors import UnsafeStoreError
from cryoflow.io import store
from cryoflow.io.safety import SAFE_CODECS, SAFE_DATA_TYPES, check_safe_metadata

PICKLE = {"name": "numcodecs.pickle", "configuration": {}}


def _array_meta(**changes) -> dict:
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "data_type": "float32",
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
    }
    meta.update(changes)
    return meta


def _sharded(inner: list, index: list) -> list:
    return [
        {
            "name": "sharding_indexed",
            "configuration": {"chunk_shape": [2], "codecs": inner, "index_codecs": index},
        }
    ]


@pytest.mark.parametrize(
    "dtype",
    [
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    ],
)
def test_every_numeric_type_written_reads_back(tmp_path: Path, dtype: str) -> None:
    values = (np.arange(12).reshape(3, 4) % 2).astype(dtype)
    path = tmp_path / "s.zarr"
    store.write_result(path, "t", "s", "k", values, dims=("y", "x"), provenance={})
    out = store.open_result(path, "t", "s", "k")
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out.values, values)


def test_data_type_records_and_their_message() -> None:
    check_safe_metadata(_array_meta(data_type={"name": "uint16"}), "w")  # dict form accepted
    check_safe_metadata({"zarr_format": 3, "node_type": "group", "codecs": [PICKLE]}, "g")
    with pytest.raises(UnsafeStoreError) as info:
        check_safe_metadata(_array_meta(data_type={"name": "object"}), "s.zarr: result 'k'")
    assert str(info.value) == (
        "s.zarr: result 'k': refusing data type 'object'; allowed: "
        + ", ".join(sorted(SAFE_DATA_TYPES))
    )


def test_only_zarr_v3_arrays_are_read() -> None:
    with pytest.raises(UnsafeStoreError, match=r"^w: only Zarr v3 arrays are read, got 2$"):
        check_safe_metadata(_array_meta(zarr_format=2), "w")


@pytest.mark.parametrize(
    "codecs",
    [
        [PICKLE],
        ["numcodecs.pickle"],  # a bare name instead of a record
        _sharded([{"name": "bytes"}, PICKLE], [{"name": "bytes"}]),
        _sharded([{"name": "bytes"}], [{"name": "bytes"}, PICKLE]),
        _sharded(_sharded([PICKLE], []), []),  # nested shards
        [PICKLE, *_sharded([{"name": "bytes"}], [{"name": "bytes"}])],  # before a shard
    ],
    ids=["top", "bare-name", "shard-codecs", "shard-index-codecs", "nested-shard", "before"],
)
def test_an_unsafe_codec_is_refused_wherever_it_hides(codecs) -> None:
    with pytest.raises(UnsafeStoreError) as info:
        check_safe_metadata(_array_meta(codecs=codecs), "w")
    assert str(info.value) == (
        "w: refusing codec 'numcodecs.pickle'; allowed: " + ", ".join(sorted(SAFE_CODECS))
    )


def test_malformed_codec_lists_are_refused() -> None:
    with pytest.raises(UnsafeStoreError, match="refusing codec '<malformed codecs>'"):
        check_safe_metadata(_array_meta(codecs={"name": "bytes"}), "w")
    with pytest.raises(UnsafeStoreError, match="refusing codec '<malformed codecs>'"):
        check_safe_metadata(_array_meta(codecs=_sharded({"name": "bytes"}, [])), "w")


def test_safe_sharded_codecs_pass() -> None:
    check_safe_metadata(
        _array_meta(
            codecs=_sharded(
                [{"name": "bytes"}, {"name": "blosc"}], [{"name": "bytes"}, {"name": "crc32c"}]
            )
        ),
        "w",
    )


@pytest.mark.fault  # the fault matrix (docs/design/fault-matrix.md)
def test_a_pickle_codec_inside_a_stored_shard_is_refused_on_open(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    store.write_result(path, "t", "s", "k", np.ones((4, 4)), dims=("y", "x"), provenance={})
    meta_file = path / "tomograms/t/results/s/k/zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["codecs"] = _sharded([{"name": "bytes"}, PICKLE], [{"name": "bytes"}])
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(UnsafeStoreError, match="refusing codec 'numcodecs.pickle'"):
        store.open_result(path, "t", "s", "k")
