"""Fault matrix, hostile inputs: 2,300 malformed MRC headers and path-traversal names.

Every malformed header either reads (and then describes a data block that fits in the file) or
is refused with :class:`~cryoflow.errors.InputFileError` naming the file; nothing else escapes.
A name that would leave the store is refused before anything is written, anywhere.
"""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryoflow.errors import InputFileError, InvalidNameError
from cryoflow.io import mrc, store

pytestmark = pytest.mark.fault

# Values written over one 4-byte header word: zero, -1, the int32 extremes, a huge positive
# size, NaN and infinity (as float32 bits), a small negative, and 2**16 + 1.
BAD_WORDS = [
    0,
    -1,
    2**31 - 1,
    -(2**31),
    10**9,
    int(np.array(np.nan, "f4").view("i4")),
    int(np.array(np.inf, "f4").view("i4")),
    -7,
    2**16 + 1,
]


def _base(tmp_path: Path) -> bytes:
    path = tmp_path / "base.mrc"
    with mrcfile.new(path) as m:
        m.set_data(np.arange(3 * 8 * 6, dtype=np.float32).reshape(3, 8, 6))
        m.voxel_size = 2.5
    return path.read_bytes()


def test_2300_malformed_headers_read_or_are_refused_naming_the_file(tmp_path: Path) -> None:
    raw = _base(tmp_path)
    words = np.frombuffer(raw[:1024], dtype="<i4").copy()
    path = tmp_path / "malformed.mrc"
    outcomes = {"read": 0, "refused": 0}
    for index in range(256):  # every word of the 1024-byte header
        for value in BAD_WORDS:  # 256 x 9 = 2,304 headers
            bad = words.copy()
            bad[index] = value
            path.write_bytes(bad.tobytes() + raw[1024:])
            try:
                info = mrc.read_mrc_header(path, warn=False)
            except InputFileError as exc:
                assert str(path) in str(exc), (index, value, str(exc))
                outcomes["refused"] += 1
                continue
            # a header that reads describes data that the file holds
            assert info.data_offset + info.nbytes <= path.stat().st_size, (index, value)
            outcomes["read"] += 1
    assert sum(outcomes.values()) == 2304
    assert outcomes["refused"] > 0 and outcomes["read"] > 0, outcomes


def test_truncated_files_of_every_length_are_refused(tmp_path: Path) -> None:
    raw = _base(tmp_path)
    path = tmp_path / "short.mrc"
    for n in [0, 1, 4, 100, 1023, 1024, 1025, len(raw) - 1]:
        path.write_bytes(raw[:n])
        with pytest.raises(InputFileError) as info:
            mrc.read_mrc_header(path, warn=False)
        assert str(path) in str(info.value)


TRAVERSAL = ["../evil", "..", "a/../../b", "/tmp/abs", "a/b", "..\\x", ".hidden", "", "a" * 200]


@pytest.mark.parametrize("name", TRAVERSAL)
def test_names_that_would_leave_the_store_are_refused_before_any_write(tmp_path, name) -> None:
    path = tmp_path / "inner" / "d.zarr"
    images = np.zeros((2, 4, 4), np.float32)
    store.write_tilt_series(path, "ok", images, [0.0, 10.0], 1.0)
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidNameError, match="invalid"):
        store.write_tilt_series(path, name, images, [0.0, 10.0], 1.0)
    with pytest.raises(InvalidNameError, match="invalid"):
        store.write_result(path, "ok", name, "map", images, dims=("t", "y", "x"), provenance={})
    with pytest.raises(InvalidNameError, match="invalid"):
        store.write_result(path, "ok", "step", name, images, dims=("t", "y", "x"), provenance={})
    after = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert after == before  # nothing written, inside the store or out of it
